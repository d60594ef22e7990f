"""CanaryRule status: everything a restarted controller needs to resume."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, get_args

from pydantic import Field

from .base import OpenModel
from .decision import GuardResult

HISTORY_LIMIT = 20


class Phase(StrEnum):
    PENDING = "Pending"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    PROMOTING = "Promoting"
    BAKING = "Baking"
    SUCCEEDED = "Succeeded"
    ROLLING_BACK = "RollingBack"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"

    @property
    def terminal(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.FAILED)

    @property
    def active(self) -> bool:
        """A rollout is in flight: the controller has pods or a template to converge."""
        return self in (Phase.PROGRESSING, Phase.PAUSED, Phase.PROMOTING, Phase.BAKING,
                        Phase.ROLLING_BACK)


class Condition(OpenModel):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(default="", description="CamelCase machine-readable reason.")
    message: str = ""
    last_transition_time: datetime | None = None


HistoryAction = Literal[
    "start", "restart", "retry", "advance", "hold", "pause", "resume", "promote", "promoted",
    "bake", "baked", "rollback", "rolled-back", "undo", "fail", "abort", "no-op",
]
"""Every action the controller records in ``status.history`` (the engine may write no
other: ``Builder.record`` takes this type)."""


class DecisionRecord(OpenModel):
    """One entry in the decision history: what was done, when, and why."""

    time: datetime
    # One of HistoryAction when this controller wrote it, but read as any string: an entry
    # written by another version must not make the whole status unreadable (an unreadable
    # status starts the rollout over).
    action: str = Field(description="What was done: " + ", ".join(get_args(HistoryAction))
                        + ".")
    reason: str
    step: int | None = None
    weight: int | None = None
    manual: bool = False
    failing_guards: list[str] = Field(default_factory=list)
    revision: str | None = Field(default=None, description="Canary revision at the time.")


class CanaryRuleStatus(OpenModel):
    phase: Phase = Phase.PENDING
    observed_generation: int | None = None
    canary_revision: str | None = Field(
        default=None,
        description="Revision id (hash) of the canary's pod template; pods and samples carry it.",
    )
    canary_spec_hash: str | None = Field(
        default=None, description="Hash of spec.canary this rollout was started for."
    )
    stable_revision: str | None = Field(
        default=None, description="Revision id of the target's template before the rollout."
    )
    stable_template: dict[str, Any] | None = Field(
        default=None,
        description="The target's pod template before the rollout, restored exactly by a "
        "rollback after promotion (bake failure, undo).",
    )
    target_modified: bool = Field(
        default=False,
        description="The target runs a template this rollout wrote and that is not accepted "
        "yet (promoting, baking): a rollback or deletion restores stableTemplate.",
    )
    promoted_revision: str | None = Field(
        default=None, description="Revision the target was promoted to (undo checks it)."
    )
    current_step: int = 0
    weight: int = Field(default=0, description="Declared canary weight of the current step.")
    effective_weight: float | None = Field(
        default=None,
        description="Canary share of available pods, in percent: the weight in effect.",
    )
    total_replicas: int | None = Field(
        default=None, description="Replicas of the target before the rollout; split by weight."
    )
    available_before: int | None = Field(
        default=None,
        description="Available pods of the target before the rollout: capacity never drops "
        "below it.",
    )
    autoscaled_by: str | None = Field(
        default=None,
        description="The HorizontalPodAutoscaler that owns the target's replicas, if any: the "
        "controller then never writes them and sizes the canary as a share of them.",
    )
    started_at: datetime | None = None
    step_started_at: datetime | None = None
    step_ready_at: datetime | None = Field(
        default=None, description="When the current step's canary pods were all available."
    )
    canary_ready_at: datetime | None = Field(
        default=None, description="When the current revision's canary was first available."
    )
    canary_evidence_since: datetime | None = Field(
        default=None,
        description="Canary samples without a revision count from here (available + settle).",
    )
    baseline_evidence_since: datetime | None = Field(
        default=None,
        description="Baseline samples count from here (the baseline's pods all current).",
    )
    waiting_since: datetime | None = Field(
        default=None,
        description="Since when the rollout waits on pods (progress and promotion deadlines).",
    )
    bake_started_at: datetime | None = None
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
