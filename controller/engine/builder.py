"""One reconcile's changes: status, operations, events, conditions, the decision history."""

from __future__ import annotations

from datetime import datetime, timedelta

from controller.models import (
    HISTORY_LIMIT,
    CanaryRuleSpec,
    CanaryRuleStatus,
    Condition,
    DecisionRecord,
    HistoryAction,
    Phase,
    parse_duration,
)

from .world import Event, Observed, Op, Operation, Plan, Role, Workload

WAITING_PHASES = (Phase.PROMOTING, Phase.ROLLING_BACK, Phase.BAKING)


class StatusWriter:
    """Status changes and events of one reconcile: history, phase, conditions."""

    def __init__(self, status: CanaryRuleStatus, now: datetime) -> None:
        self.status = status.model_copy(deep=True)
        self.now = now
        self.ops: list[Operation] = []
        self.events: list[Event] = []
        self.finalizer: bool | None = None
        self.waiting = False
        self.transitioned = False

    def event(self, type_: str, reason: str, message: str) -> None:
        self.events.append(Event(type_, reason, message))

    def record(self, action: HistoryAction, reason: str, *, manual: bool = False,
               failing: list[str] | None = None) -> None:
        history = self.status.history
        if action == "hold" and history and history[-1].action == "hold":
            # Consecutive holds collapse into the latest one, so that a long wait does not
            # push the decisions that matter out of the bounded history.
            history.pop()
        history.append(DecisionRecord(
            time=self.now, action=action, reason=reason, step=self.status.current_step,
            weight=self.status.weight, manual=manual, failing_guards=failing or [],
            revision=self.status.canary_revision))
        del history[:-HISTORY_LIMIT]

    def transition(self, phase: Phase, reason: str, message: str, *,
                   warning: bool = False) -> None:
        if self.status.phase != phase:
            self.status.phase = phase
            self.transitioned = True
            self.event("Warning" if warning else "Normal", reason, message)
            if phase in WAITING_PHASES:
                self.status.waiting_since = self.now
        self.status.message = message
        self.condition("Ready", phase is Phase.SUCCEEDED, reason, message)

    def condition(self, kind: str, ok: bool, reason: str, message: str) -> bool:
        """Set a condition; True when its status changed (or it is new)."""
        return self.status.set_condition(kind, ok, reason, message, self.now)

    def get_condition(self, kind: str) -> Condition | None:
        return next((c for c in self.status.conditions if c.type == kind), None)

    def plan(self) -> Plan:
        return Plan(self.status, self.ops, self.events, self.finalizer, self.waiting)


class Builder(StatusWriter):
    """Accumulates one reconcile's status changes, operations and events, knowing the
    rule's spec and what was observed."""

    def __init__(self, spec: CanaryRuleSpec, status: CanaryRuleStatus, now: datetime,
                 observed: Observed) -> None:
        super().__init__(status, now)
        self.spec = spec
        self.observed = observed

    # -- the world ---------------------------------------------------------------------

    @property
    def target(self) -> Workload:
        return self.observed.target or Workload()

    @property
    def autoscaled(self) -> bool:
        return self.observed.autoscaler is not None

    @property
    def total(self) -> int:
        return max(1, self.status.total_replicas or self.target.replicas or 1)

    @property
    def floor(self) -> int:
        """Available pods the rollout never drops below (the target's before it)."""
        before = self.status.available_before
        return self.total if before is None else min(self.total, before)

    def seconds(self, duration: str) -> timedelta:
        return timedelta(seconds=parse_duration(duration))

    def elapsed(self, since: datetime | None) -> float:
        return 0.0 if since is None else (self.now - since).total_seconds()

    # -- operations ----------------------------------------------------------------------

    def op(self, op: Op, role: Role, *, replicas: int | None = None,
           revision: str | None = None, template: dict[str, object] | None = None) -> None:
        self.ops.append(Operation(op, role, replicas, revision, template))
