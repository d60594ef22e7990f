"""Guard outcomes and decisions: what the analysis concludes, with its evidence."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from .base import OpenModel


class Outcome(StrEnum):
    """Per-guard outcome. NO_DATA and ERROR never count as pass or fail."""

    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    NO_DATA = "no_data"
    ERROR = "error"


class Action(StrEnum):
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    CONTINUE = "continue"


class GuardResult(OpenModel):
    """Evidence for one guard on one slice (all traffic, one queue, or one risk tier)."""

    name: str
    metric: str
    queue: str | None = None
    risk: str | None = None
    task: str | None = Field(default=None, description="Task kind (per-task F1 slices).")
    step: int | None = Field(
        default=None, description="Set on a step-window test: the step (1-based) whose own "
                                  "samples it uses.")
    outcome: Outcome
    n_baseline: int = 0
    n_canary: int = 0
    baseline: float | None = Field(default=None, description="Estimate for the baseline cohort.")
    canary: float | None = Field(default=None, description="Estimate for the canary cohort.")
    delta: float | None = Field(default=None, description="Canary minus baseline (or ratio - 1).")
    lower: float | None = Field(default=None, description="Anytime-valid lower bound on delta.")
    upper: float | None = Field(default=None, description="Anytime-valid upper bound on delta.")
    tolerance: float = 0.0
    relative: bool = False
    alpha: float = Field(default=0.0, description="Share of the family-wise alpha spent here.")
    test: str = ""
    reason: str = ""
    verdicts: str | None = Field(
        default=None,
        description="For guards that rest on verdicts: judge (the controller's judge) or "
        "client (verdicts the application sent, when the rule says verdicts: client).",
    )

    @property
    def slice_label(self) -> str:
        if self.queue is not None:
            return f"queue={self.queue}"
        if self.risk is not None:
            return f"risk={self.risk}"
        if self.task is not None:
            return f"task={self.task}"
        if self.step is not None:
            return f"step {self.step} window"
        return "all"


class Decision(OpenModel):
    action: Action
    reason: str
    guards: list[GuardResult] = Field(default_factory=list)
    n_baseline: int = 0
    n_canary: int = 0
    at: datetime | None = None
