"""Judge verdicts: the five-level criterion scale, the per-sample verdict, and why a
sample has no verdict (a closed set of reasons, transient or permanent).

The score formulas (how criterion verdicts become one task score) live in
:mod:`controller.judge.aggregate`; this module holds only the data and its validation.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


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


class Aggregation(StrEnum):
    """How criterion verdicts become one task score: ``evalLib``, eval-ai-library's Task
    Success Rate aggregation (a power mean with a penalty for ``none``; the default), or
    ``softMin``, the soft minimum ``-T ln(mean exp(-s/T))``."""

    # The formulas: controller.judge.aggregate.

    EVAL_LIB = "evalLib"
    SOFT_MIN = "softMin"

    @property
    def default_temperature(self) -> float:
        return 0.5 if self is Aggregation.EVAL_LIB else 0.1


EVAL_LIB_TEMPERATURE_RANGE = (0.1, 1.0)
"""The temperatures eval_lib maps to its exponent; outside it eval_lib clamps the exponent
but not the ``none`` penalty, so the two halves of its formula disagree: refused."""


def check_temperature(aggregation: Aggregation, temperature: float) -> float:
    """``temperature`` if valid for ``aggregation``; ValueError naming the range otherwise."""
    if not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    low, high = EVAL_LIB_TEMPERATURE_RANGE
    if aggregation is Aggregation.EVAL_LIB and not low <= temperature <= high:
        raise ValueError(
            f"{temperature} is outside [{low}, {high}], the range of aggregation evalLib "
            "(0.1 strict, 0.5 the mean, 1.0 lenient); use aggregation softMin for other values"
        )
    return temperature


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
    from the endpoint's ``usage`` and the cost. ``cost_usd`` is ``None`` when no price is
    known for the model (a self-hosted judge without ``judge.price``): tokens are still
    counted, a cost is never made up. ``cached`` means no call was paid."""

    model_config = ConfigDict(allow_inf_nan=False)

    calls: int = Field(default=0, ge=0)
    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)
    cost_usd: float | None = Field(default=None, ge=0.0, allow_inf_nan=False)
    cached: bool = False


class RecordedVerdict(BaseModel):
    """A verdict as carried in a sample record (for replay) or stored by the judge.

    ``score`` is the aggregated task-success score in [0, 1]; success is decided later
    against the rule's threshold, so one recorded verdict serves rules with different
    thresholds. ``sampling_weight`` is ``1/pi``, the inverse of the probability that the
    sample was chosen for judging: weighting by it keeps interval estimates unbiased when
    strata are oversampled. 1.0 means "judged for sure".
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
        description="Aggregated task-success score in [0, 1] (the rule's judge.aggregation of "
        "the criterion verdicts); success is score >= the rule's judge.threshold.",
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
    aggregation: Aggregation | None = Field(
        default=None, description="The score's formula: evalLib or softMin (null: not recorded)."
    )
    usage: JudgeUsage | None = None
    sampling_weight: float = Field(
        default=1.0,
        ge=1.0,
        allow_inf_nan=False,
        description="1 / the probability that this sample was chosen for judging in its "
        "interval: the weight that keeps estimates unbiased when strata are oversampled.",
    )


class UnjudgedReason(StrEnum):
    """Why a sample has no verdict: a closed set. ``transient`` reasons may succeed if the
    sample is tried again later (the endpoint was down, slow or rate-limiting); the others
    will not change by retrying the same request."""

    # transient: the endpoint could not answer now
    CONNECTION = "connection"
    """Connection refused, reset or unresolvable host (after retries)."""
    TIMEOUT = "timeout"
    """No answer within ``timeoutSeconds`` (after retries)."""
    RATE_LIMITED = "rate_limited"
    """HTTP 429 on every attempt."""
    SERVER_ERROR = "server_error"
    """HTTP 5xx or 408 on every attempt."""
    # permanent: the same request would fail again
    MALFORMED = "malformed"
    """The answer broke the schema even after the one repair attempt."""
    BAD_REQUEST = "bad_request"
    """The endpoint refused the request (a 4xx other than those below)."""
    CONTEXT_LENGTH = "context_length"
    """The interaction does not fit the judge model's context window (or the body limit)."""
    AUTH = "auth"
    """HTTP 401/403: the key is wrong or lacks access; the judge stops for the batch."""
    NOT_FOUND = "not_found"
    """HTTP 404: unknown model or wrong base URL; the judge stops for the batch."""
    BUDGET = "budget"
    """The interval's call or cost budget was spent before this sample started."""
    NOT_SAMPLED = "not_sampled"
    """Not chosen for judging this interval (``samplesPerInterval``)."""
    NOT_COUNTED = "not_counted"
    """Not evidence for the rollout in progress (another canary revision, or stamped
    before the canary settled): never offered to the judge."""
    NO_JUDGE = "no_judge"
    """The rule has no ``spec.judge``."""
    API_KEY_MISSING = "api_key_missing"
    """No key configured for a hosted endpoint."""
    API_KEY_UNAVAILABLE = "api_key_unavailable"
    """The key's Secret could not be read."""
    CONFIG = "config"
    """The rule's judge settings cannot be used here (e.g. a cost budget without a price
    for the endpoint the controller is told to use)."""
    ERROR = "error"
    """A bug in the judge itself (the detail names the exception)."""
    OTHER = "other"
    """A free-text reason recorded before this set was closed (kept in ``detail``)."""

    @property
    def transient(self) -> bool:
        return self in _TRANSIENT


_TRANSIENT = frozenset(
    {
        UnjudgedReason.CONNECTION,
        UnjudgedReason.TIMEOUT,
        UnjudgedReason.RATE_LIMITED,
        UnjudgedReason.SERVER_ERROR,
    }
)
TRANSIENT_REASONS = _TRANSIENT


class Unjudged(BaseModel):
    """A sample the judge could not score, and why (see :class:`UnjudgedReason`).

    Deliberately has no score and no success flag: an unjudged sample must never be
    counted as a success or as a zero score; it is left out of task-success statistics.
    Records written before the reasons were a closed set still load: a free-text reason
    ``"name: text"`` whose ``name`` is a known reason becomes that reason with ``text``
    in ``detail``; any other text becomes ``other`` with the text kept in ``detail``.
    """

    reason: UnjudgedReason = Field(description="Machine-readable reason (a closed set).")
    detail: str = ""
    model: str = "unknown"
    prompt_version: str | None = None
    usage: JudgeUsage = Field(default_factory=JudgeUsage)

    @model_validator(mode="before")
    @classmethod
    def _legacy_reason(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        reason = data.get("reason")
        if not isinstance(reason, str) or reason in _VALUES:
            return data
        head, sep, tail = reason.partition(":")
        detail = str(data.get("detail") or "")
        if sep and head.strip() in _VALUES:
            known, text = head.strip(), tail.strip()
        else:
            known, text = UnjudgedReason.OTHER.value, reason.strip()
        joined = "; ".join(part for part in (text, detail) if part)
        return {**data, "reason": known, "detail": joined}

    @field_validator("detail")
    @classmethod
    def _bounded(cls, value: str) -> str:
        return value[:2000]

    @property
    def transient(self) -> bool:
        """True when trying the sample again later may succeed."""
        return self.reason.transient


_VALUES = frozenset(r.value for r in UnjudgedReason)


DEFAULT_THRESHOLD = 0.7
"""Score at which a task succeeds when the rule (or the command line) sets none."""


Verdict = RecordedVerdict | Unjudged
"""What the judge concluded about one sample: a score, or why there is none."""
