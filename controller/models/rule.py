"""The CanaryRule custom resource: spec (what the user writes) and its validation.

Sign convention for tolerances: ``tolerance`` is the worst change (canary minus
baseline) the guard accepts, signed in the harmful direction. For a metric where
higher is better (trusted completion, task success, F1) it is negative or zero
("may drop by at most 2 points" is ``-0.02``); for a metric where lower is better
(correction burden, fallback rate, policy failures, latency, cost) it is positive
or zero. With ``relative: true`` it is a fraction of the baseline value.
"""

from __future__ import annotations

import math
import re
from enum import StrEnum
from typing import Literal

from pydantic import Field, field_validator, model_validator

from controller.conventions import RESERVED_ENV, RESERVED_PREFIX, WORKLOAD_SUFFIX_MAX

from .base import (
    Duration,
    FieldChecks,
    FieldError,
    IntervalDuration,
    KubeModel,
    parse_duration,
)
from .names import (
    env_name_error,
    label_value_error,
    qualified_name_error,
    subdomain_error,
)
from .price import Price, is_hosted, price_for
from .sample import (
    DEFAULT_NAMESPACE,
    MAX_CORRECTION_MINUTES,
    MAX_COST_USD,
    MAX_LATENCY_MS,
    Risk,
    RuleKey,
)
from .verdict import DEFAULT_THRESHOLD, Aggregation, check_temperature

TARGET_NAME_MAX = 253 - WORKLOAD_SUFFIX_MAX
"""The canary and holdback Deployments are named ``<target>-canary`` / ``-holdback``."""
RULE_NAME_MAX = 63
"""A rule's name is the value of the label ``canary.llmops.dev/rule`` on its workloads."""


class Metric(StrEnum):
    TRUSTED_COMPLETION = "trustedCompletion"
    TASK_SUCCESS = "taskSuccess"
    CORRECTION_BURDEN = "correctionBurden"
    FALLBACK_RATE = "fallbackRate"
    POLICY_FAILURE_RATE = "policyFailureRate"
    F1 = "f1"
    PRECISION = "precision"
    RECALL = "recall"
    FBETA = "fbeta"
    LATENCY = "latency"
    COST = "cost"
    PROMETHEUS = "prometheus"

    @property
    def higher_is_better(self) -> bool:
        return self in _HIGHER_IS_BETTER

    @property
    def from_decisions(self) -> bool:
        """Computed from the confusion of decisions against labels (F1 and its kin)."""
        return self in CLASSIFICATION_METRICS


CLASSIFICATION_METRICS = frozenset({Metric.F1, Metric.PRECISION, Metric.RECALL, Metric.FBETA})
_HIGHER_IS_BETTER = frozenset({Metric.TRUSTED_COMPLETION, Metric.TASK_SUCCESS}
                              | CLASSIFICATION_METRICS)
QUANTILE_METRICS = frozenset({Metric.LATENCY, Metric.COST})

Statistic = Literal["mean", "p50", "p90", "p95", "p99"]
QUANTILES: dict[str, float] = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}
DEFAULT_STATISTIC: dict[Metric, str] = {Metric.LATENCY: "p95"}
"""Latency is compared by its 95th percentile unless a guard says otherwise: one absurd
value cannot move a quantile, and tail latency is what users feel. Cost stays a mean
(what you pay), bounded by ``analysis.plausibilityCap``."""

Dimension = Literal["queue", "risk", "task"]
ALL_DIMENSIONS: tuple[Dimension, ...] = ("queue", "risk", "task")

METRIC_RANGE: dict[Metric, float] = {
    Metric.CORRECTION_BURDEN: MAX_CORRECTION_MINUTES,
    Metric.LATENCY: MAX_LATENCY_MS,
    Metric.COST: MAX_COST_USD,
}
"""Largest absolute tolerance per metric: a rate (every metric not listed) changes by at
most 1; a continuous metric by at most the largest value a sample may carry."""
MAX_RELATIVE_TOLERANCE = 100.0
"""A relative tolerance above +10000% accepts anything: it is a typo, not a guard."""


def check_tolerance_range(where: str, tolerance: float, metric: Metric, relative: bool) -> None:
    """Refuse a tolerance that no change of the metric can cross (the guard could never
    fail, or never pass)."""
    if relative:
        if not -1 < tolerance <= MAX_RELATIVE_TOLERANCE:
            raise FieldError(where, f"{tolerance} is outside (-1, {MAX_RELATIVE_TOLERANCE:g}]: "
                                    "a relative tolerance is a fraction of the baseline "
                                    "(-1 would accept a drop to zero)")
        return
    limit = METRIC_RANGE.get(metric, 1.0)
    if abs(tolerance) > limit:
        unit = "a rate changes by at most 1 (use 0.05 for 5 points)" if limit == 1.0 else \
            f"no sample of {metric.value} may exceed {limit:g}"
        raise FieldError(where, f"{tolerance} is outside [-{limit:g}, {limit:g}]: {unit}")


class TargetRef(KubeModel):
    api_version: Literal["apps/v1"] = "apps/v1"
    kind: Literal["Deployment"] = "Deployment"
    name: str = Field(min_length=1, max_length=TARGET_NAME_MAX)

    @model_validator(mode="after")
    def _dns_name(self) -> TargetRef:
        why = subdomain_error(self.name, TARGET_NAME_MAX)
        if why:
            raise FieldError("name", why)
        return self


class EnvVar(KubeModel):
    name: str = Field(min_length=1)
    value: str = ""

    @model_validator(mode="after")
    def _valid_name(self) -> EnvVar:
        why = env_name_error(self.name)
        if why:
            raise FieldError("name", why)
        if self.name in RESERVED_ENV:
            raise FieldError("name", f"{self.name} is set by the controller in canary pods")
        return self


class CanarySpec(KubeModel):
    """What the canary changes relative to the baseline Deployment's pod template."""

    container: str | None = Field(
        default=None, description="Container to change; defaults to the first container."
    )
    image: str | None = None
    env: list[EnvVar] = Field(default_factory=list)
    pod_labels: dict[str, str] = Field(default_factory=dict)
    pod_annotations: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _changes_something(self) -> CanarySpec:
        if not (self.image or self.env or self.pod_labels or self.pod_annotations):
            raise FieldError(
                "", "must change something: set image, env, podLabels or podAnnotations"
            )
        names = [e.name for e in self.env]
        dup = sorted({n for n in names if names.count(n) > 1})
        checks = FieldChecks()
        if dup:
            checks.run(_fail, "env", f"names must be unique, repeated: {', '.join(dup)}")
        checks.run(_check_metadata, "podLabels", self.pod_labels, True)
        checks.run(_check_metadata, "podAnnotations", self.pod_annotations, False)
        checks.raise_any()
        return self


def _check_metadata(field: str, items: dict[str, str], values_are_labels: bool) -> None:
    """Keys are qualified names outside the controller's prefix; label values are label
    values (what the API server checks on the canary Deployment, checked here first)."""
    for key, value in items.items():
        why = qualified_name_error(key)
        if why:
            raise FieldError(f"{field}[{key}]", f"invalid key: {why}")
        if key.startswith(RESERVED_PREFIX):
            raise FieldError(f"{field}[{key}]", f"keys under {RESERVED_PREFIX} are the "
                             "controller's")
        if values_are_labels:
            why = label_value_error(value)
            if why:
                raise FieldError(f"{field}[{key}]", f"invalid value {value!r}: {why}")


class Step(KubeModel):
    weight: int = Field(ge=1, le=100, description="Canary share of traffic, in percent.")
    pause: Duration | None = Field(
        default=None, description="Minimum time to stay at this step even when guards pass."
    )
    min_samples: int | None = Field(
        default=None, ge=0, le=10_000_000,
        description="Canary samples needed at this step before it may advance "
                    "(default: analysis.minSamplesPerStep).",
    )


class GuardOverride(KubeModel):
    """A stricter (or looser) tolerance for one queue or risk tier."""

    queue: str | None = None
    risk: Risk | None = None
    tolerance: float

    @model_validator(mode="after")
    def _selects_something(self) -> GuardOverride:
        if self.queue is None and self.risk is None:
            raise FieldError("", "an override needs a queue or a risk")
        return self


class Guard(KubeModel):
    name: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    metric: Metric
    tolerance: float = Field(
        description="Worst accepted change canary minus baseline, signed in the harmful direction."
    )
    relative: bool = Field(
        default=False, description="Tolerance is a fraction of the baseline value."
    )
    group_by: list[Literal["queue", "risk"]] = Field(
        default_factory=list,
        description="Also test each queue / risk tier on its own (a spike in one queue matters).",
    )
    overrides: list[GuardOverride] = Field(default_factory=list)
    query: str | None = Field(
        default=None, description="For metric 'prometheus': the name of a metrics.queries entry."
    )
    statistic: Statistic | None = Field(
        default=None,
        description="latency/cost: compare the mean or a quantile (p50, p90, p95, p99). "
        "Default: p95 for latency, mean for cost.",
    )
    minimum: float | None = Field(
        default=None, allow_inf_nan=False,
        description="Absolute floor for the canary alone (e.g. completion never below 0.85).",
    )
    maximum: float | None = Field(
        default=None, allow_inf_nan=False,
        description="Absolute ceiling for the canary alone (e.g. p95 latency never above 3000).",
    )
    must_pass: list[str] = Field(
        default_factory=list,
        description="Slices that must pass before promotion: 'risk=high', 'queue=fraud', "
        "'task=claims', or a whole dimension ('risk', 'queue', 'task').",
    )
    label: str | None = Field(
        default=None, min_length=1,
        description="f1/precision/recall/fbeta of this one class (e.g. recall of 'escalate').",
    )
    beta: float | None = Field(
        default=None, gt=0, le=100, allow_inf_nan=False,
        description="For metric 'fbeta': weight of recall (beta > 1 favours recall).",
    )
    across_tasks: Literal["mean", "pooled"] = Field(
        default="mean",
        description="f1/precision/recall/fbeta: average the per-task values (mean) or pool "
        "all tasks' decisions into one confusion matrix (pooled).",
    )
    per: Literal["output", "acceptedOutput"] = Field(
        default="output",
        description="correctionBurden: minutes per output, or per accepted output.",
    )
    alpha_weight: float | None = Field(
        default=None, gt=0, le=1000,
        description="Share of the rule's alpha relative to the other guards (default 3 for "
                    "trustedCompletion, 2 for taskSuccess, 1 otherwise).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Guard:
        """The checks that need only this guard, here rather than on the spec, so they
        run (and are reported) even when another part of the rule is invalid."""
        checks = FieldChecks()
        checks.run(_check_tolerance, "", self)
        checks.run(_check_query_field, "", self)
        checks.run(_check_guard_variant, "", self)
        checks.run(_check_bounds, "", self)
        checks.run(_check_must_pass, "", self)
        checks.raise_any()
        return self

    @property
    def higher_is_better(self) -> bool:
        return self.metric.higher_is_better

    @property
    def stat(self) -> str:
        """The statistic compared: ``mean`` or a quantile name such as ``p95``."""
        return self.statistic or DEFAULT_STATISTIC.get(self.metric, "mean")

    @property
    def quantile(self) -> float | None:
        return QUANTILES.get(self.stat)

    @property
    def bounds(self) -> list[tuple[str, float]]:
        """Absolute checks on the canary alone: ("minimum", v) and/or ("maximum", v)."""
        out: list[tuple[str, float]] = []
        if self.minimum is not None:
            out.append(("minimum", self.minimum))
        if self.maximum is not None:
            out.append(("maximum", self.maximum))
        return out

    def tolerance_for(self, queue: str | None = None, risk: str | None = None) -> float:
        """Tolerance for one slice: the most specific override wins."""
        for o in self.overrides:
            if o.queue is not None and o.queue == queue and (o.risk is None or o.risk == risk):
                return o.tolerance
        for o in self.overrides:
            if o.queue is None and o.risk is not None and o.risk == risk:
                return o.tolerance
        return self.tolerance


class Budget(KubeModel):
    """Latency and cost budgets for the samples of one task, queue or risk tier.

    For each budget the most specific entry that sets it wins: the one naming the most
    of task, queue and risk (ties: the earlier entry); the rule-wide ``latencyBudgetMs``
    / ``costBudgetUsd`` apply when no entry matches.
    """

    task: str | None = None
    queue: str | None = None
    risk: Risk | None = None
    latency_ms: float | None = Field(default=None, gt=0, le=MAX_LATENCY_MS, allow_inf_nan=False)
    cost_usd: float | None = Field(default=None, gt=0, le=MAX_COST_USD, allow_inf_nan=False)

    @model_validator(mode="after")
    def _useful(self) -> Budget:
        if self.task is None and self.queue is None and self.risk is None:
            raise FieldError("", "a budget entry needs a task, queue or risk")
        if self.latency_ms is None and self.cost_usd is None:
            raise FieldError("", "a budget entry needs latencyMs or costUsd")
        return self

    def specificity(self, task: str | None, queue: str | None, risk: str | None) -> int:
        """How many selectors match (-1 when one does not)."""
        score = 0
        for want, have in ((self.task, task), (self.queue, queue), (self.risk, risk)):
            if want is None:
                continue
            if want != have:
                return -1
            score += 1
        return score


class TrustedSpec(KubeModel):
    """What makes a task completion trusted, beyond the judge's success verdict.

    Every condition is known or the sample is not trusted: a fallback answer is not a
    completion (unless ``allowFallback``), and an unknown policy result is untrusted
    (unless ``unknownPolicy`` says otherwise). Budgets left unset are not checked, and
    ``canaryctl validate`` warns about it.
    """

    max_correction_minutes: float = Field(default=5.0, ge=0, le=MAX_CORRECTION_MINUTES,
                                          allow_inf_nan=False)
    latency_budget_ms: float | None = Field(default=None, gt=0, le=MAX_LATENCY_MS,
                                            allow_inf_nan=False)
    cost_budget_usd: float | None = Field(default=None, gt=0, le=MAX_COST_USD,
                                          allow_inf_nan=False)
    budgets: list[Budget] = Field(
        default_factory=list, description="Budgets per task, queue or risk tier."
    )
    allow_fallback: bool = Field(
        default=False, description="Count an answer served by the fallback path as completed."
    )
    unknown_policy: Literal["untrusted", "trusted", "exclude"] = Field(
        default="untrusted",
        description="A sample with no policy result (neither the sample nor the judge says): "
        "untrusted, trusted, or left out of the metric.",
    )

    def budgets_for(
        self, task: str | None, queue: str | None, risk: str | None
    ) -> tuple[float | None, float | None]:
        """(latency budget ms, cost budget USD) for one sample: most specific wins."""
        latency, cost = self.latency_budget_ms, self.cost_budget_usd
        best_l = best_c = -1
        for b in self.budgets:
            score = b.specificity(task, queue, risk)
            if score < 0:
                continue
            if b.latency_ms is not None and score > best_l:
                latency, best_l = b.latency_ms, score
            if b.cost_usd is not None and score > best_c:
                cost, best_c = b.cost_usd, score
        return latency, cost

    @property
    def has_latency_budget(self) -> bool:
        return self.latency_budget_ms is not None or any(
            b.latency_ms is not None for b in self.budgets)

    @property
    def has_cost_budget(self) -> bool:
        return self.cost_budget_usd is not None or any(b.cost_usd is not None
                                                       for b in self.budgets)


class PlausibilityCap(KubeModel):
    """Values above a cap are clipped to it (winsorised) before a *mean* is taken, and
    counted; quantile guards need no cap (one value cannot move a quantile far)."""

    latency_ms: float | None = Field(default=None, gt=0, le=MAX_LATENCY_MS, allow_inf_nan=False)
    cost_usd: float | None = Field(default=None, gt=0, le=MAX_COST_USD, allow_inf_nan=False)
    correction_minutes: float | None = Field(default=None, gt=0, allow_inf_nan=False)


class TrafficMixSpec(KubeModel):
    """The sample-ratio-mismatch check: both cohorts must see the same traffic mix, and
    the canary the share its weight says. A mismatch holds promotion (never rolls back)."""

    enabled: bool = True
    alpha: float = Field(
        default=0.001, gt=0, lt=0.5, allow_inf_nan=False,
        description="False-alarm rate of the mix check over the whole rollout (a false "
        "alarm holds; it never rolls back).",
    )
    dimensions: list[Dimension] = Field(default_factory=lambda: list(ALL_DIMENSIONS))
    share_band: float = Field(
        default=0.2, ge=0, le=1, allow_inf_nan=False,
        description="Hold only when the canary's share of samples is confidently outside "
        "expected × (1 ± shareBand); a smaller deviation is reported only.",
    )


class AnalysisSpec(KubeModel):
    interval: IntervalDuration = Field(default="1m", description="Time between looks (>= 1s).")
    min_samples_per_cohort: int = Field(default=100, ge=1, le=10_000_000)
    max_duration: Duration = "2h"
    alpha: float = Field(default=0.05, gt=0, lt=0.5, description="Family-wise false-rollback rate.")
    on_inconclusive: Literal["hold", "rollback"] = Field(
        default="hold", description="What to do when still inconclusive at maxDuration."
    )
    error_limit: int = Field(
        default=3, ge=0, le=1000,
        description="Consecutive analyses with errors tolerated: the next one (errorLimit + 1) "
        "pauses or rolls back, as onErrorLimit says. 0 acts on the first error.",
    )
    on_error_limit: Literal["pause", "rollback"] = "pause"
    settle: Duration = Field(
        default="30s",
        description="After the canary or the baseline changes, samples that do not name "
        "their revision count only from this long after the new pods are available.",
    )
    max_groups: int = Field(
        default=8, ge=1, le=64, description="Queues/tiers tested separately; the rest are pooled."
    )
    min_samples_per_step: int | None = Field(
        default=None, ge=0, le=10_000_000,
        description="Canary samples each step must gather at its own weight before the "
                    "rollout advances (default: a quarter of minSamplesPerCohort).",
    )
    trusted: TrustedSpec = Field(default_factory=TrustedSpec)
    feedback_window: Duration = Field(
        default="30m",
        description="How long an output may still receive correction feedback; after it an "
        "output without feedback counts as 0 correction minutes.",
    )
    feedback_complete: bool = Field(
        default=False,
        description="Services send feedback for every output (0 minutes included): count "
        "an output's burden as soon as its feedback arrives, before its window closes.",
    )
    plausibility_cap: PlausibilityCap = Field(default_factory=PlausibilityCap)
    traffic_mix: TrafficMixSpec = Field(default_factory=TrafficMixSpec)
    guards: list[Guard] = Field(min_length=1)

    @field_validator("guards")
    @classmethod
    def _unique_names(cls, guards: list[Guard]) -> list[Guard]:
        names = [g.name for g in guards]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"names must be unique, repeated: {', '.join(dup)}")
        return guards

    @model_validator(mode="after")
    def _check(self) -> AnalysisSpec:
        if parse_duration(self.max_duration) < parse_duration(self.interval):
            raise FieldError("maxDuration", "must be at least one interval")
        return self


class SecretKeyRef(KubeModel):
    name: str = Field(min_length=1)
    key: str = Field(default="api-key", min_length=1)


class JudgeBudget(KubeModel):
    max_calls_per_interval: int | None = Field(default=None, ge=1, le=10_000_000)
    max_cost_usd_per_interval: float | None = Field(default=None, gt=0, le=MAX_COST_USD,
                                                    allow_inf_nan=False)


class BuiltinPattern(StrEnum):
    """Named redaction patterns (regexes in controller.judge.redaction)."""

    EMAIL = "email"
    CARD_NUMBER = "cardNumber"
    PHONE = "phone"


class RedactionPattern(KubeModel):
    """A regular expression (Python syntax) whose every match is replaced, literally."""

    regex: str = Field(min_length=1, max_length=1000)
    replacement: str = Field(default="[REDACTED]", max_length=100)
    ignore_case: bool = False

    @model_validator(mode="after")
    def _compiles(self) -> RedactionPattern:
        try:
            compiled = re.compile(self.regex, re.IGNORECASE if self.ignore_case else 0)
        except re.error as exc:
            raise FieldError("regex", f"not a valid regular expression: {exc}") from None
        if compiled.fullmatch(""):
            raise FieldError("regex", "matches the empty string; it would redact nothing useful")
        return self


class Redaction(KubeModel):
    """What the judge may see: matches replaced, fields and turn roles left out."""

    # Applied before any prompt is built: every mode, stage and repair prompt
    # (controller.judge.redaction).

    builtins: list[BuiltinPattern] = Field(
        default_factory=list, description="Built-in patterns: email, cardNumber, phone."
    )
    patterns: list[RedactionPattern] = Field(default_factory=list, max_length=50)
    fields: list[Literal["input", "output"]] | None = Field(
        default=None,
        min_length=1,
        description="Sample fields sent to the judge (default both); a left-out one is withheld.",
    )
    roles: list[str] | None = Field(
        default=None,
        min_length=1,
        description="Turn roles sent in multi-turn conversations (default all).",
    )


class RiskFactors(KubeModel):
    """Oversampling factor per risk tier (1 = proportional)."""

    low: float = Field(default=1.0, gt=0, le=100, allow_inf_nan=False)
    medium: float = Field(default=1.0, gt=0, le=100, allow_inf_nan=False)
    high: float = Field(default=1.0, gt=0, le=100, allow_inf_nan=False)


class Oversample(KubeModel):
    """Judge some strata more often than their share of traffic, e.g. risk: {high: 4}."""

    # Each verdict carries the weight 1/pi that undoes it (controller.judge.sampling).

    risk: RiskFactors = Field(default_factory=RiskFactors)
    queue: dict[str, float] = Field(default_factory=dict, description="Factor per queue.")

    @model_validator(mode="after")
    def _finite(self) -> Oversample:
        for name, factor in self.queue.items():
            if not (math.isfinite(factor) and 0 < factor <= 100):
                raise FieldError(f"queue.{name}", f"{factor} must be a number in (0, 100]")
        return self

    def factor(self, risk: Risk, queue: str) -> float:
        return float(getattr(self.risk, risk.value)) * self.queue.get(queue, 1.0)


class ThresholdOverride(KubeModel):
    """A success threshold for one task kind and/or queue."""

    task: str | None = None
    queue: str | None = None
    threshold: float = Field(ge=0, le=1, allow_inf_nan=False)

    @model_validator(mode="after")
    def _selects(self) -> ThresholdOverride:
        if self.task is None and self.queue is None:
            raise FieldError("", "a threshold override needs a task or a queue")
        return self


class JudgeSpec(KubeModel):
    """The LLM judge: any OpenAI-compatible endpoint."""

    model: str = Field(min_length=1)
    base_url: str | None = Field(default=None, description="OpenAI-compatible base URL.")
    api_key_secret_ref: SecretKeyRef | None = None
    mode: Literal["fast", "thorough"] = "fast"
    samples_per_interval: int = Field(default=50, ge=1, le=100_000)
    threshold: float = Field(
        default=DEFAULT_THRESHOLD, ge=0, le=1, description="Score at which a task succeeds."
    )
    thresholds: list[ThresholdOverride] = Field(
        default_factory=list,
        description="Per task / queue thresholds; the most specific wins (task and queue, "
        "then task, then queue), else threshold.",
    )
    aggregation: Aggregation = Field(
        default=Aggregation.EVAL_LIB,
        description="evalLib (eval-ai-library's Task Success Rate) or softMin.",
    )
    temperature: float | None = Field(
        default=None,
        gt=0,
        le=100,
        allow_inf_nan=False,
        description="Aggregation strictness (low: strict). Default 0.5 for evalLib "
        "(range 0.1-1.0), 0.1 for softMin.",
    )
    policy: str | None = Field(default=None, description="Policy text to check answers against.")
    decision_labels: list[str] = Field(
        default_factory=list, description="Labels to extract as the system's decision (for F1)."
    )
    min_kappa: float | None = Field(default=None, ge=-1, le=1)
    timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    max_retries: int = Field(default=3, ge=0, le=10)
    concurrency: int = Field(default=8, ge=1, le=256)
    budget: JudgeBudget = Field(default_factory=JudgeBudget)
    price: Price | None = Field(
        default=None,
        description="USD per million tokens; without it only OpenAI's API models are priced.",
    )
    redaction: Redaction | None = None
    oversample: Oversample | None = None

    @model_validator(mode="after")
    def _check(self) -> JudgeSpec:
        if self.temperature is not None:
            try:
                check_temperature(self.aggregation, self.temperature)
            except ValueError as exc:
                raise FieldError("temperature", str(exc)) from None
        if (
            self.budget.max_cost_usd_per_interval is not None
            and price_for(self.model, self.base_url, self.price) is None
        ):
            where = "OpenAI's API" if is_hosted(self.base_url) else self.base_url
            raise FieldError(
                "budget.maxCostUsdPerInterval",
                f"needs a price, and model {self.model!r} at {where} has none: set "
                "judge.price (inputPerMtok, outputPerMtok) or use budget.maxCallsPerInterval",
            )
        return self

    @property
    def effective_temperature(self) -> float:
        """The temperature set, else the aggregation's default."""
        if self.temperature is not None:
            return self.temperature
        return self.aggregation.default_temperature

    def threshold_for(self, task: str | None = None, queue: str | None = None) -> float:
        """The success threshold for one sample; see :func:`success_threshold`."""
        best, score = self.threshold, 0
        for o in self.thresholds:
            if (o.task is not None and o.task != task) or (o.queue is not None
                                                           and o.queue != queue):
                continue
            s = (2 if o.task is not None else 0) + (1 if o.queue is not None else 0)
            if s > score:
                best, score = o.threshold, s
        return best


def success_threshold(judge: JudgeSpec | None, task: str | None = None,
                      queue: str | None = None) -> float:
    """The one place that says at which judge score a sample is a success: the rule's
    per task/queue threshold (most specific wins), its ``judge.threshold``, or
    :data:`DEFAULT_THRESHOLD` (0.7) without a judge spec."""
    return DEFAULT_THRESHOLD if judge is None else judge.threshold_for(task, queue)


class PromQuery(KubeModel):
    """PromQL templates for one cohort-level signal.

    Placeholders (``string.Template`` syntax): ``${cohort}``, ``${queue}``,
    ``${namespace}``, ``${rule}``, ``${interval}``.
    """

    name: str = Field(min_length=1)
    events: str = Field(min_length=1, description="Count of harmful events for one cohort.")
    total: str | None = Field(
        default=None,
        description="Count of requests for one cohort; without it the traffic share is used.",
    )


class MetricsSpec(KubeModel):
    prometheus_url: str | None = None
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    queries: list[PromQuery] = Field(default_factory=list)


class ModelPrice(KubeModel):
    """What one model costs, for samples that carry token counts but no cost (OpenTelemetry
    spans). Prices are list prices in US dollars per million tokens."""

    model: str = Field(
        min_length=1,
        max_length=256,
        description="Model name exactly as reported (gen_ai.response.model, else "
        "gen_ai.request.model).",
    )
    input_usd_per_million_tokens: float = Field(
        ge=0, le=100_000, allow_inf_nan=False, description="USD per 1M input (prompt) tokens."
    )
    output_usd_per_million_tokens: float = Field(
        ge=0, le=100_000, allow_inf_nan=False,
        description="USD per 1M output (completion) tokens.",
    )

    def cost_usd(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_usd_per_million_tokens
                + output_tokens * self.output_usd_per_million_tokens) / 1_000_000


class TrafficRouting(KubeModel):
    type: Literal["replicaRatio"] = "replicaRatio"


class BakeSpec(KubeModel):
    """A watch after promotion: the new version serves, a holdback keeps the previous one."""

    duration: Duration = Field(description="How long the guards keep comparing after promotion.")
    holdback: int = Field(
        default=10, ge=1, le=50,
        description="Share of replicas (percent, at least one pod) that keeps running the "
        "previous template as the baseline while baking.",
    )

class IngestSpec(KubeModel):
    """Who may report samples and feedback for this rule, besides its own workload."""

    service_accounts: list[str] = Field(
        default_factory=list,
        max_length=64,
        description="More ServiceAccounts allowed to post for this rule, as namespace/name "
        "(a bare name is in the rule's namespace). The ServiceAccount of the target "
        "Deployment's pods is always allowed.",
    )

    @field_validator("service_accounts")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        for i, entry in enumerate(value):
            parts = entry.split("/")
            if len(parts) > 2 or any(subdomain_error(p) for p in parts):
                raise FieldError(f"[{i}]", f"{entry!r} is not namespace/name or name")
        return value


VERDICT_METRICS = frozenset({Metric.TASK_SUCCESS, Metric.TRUSTED_COMPLETION,
                             Metric.POLICY_FAILURE_RATE} | CLASSIFICATION_METRICS)
"""Metrics that may rest on a verdict (task success; the judge's policy flag and decision
label stand in when the sample carries none)."""


class CanaryRuleSpec(KubeModel):
    target_ref: TargetRef
    canary: CanarySpec
    steps: list[Step] = Field(min_length=1)
    analysis: AnalysisSpec
    judge: JudgeSpec | None = None
    verdicts: Literal["judge", "client"] = Field(
        default="judge",
        description="Where task-success verdicts come from. judge: the controller's judge "
        "(spec.judge); a verdict a client sends with a sample is ignored. client: the "
        "verdicts the application sends in each sample's judge field (for teams that judge "
        "elsewhere); the rule then has no spec.judge, and the guards' evidence says so.",
    )
    ingest: IngestSpec = Field(default_factory=IngestSpec)
    metrics: MetricsSpec = Field(default_factory=MetricsSpec)
    pricing: list[ModelPrice] = Field(
        default_factory=list,
        description="Price per model, to cost OpenTelemetry spans from their token counts. A "
        "span whose model has no price has an unknown cost: it is left out of the cost guard, "
        "which holds the rollout until both cohorts have costed samples.",
    )
    traffic_routing: TrafficRouting = Field(default_factory=TrafficRouting)
    progress_deadline_seconds: int | None = Field(
        default=None, ge=1,
        description="Seconds the canary may take to become available at a step (default: "
        "the target's progressDeadlineSeconds, else 600).",
    )
    on_progress_deadline: Literal["rollback", "fail"] = Field(
        default="rollback",
        description="What a canary that is not available in time does: roll back, or stop "
        "as Failed and keep everything as it is for inspection.",
    )
    promotion_deadline_seconds: int | None = Field(
        default=None, ge=1,
        description="Seconds the target may take to run the promoted template (default: "
        "the progress deadline); past it the rule is Failed and the canary keeps serving.",
    )
    on_target_change: Literal["restart", "pause"] = Field(
        default="restart",
        description="A change to the target's pod template during a rollout: restart with "
        "the new baseline and fresh evidence, or pause until resumed.",
    )
    bake: BakeSpec | None = None

    @property
    def client_verdicts(self) -> bool:
        return self.verdicts == "client"

    @field_validator("pricing")
    @classmethod
    def _unique_models(cls, pricing: list[ModelPrice]) -> list[ModelPrice]:
        names = [p.model for p in pricing]
        dup = sorted({m for m in names if names.count(m) > 1})
        if dup:
            raise ValueError(f"models must be unique, repeated: {', '.join(dup)}")
        return pricing

    def price_for(self, *models: str | None) -> ModelPrice | None:
        """The first of ``models`` with a price (exact name match)."""
        prices = {p.model: p for p in self.pricing}
        for name in models:
            if name is not None and name in prices:
                return prices[name]
        return None

    @field_validator("steps")
    @classmethod
    def _weights_increase(cls, steps: list[Step]) -> list[Step]:
        checks = FieldChecks()
        for i in range(1, len(steps)):
            checks.run(_check_step_order, i, steps[i - 1].weight, steps[i].weight)
        checks.raise_any()
        return steps

    @model_validator(mode="after")
    def _cross_field(self) -> CanaryRuleSpec:
        """Checks across sections; each guard checks itself (:meth:`Guard._consistent`)."""
        checks = FieldChecks()
        if self.client_verdicts and self.judge is not None:
            checks.run(_fail, "verdicts", "'client' takes the verdicts the samples carry: "
                                          "remove spec.judge, or use verdicts: judge")
        for i, g in enumerate(self.analysis.guards):
            checks.run(_check_query_ref, f"analysis.guards[{i}]", g, self.metrics)
        checks.raise_any()
        return self


PROPORTION_METRICS = frozenset({Metric.TRUSTED_COMPLETION, Metric.TASK_SUCCESS,
                                Metric.FALLBACK_RATE, Metric.POLICY_FAILURE_RATE}
                               | CLASSIFICATION_METRICS)


def guard_dimensions(guard: Guard) -> list[str]:
    """Slicing dimensions tested for a guard: its ``groupBy`` (queue, then risk), plus
    ``task`` for the metrics computed from decisions (always also tested per task)."""
    if guard.metric is Metric.PROMETHEUS:
        return []
    dims: list[str] = [d for d in ("queue", "risk") if d in guard.group_by]
    return [*dims, "task"] if guard.metric.from_decisions else dims


def _at(where: str, name: str) -> str:
    """``where.name``, or ``name`` when the check runs on the guard itself."""
    return f"{where}.{name}" if where else name


def _fail(path: str, reason: str) -> None:
    raise FieldError(path, reason)


def _check_step_order(i: int, previous: int, weight: int) -> None:
    if weight <= previous:
        raise FieldError(f"[{i}].weight", f"{weight} must be greater than the previous "
                                          f"step's {previous}: weights must increase")


def _check_tolerance(where: str, g: Guard) -> None:
    checks = FieldChecks()
    checks.run(_check_tolerance_sign, _at(where, "tolerance"), g.tolerance, g.higher_is_better)
    checks.run(check_tolerance_range, _at(where, "tolerance"), g.tolerance, g.metric,
               g.relative)
    for j, o in enumerate(g.overrides):
        path = _at(where, f"overrides[{j}].tolerance")
        checks.run(_check_tolerance_sign, path, o.tolerance, g.higher_is_better)
        checks.run(check_tolerance_range, path, o.tolerance, g.metric, g.relative)
    checks.raise_any()


def _check_query_field(where: str, g: Guard) -> None:
    if g.metric is Metric.PROMETHEUS and not g.query:
        raise FieldError(_at(where, "query"), "is required for metric 'prometheus'")
    if g.metric is not Metric.PROMETHEUS and g.query:
        raise FieldError(_at(where, "query"), "is only for metric 'prometheus'")


def _check_query_ref(where: str, g: Guard, metrics: MetricsSpec) -> None:
    """A prometheus guard's query names a metrics.queries entry, and Prometheus is set."""
    if g.metric is not Metric.PROMETHEUS or not g.query:
        return
    query_names = {q.name for q in metrics.queries}
    checks = FieldChecks()
    if g.query not in query_names:
        checks.run(_fail, f"{where}.query", f"{g.query!r} names no metrics.queries entry"
                   f" (have: {', '.join(sorted(query_names)) or 'none'})")
    if not metrics.prometheus_url:
        checks.run(_fail, "metrics.prometheusUrl",
                   f"is required: guard {g.name!r} reads Prometheus")
    checks.raise_any()


def _check_guard_variant(where: str, g: Guard) -> None:
    """Fields that only make sense for some metrics."""
    if g.statistic is not None and g.statistic != "mean" and g.metric not in QUANTILE_METRICS:
        raise FieldError(_at(where, "statistic"), "quantiles are for metrics latency and cost")
    if g.statistic is not None and g.metric not in QUANTILE_METRICS | {Metric.CORRECTION_BURDEN}:
        raise FieldError(_at(where, "statistic"), f"is not used by metric {g.metric.value!r}")
    if not g.metric.from_decisions:
        for name, value in (("label", g.label), ("acrossTasks", g.across_tasks != "mean")):
            if value:
                raise FieldError(_at(where, name),
                                 "is only for metrics f1, precision, recall and fbeta")
    if g.metric is Metric.FBETA and g.beta is None:
        raise FieldError(_at(where, "beta"), "is required for metric 'fbeta'")
    if g.beta is not None and g.metric is not Metric.FBETA:
        raise FieldError(_at(where, "beta"), "is only for metric 'fbeta'")
    if g.per != "output" and g.metric is not Metric.CORRECTION_BURDEN:
        raise FieldError(_at(where, "per"), "is only for metric 'correctionBurden'")


def _check_bounds(where: str, g: Guard) -> None:
    if not g.bounds:
        return
    if g.metric is Metric.PROMETHEUS:
        raise FieldError(_at(where, "minimum"), "absolute bounds need samples, not event counts")
    for name, value in g.bounds:
        if g.metric in PROPORTION_METRICS and not 0.0 <= value <= 1.0:
            raise FieldError(_at(where, name), f"{value} is not a rate between 0 and 1")
        if g.metric not in PROPORTION_METRICS and value < 0:
            raise FieldError(_at(where, name), f"{value} must be >= 0")
    if g.minimum is not None and g.maximum is not None and g.minimum > g.maximum:
        raise FieldError(_at(where, "maximum"), f"{g.maximum} is below minimum {g.minimum}")


def _check_must_pass(where: str, g: Guard) -> None:
    dims = guard_dimensions(g)
    for i, sel in enumerate(g.must_pass):
        dim, eq, value = sel.partition("=")
        path = _at(where, f"mustPass[{i}]")
        if dim not in dims:
            have = ", ".join(dims) or "none: add groupBy"
            raise FieldError(path, f"{sel!r}: {dim!r} is not a slicing dimension of this "
                                   f"guard (have: {have})")
        if eq and not value:
            raise FieldError(path, f"{sel!r}: name a value after '=' or drop it")
        if dim == "risk" and value and value not in {r.value for r in Risk}:
            raise FieldError(path, f"{sel!r}: risk is one of low, medium, high")


def _check_tolerance_sign(where: str, tolerance: float, higher_is_better: bool) -> None:
    if higher_is_better and tolerance > 0:
        raise FieldError(
            where,
            f"{tolerance} has the wrong sign: for a higher-is-better metric it is the accepted "
            "drop, so it must be <= 0 (e.g. -0.02 for 2 points)",
        )
    if not higher_is_better and tolerance < 0:
        raise FieldError(
            where,
            f"{tolerance} has the wrong sign: for a lower-is-better metric it is the accepted "
            "increase, so it must be >= 0",
        )


class ObjectMeta(KubeModel):
    model_config = KubeModel.model_config | {"extra": "allow"}

    name: str = Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    generation: int | None = None
    resource_version: str | None = None
    uid: str | None = None


class CanaryRule(KubeModel):
    """A whole CanaryRule object as applied by users (status is optional and read-only)."""

    model_config = KubeModel.model_config | {"extra": "forbid"}

    api_version: str
    kind: Literal["CanaryRule"]
    metadata: ObjectMeta
    spec: CanaryRuleSpec
    status: dict[str, object] | None = None

    @property
    def key(self) -> RuleKey:
        """The rule's identity (namespace ``default`` when the manifest names none)."""
        return RuleKey(self.metadata.namespace or DEFAULT_NAMESPACE, self.metadata.name)

    # Field validators, not one model validator: each runs (and is reported) even when
    # the spec is invalid, so one pass names every mistake.
    @field_validator("api_version")
    @classmethod
    def _api_version(cls, api_version: str) -> str:
        from controller import API_GROUP, API_VERSION

        want = f"{API_GROUP}/{API_VERSION}"
        if api_version != want:
            raise ValueError(f"must be {want!r}, got {api_version!r}")
        return api_version

    @field_validator("metadata")
    @classmethod
    def _name_fits_a_label(cls, metadata: ObjectMeta) -> ObjectMeta:
        if len(metadata.name) > RULE_NAME_MAX:
            raise FieldError(
                "name", f"must be no more than {RULE_NAME_MAX} characters (has "
                f"{len(metadata.name)}): it is the value of a label on the canary")
        return metadata
