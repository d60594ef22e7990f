"""Judge verdicts: the five-level criterion scale and the per-sample verdict."""

from __future__ import annotations

import math
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Level(StrEnum):
    """Five-level verdict scale for one success criterion."""

    FULLY = "fully"
    MOSTLY = "mostly"
    PARTIALLY = "partially"
    MINOR = "minor"
    NONE = "none"

    @property
    def score(self) -> float:
        return LEVEL_SCORES[self]


LEVEL_SCORES: dict[Level, float] = {
    Level.FULLY: 1.0,
    Level.MOSTLY: 0.9,
    Level.PARTIALLY: 0.7,
    Level.MINOR: 0.3,
    Level.NONE: 0.0,
}


class CriterionVerdict(BaseModel):
    """The judge's verdict on one success criterion of one sample."""

    model_config = ConfigDict(extra="allow")

    criterion: str = Field(description="One success criterion the judge wrote for the task.")
    verdict: Level = Field(
        description="How far the output meets it: fully (1.0), mostly (0.9), partially (0.7), "
        "minor (0.3), none (0.0)."
    )
    reason: str = Field(default="", description="Why, in a sentence.")


class JudgeUsage(BaseModel):
    """What judging one sample cost: calls made (retries and repairs included), tokens
    from the endpoint's ``usage`` and the estimated cost. ``cached`` means no call was paid."""

    model_config = ConfigDict(allow_inf_nan=False)

    calls: int = Field(default=0, ge=0)
    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)
    cost_usd: float = Field(default=0.0, ge=0.0)
    cached: bool = False


class RecordedVerdict(BaseModel):
    """A verdict as carried in a sample record (for replay) or stored by the judge.

    ``score`` is the aggregated task-success score in [0, 1]; success is decided later
    against the rule's threshold, so one recorded verdict serves rules with different
    thresholds.
    """

    model_config = ConfigDict(
        extra="allow",
        allow_inf_nan=False,
        json_schema_extra={"examples": [{
            "score": 0.9,
            "verdicts": [{"criterion": "Refunds the duplicate charge", "verdict": "mostly",
                          "reason": "Refund opened; amount not confirmed."}],
            "model": "gpt-4.1", "prompt_version": "judge-v3", "policy_violation": False,
        }]},
    )

    score: float = Field(
        ge=0.0, le=1.0, allow_inf_nan=False,
        description="Aggregated task-success score in [0, 1] (soft minimum of the criterion "
        "verdicts); success is score >= the rule's judge.threshold.",
    )
    verdicts: list[CriterionVerdict] = Field(
        default_factory=list, description="One verdict per success criterion."
    )
    model: str = Field(default="unknown", description="The judge model.")
    prompt_version: str | None = Field(default=None, description="The judge prompt version.")
    goal: str | None = Field(default=None, description="The user's goal as the judge read it.")
    policy_violation: bool | None = Field(
        default=None, description="The judge's policy check (null: not checked)."
    )
    policy_reason: str | None = None
    decision: str | None = Field(
        default=None, description="The system's decision label as the judge extracted it."
    )
    mode: str | None = Field(default=None, description="Judge mode: fast or thorough.")
    usage: JudgeUsage | None = None
    sampling_weight: float = Field(
        default=1.0,
        ge=1.0,
        allow_inf_nan=False,
        description="1 / the probability that this sample was chosen for judging in its "
        "interval: the weight that keeps estimates unbiased when strata are oversampled.",
    )


TRANSIENT_REASONS = frozenset({"connection", "timeout", "server_error", "rate_limited"})
"""Unjudged reasons that describe the endpoint's state, not the sample."""


class Unjudged(BaseModel):
    """A sample the judge could not score (budget, malformed answers, endpoint errors).

    Deliberately has no score and no success flag: an unjudged sample must never be
    counted as a success or as a zero score; it is left out of task-success statistics.
    """

    reason: str = Field(description="Short machine-readable reason, e.g. budget, malformed.")
    detail: str = ""
    model: str = "unknown"
    prompt_version: str | None = None
    usage: JudgeUsage = Field(default_factory=JudgeUsage)

    @property
    def transient(self) -> bool:
        """The endpoint could not be reached or answer in time: worth another attempt in a
        later interval (and, for an interval's samples, a judge outage)."""
        return self.reason in TRANSIENT_REASONS


DEFAULT_THRESHOLD = 0.7
"""Score at which a task succeeds when the rule (or the command line) sets none."""


def soft_min_score(scores: list[float], temperature: float) -> float:
    """Temperature-controlled soft aggregation of criterion scores into one task score.

    ``score = -T * ln( (1/m) * sum_i exp(-s_i / T) )`` — a soft minimum. As ``T -> 0``
    it tends to the weakest criterion (strict); as ``T -> inf`` to the mean (lenient).
    It always lies between the minimum and the mean of the scores. Computed with the
    log-sum-exp shift so tiny temperatures do not underflow.
    """
    if not scores:
        raise ValueError("at least one criterion score is needed")
    if temperature <= 0:
        raise ValueError("temperature must be positive")
    low = min(scores)
    shifted = [math.exp(-(s - low) / temperature) for s in scores]
    value = low - temperature * math.log(sum(shifted) / len(scores))
    return min(1.0, max(0.0, value))


Verdict = RecordedVerdict | Unjudged
"""What the judge concluded about one sample: a score, or why there is none."""
