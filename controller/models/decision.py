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
    """Evidence for one guard on one slice (all traffic, one queue, or one risk tier).

    ``check`` says what the row tests: ``compare`` (canary against baseline, the usual
    guard), ``minimum`` / ``maximum`` (an absolute floor or ceiling on the canary alone,
    on all traffic), or ``mix`` / ``share`` (the traffic-mix check, rows named
    ``traffic-mix:<dimension>`` and ``traffic-mix:share``; they hold, never roll back), or
    ``change`` (the change detector of the current step: a regression that started at
    some point of the step; it can only roll back).
    """

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
    check: str = Field(default="compare",
                       description="compare, minimum, maximum, mix, share, change.")
    statistic: str | None = Field(default=None, description="mean, p50, p95, ... when relevant.")
    required: bool = Field(default=False, description="This slice must pass to promote.")
    needed_canary: int | None = Field(
        default=None,
        description="More canary samples this slice needs to pass, at its current estimate "
        "and variance (None: not estimable, e.g. the estimate is beyond the tolerance).",
    )
    needed_baseline: int | None = Field(default=None, description="Likewise for the baseline.")
    clipped_canary: int = Field(default=0, description="Canary values clipped at the cap.")
    clipped_baseline: int = Field(default=0, description="Baseline values clipped at the cap.")
    verdicts: str | None = Field(
        default=None,
        description="For guards that rest on verdicts: judge (the controller's judge) or "
        "client (verdicts the application sent, when the rule says verdicts: client).",
    )

    @property
    def slice_label(self) -> str:
        if self.queue is not None:
            label = f"queue={self.queue}"
        elif self.risk is not None:
            label = f"risk={self.risk}"
        elif self.task is not None:
            label = f"task={self.task}"
        elif self.step is not None:
            label = f"step {self.step} {'change' if self.check == 'change' else 'window'}"
        else:
            label = "all"
        return label if self.check in ("compare", "mix", "share", "change") \
            else f"{label} {self.check}"


class Decision(OpenModel):
    action: Action
    reason: str
    guards: list[GuardResult] = Field(default_factory=list)
    n_baseline: int = 0
    n_canary: int = 0
    at: datetime | None = None
