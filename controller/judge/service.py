"""The judge as the controller uses it: one :class:`RuleJudge` per rule and interval.

It implements :class:`controller.ports.JudgePort`: judge a batch of samples, one verdict
per sample, never raising for a sample the endpoint could not score. The API key is read
per interval through the ``read_key`` callable the process wires in (the actuator reads
the rule's Secret), so a rotated Secret is picked up, and every key is registered for log
redaction before it is used. Metrics for judge calls, cost and unjudged samples are
recorded here, where they happen.

Where keys may go: a rule's ``judge.baseUrl`` must match the operator's allow-list
(:class:`UrlAllowList`; ``--judge-allowed-url``, the default ``--judge-base-url`` is always
allowed), checked before any Secret is read, so a rule author cannot send a key to a
server of their choice. The operator's own key (``OPENAI_API_KEY``) only ever goes to the
operator's default endpoint. Every sample is judged by the controller's judge, whatever
verdict the client attached to it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from pydantic import ValidationError

from controller.models import (
    CanaryRule,
    Sample,
    Unjudged,
    UnjudgedReason,
    Verdict,
    parse_duration,
)
from controller.models.errors import format_field_errors
from controller.observability import (
    JUDGE_CALLS,
    JUDGE_COST,
    JUDGE_LATENCY,
    JUDGE_UNJUDGED,
    register_secret,
)

from .api_keys import NO_KEY
from .budget import Budget
from .core import Judged
from .run import judge_samples
from .settings import JudgeSettings

OPENAI_BASE_URL = "https://api.openai.com/v1"
"""Where the openai client goes when no base URL is set."""

KeyReader = Callable[[str, str, str], str]
"""``(namespace, secret name, key) -> value``; raises ``LookupError`` with a reason that
names the Secret (never its value) when it cannot be read."""


@dataclass
class RuleJudge:
    """Judges one rule's samples with its settings, key, cache and per-interval budget."""

    rule: str
    settings: JudgeSettings
    api_key: str | None
    cache_path: str
    max_calls: int | None = None
    max_cost_usd: float | None = None

    def judge(self, samples: Sequence[Sample]) -> list[Verdict]:
        budget = Budget(max_calls=self.max_calls, max_cost_usd=self.max_cost_usd,
                        interval_seconds=self.settings.interval_seconds)
        started = time.perf_counter()
        # rejudge: a verdict the client attached never spares a sample from the judge
        run = judge_samples(list(samples), self.settings, api_key=self.api_key or NO_KEY,
                            cache=self.cache_path, budget=budget, rejudge=True)
        JUDGE_LATENCY.labels(self.rule).observe(time.perf_counter() - started)
        out: list[Verdict] = []
        for result in run.results:
            if isinstance(result, Judged):
                out.append(result.verdict)
            elif isinstance(result, Unjudged):
                out.append(result)
            else:
                out.append(Unjudged(reason=UnjudgedReason.ERROR, detail="no result"))
        totals = run.totals
        JUDGE_CALLS.labels(self.rule, "paid").inc(totals.calls)
        JUDGE_CALLS.labels(self.rule, "cached").inc(totals.cache_hits)
        if totals.cost_usd is not None:  # unpriced (self-hosted): tokens only, no made-up cost
            JUDGE_COST.labels(self.rule).inc(totals.cost_usd)
        for reason, n in totals.unjudged.items():
            JUDGE_UNJUDGED.labels(self.rule, reason).inc(n)
        return out


def _parts(url: str) -> tuple[str, str, int | None, list[str]] | None:
    """(scheme, host, port, path segments) of an http(s) URL, or None."""
    try:
        split = urlsplit(url.strip())
        port = split.port
    except ValueError:
        return None
    if split.scheme not in ("http", "https") or not split.hostname or split.username \
            or split.password or split.query or split.fragment:
        return None
    port = port or (443 if split.scheme == "https" else 80)
    return split.scheme, split.hostname.lower(), port, [p for p in split.path.split("/") if p]


@dataclass
class UrlAllowList:
    """Judge endpoints the operator allows: same scheme, host and port as an entry, and
    the entry's path as a whole-segment prefix (``https://llm.internal/v1`` allows
    ``https://llm.internal/v1`` and ``.../v1/team-a``, never ``https://llm.internal.evil``
    or ``https://llm.internal/v10``). URLs with credentials, a query or a fragment never
    match."""

    entries: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, *urls: str | None, extra: Iterable[str] = ()) -> UrlAllowList:
        return cls([u for u in (*urls, *extra) if u])

    def allows(self, url: str) -> bool:
        got = _parts(url)
        if got is None:
            return False
        for entry in self.entries:
            want = _parts(entry)
            if want is not None and got[:3] == want[:3] and got[3][:len(want[3])] == want[3]:
                return True
        return False


@dataclass
class JudgeService:
    """Builds each rule's judge, or says why the rule cannot be judged now."""

    cache_path: str
    read_key: KeyReader
    default_base_url: str | None = None
    """The operator's judge endpoint for rules that name none (``--judge-base-url``)."""
    default_key: str | None = None
    """The operator's key (``OPENAI_API_KEY``), only ever sent to the default endpoint."""
    allowed_urls: list[str] = field(default_factory=list)
    """More endpoints rules may name in ``judge.baseUrl`` (``--judge-allowed-url``)."""

    def __post_init__(self) -> None:
        self.default_endpoint = self.default_base_url or OPENAI_BASE_URL
        self.allow = UrlAllowList.of(self.default_endpoint, extra=self.allowed_urls)

    def for_rule(self, rule: CanaryRule) -> tuple[RuleJudge | None, str | None]:
        spec = rule.spec.judge
        if spec is None:
            return None, None
        base_url = spec.base_url or self.default_base_url
        endpoint = base_url or OPENAI_BASE_URL
        if not self.allow.allows(endpoint):
            return None, (f"endpoint_not_allowed: judge.baseUrl {endpoint} is not on the "
                          "controller's allow-list (--judge-allowed-url / chart "
                          "judge.allowedUrls); no key was read and nothing was sent")
        default_endpoint = UrlAllowList.of(self.default_endpoint).allows(endpoint)
        key = self.default_key if default_endpoint else None
        if spec.api_key_secret_ref is not None:
            ref = spec.api_key_secret_ref
            try:
                key = self.read_key(rule.key.namespace, ref.name, ref.key)
            except LookupError as exc:
                return None, f"api_key_unavailable: {exc}"
        if key is None and base_url is None:
            return None, "api_key_missing: no apiKeySecretRef and no OPENAI_API_KEY"
        register_secret(key)
        interval = parse_duration(rule.spec.analysis.interval)
        try:
            settings = JudgeSettings.from_spec(spec, interval_seconds=interval, base_url=base_url)
        except ValidationError as exc:  # e.g. a cost budget; the operator's endpoint has no price
            return None, f"{UnjudgedReason.CONFIG.value}: {format_field_errors(exc)}"
        return RuleJudge(str(rule.key), settings, key, self.cache_path,
                         spec.budget.max_calls_per_interval,
                         spec.budget.max_cost_usd_per_interval), None

