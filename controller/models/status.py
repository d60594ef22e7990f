"""CanaryRule status: everything a restarted controller needs to resume."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field

from .base import OpenModel
from .decision import GuardResult

HISTORY_LIMIT = 20


class Phase(StrEnum):
    PENDING = "Pending"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    PROMOTING = "Promoting"
    SUCCEEDED = "Succeeded"
    ROLLING_BACK = "RollingBack"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"

    @property
    def terminal(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.FAILED)


class Condition(OpenModel):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(default="", description="CamelCase machine-readable reason.")
    message: str = ""
    last_transition_time: datetime | None = None


class DecisionRecord(OpenModel):
    """One entry in the decision history: what was done, when, and why."""

    time: datetime
    action: str = Field(description="advance, promote, rollback, hold, pause, resume, ...")
    reason: str
    step: int | None = None
    weight: int | None = None
    manual: bool = False
    failing_guards: list[str] = Field(default_factory=list)


class CanaryRuleStatus(OpenModel):
    phase: Phase = Phase.PENDING
    observed_generation: int | None = None
    canary_revision: str | None = Field(
        default=None, description="Hash of spec.canary this rollout is for."
    )
    current_step: int = 0
    weight: int = 0
    total_replicas: int | None = Field(
        default=None, description="Replicas of the target before the rollout; split by weight."
    )
    started_at: datetime | None = None
    step_started_at: datetime | None = None
    last_analysis_at: datetime | None = None
    consecutive_errors: int = 0
    last_action_id: str | None = Field(
        default=None, description="Id of the last manual action acted on (idempotency)."
    )
    guards: list[GuardResult] = Field(default_factory=list)
    conditions: list[Condition] = Field(default_factory=list)
    history: list[DecisionRecord] = Field(default_factory=list)
    statistics: dict[str, Any] = Field(
        default_factory=dict, description="Per-cohort sufficient statistics (mergeable)."
    )
    quarantined_samples: int = Field(
        default=0, description="Stored samples of this rule that could not be read back and "
        "were set aside (reported once each as a SamplesQuarantined event)."
    )
    message: str = ""

    def set_condition(self, kind: str, ok: bool, reason: str, message: str,
                      now: datetime) -> bool:
        """Create or update the condition ``kind``; True when its status changed."""
        value: Literal["True", "False"] = "True" if ok else "False"
        for c in self.conditions:
            if c.type == kind:
                changed = c.status != value
                if changed:
                    c.last_transition_time = now
                c.status, c.reason, c.message = value, reason, message
                return changed
        self.conditions.append(Condition(type=kind, status=value, reason=reason,
                                         message=message, last_transition_time=now))
        return True
