"""The judge as the controller uses it: one :class:`RuleJudge` per rule and interval.

It implements :class:`controller.ports.JudgePort`: judge a batch of samples, one verdict
per sample, never raising for a sample the endpoint could not score. The API key is read
per interval through the ``read_key`` callable the process wires in (the actuator reads
the rule's Secret), so a rotated Secret is picked up, and every key is registered for log
redaction before it is used. Metrics for judge calls, cost and unjudged samples are
recorded here, where they happen.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

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

from .budget import Budget
from .core import Judged
from .run import judge_samples
from .secrets import NO_KEY
from .settings import JudgeSettings

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
        run = judge_samples(list(samples), self.settings, api_key=self.api_key or NO_KEY,
                            cache=self.cache_path, budget=budget)
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


@dataclass
class JudgeService:
    """Builds each rule's judge, or says why the rule cannot be judged now."""

    cache_path: str
    read_key: KeyReader
    default_base_url: str | None = None
    """The operator's judge endpoint for rules that name none (``--judge-base-url``)."""
    default_key: str | None = None
    """The operator's key for rules without ``apiKeySecretRef`` (``OPENAI_API_KEY``)."""

    def for_rule(self, rule: CanaryRule) -> tuple[RuleJudge | None, str | None]:
        spec = rule.spec.judge
        if spec is None:
            return None, None
        base_url = spec.base_url or self.default_base_url
        key = self.default_key
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

