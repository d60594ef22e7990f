"""Judge verdicts: the five-level criterion scale and the per-sample verdict."""

from __future__ import annotations

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
    model_config = ConfigDict(extra="allow")

    criterion: str
    verdict: Level
    reason: str = ""


class RecordedVerdict(BaseModel):
    """A verdict as carried in a sample record (for replay) or stored by the judge.

    ``score`` is the aggregated task-success score in [0, 1]; success is decided later
    against the rule's threshold, so one recorded verdict serves rules with different
    thresholds.
    """

    model_config = ConfigDict(extra="allow")

    score: float = Field(ge=0.0, le=1.0)
    verdicts: list[CriterionVerdict] = Field(default_factory=list)
    model: str = "unknown"
    prompt_version: str | None = None
    goal: str | None = None
    policy_violation: bool | None = None
    policy_reason: str | None = None
    decision: str | None = None
