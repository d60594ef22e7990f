"""The rollout state machine: (rule, status, observations, decision, now) -> plan.

Pure: it never reads the clock or the network, so every transition is testable with
plain values. The reconciler persists the returned status *before* executing the
returned operations, and every operation is idempotent ("make it so", not "do it
again"). A controller killed between the two re-derives the same plan from the
persisted status and re-applies the same idempotent operations: nothing happens twice.

Phases::

    Pending -> Progressing -(all guards pass, last step)-> Promoting -> Succeeded
                  |  ^  \\-(any guard fails / manual rollback)-> RollingBack -> RolledBack
                  v  |
                 Paused            (error limit reached, or manual pause)

A terminal rollout (Succeeded, RolledBack, Failed) does not restart by itself; a new
canary revision (a changed ``spec.canary``) starts a new rollout.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from controller.conventions import (
    ACTION_ANNOTATION,
    ACTION_ID_ANNOTATION,
    ACTION_REASON_ANNOTATION,
)
from controller.models import (
    HISTORY_LIMIT,
    Action,
    CanaryRuleSpec,
    CanaryRuleStatus,
    Decision,
    DecisionRecord,
    Outcome,
    Phase,
    parse_duration,
)


class ManualAction(StrEnum):
    ROLLBACK = "rollback"
    PROMOTE = "promote"
    PROMOTE_FULL = "promote-full"
    PAUSE = "pause"
    RESUME = "resume"


@dataclass(frozen=True)
class ManualRequest:
    """A manual control read from the resource's annotations (kubectl/GitOps friendly)."""

    action: ManualAction
    id: str
    reason: str = ""


def manual_request(annotations: dict[str, str]) -> ManualRequest | ManualError | None:
    """The manual action in ``annotations``, an error for an unknown one, or None."""
    raw = annotations.get(ACTION_ANNOTATION)
    if not raw:
        return None
    try:
        action = ManualAction(raw.strip())
    except ValueError:
        known = ", ".join(a.value for a in ManualAction)
        return ManualError(f"unknown action {raw!r} in {ACTION_ANNOTATION} (known: {known})")
    action_id = annotations.get(ACTION_ID_ANNOTATION) or f"{action.value}"
    return ManualRequest(action, action_id, annotations.get(ACTION_REASON_ANNOTATION, ""))


@dataclass(frozen=True)
class ManualError:
    message: str


class Op(StrEnum):
    """Idempotent cluster operations the actuator knows how to make true."""

    ENSURE_CANARY = "ensure-canary"  # canary Deployment exists with this revision's template
    SET_WEIGHT = "set-weight"  # replicas split between target and canary by weight
    PROMOTE = "promote"  # target runs the canary's template at full size
    SCALE_DOWN_CANARY = "scale-down-canary"  # canary at zero, target back at full size


@dataclass(frozen=True)
class Operation:
    op: Op
    weight: int | None = None


@dataclass(frozen=True)
class Event:
    type: str  # "Normal" | "Warning"
    reason: str
    message: str


@dataclass(frozen=True)
class Observed:
    """What the actuator saw of the cluster at the start of this reconcile."""

    target_replicas: int = 1
    canary_replicas: int = 0
    canary_ready: bool = False
    target_promoted: bool = False  # target runs the canary revision's template and is available


@dataclass
class Plan:
    status: CanaryRuleStatus
    operations: list[Operation] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


def canary_revision(spec: CanaryRuleSpec) -> str:
    """Stable short hash of what the canary changes: a new value starts a new rollout."""
    payload = json.dumps(
        spec.canary.model_dump(by_alias=True, mode="json", exclude_none=True), sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def deadline_reached(spec: CanaryRuleSpec, status: CanaryRuleStatus, now: datetime) -> bool:
    if status.started_at is None:
        return False
    limit = timedelta(seconds=parse_duration(spec.analysis.max_duration))
    return now - status.started_at >= limit


class _Builder:
    """Accumulates one reconcile's status changes, operations and events."""

    def __init__(self, status: CanaryRuleStatus, now: datetime) -> None:
        self.status = status.model_copy(deep=True)
        self.now = now
        self.ops: list[Operation] = []
        self.events: list[Event] = []

    def op(self, op: Op, weight: int | None = None) -> None:
        self.ops.append(Operation(op, weight))

    def record(
        self, action: str, reason: str, *, manual: bool = False, failing: list[str] | None = None
    ) -> None:
        history = self.status.history
        if action == "hold" and history and history[-1].action == "hold":
            # Consecutive holds collapse into the latest one, so that a long wait does not
            # push the decisions that matter out of the bounded history.
            history.pop()
        self.status.history.append(
            DecisionRecord(
                time=self.now,
                action=action,
                reason=reason,
                step=self.status.current_step,
                weight=self.status.weight,
                manual=manual,
                failing_guards=failing or [],
            )
        )
        del self.status.history[:-HISTORY_LIMIT]

    def transition(self, phase: Phase, reason: str, message: str, *, warning: bool = False) -> None:
        if self.status.phase != phase:
            self.status.phase = phase
            self.events.append(Event("Warning" if warning else "Normal", reason, message))
        self.status.message = message
        self.condition("Ready", phase is Phase.SUCCEEDED, reason, message)

    def condition(self, kind: str, ok: bool, reason: str, message: str) -> None:
        self.status.set_condition(kind, ok, reason, message, self.now)

    def plan(self) -> Plan:
        return Plan(self.status, self.ops, self.events)


def plan(
    spec: CanaryRuleSpec,
    status: CanaryRuleStatus,
    *,
    generation: int | None,
    now: datetime,
    observed: Observed,
    manual: ManualRequest | ManualError | None = None,
    decision: Decision | None = None,
) -> Plan:
    """Decide what to do now. ``decision`` is this interval's analysis, if one ran."""
    b = _Builder(status, now)
    b.status.observed_generation = generation
    revision = canary_revision(spec)

    if b.status.canary_revision != revision:
        _start(b, spec, revision, observed, restarted=b.status.canary_revision is not None)
        return b.plan()

    acted = False
    if isinstance(manual, ManualError):
        b.events.append(Event("Warning", "InvalidAction", manual.message))
    elif manual is not None and manual.id != b.status.last_action_id:
        b.status.last_action_id = manual.id
        acted = _manual(b, spec, manual)

    # At most one transition per reconcile: observations predate this plan's operations,
    # so a phase entered just now is only judged complete on the next reconcile.
    if not acted:
        phase = b.status.phase
        if phase is Phase.PROGRESSING:
            _progress(b, spec, decision)
        elif phase is Phase.PROMOTING:
            _promoting(b, observed)
        elif phase is Phase.ROLLING_BACK:
            _rolling_back(b, observed)

    _converge(b, observed)
    return b.plan()


def failed(status: CanaryRuleStatus, *, now: datetime, reason: str) -> Plan:
    """The rollout cannot proceed at all (e.g. its target Deployment is gone)."""
    b = _Builder(status, now)
    if b.status.phase is not Phase.FAILED:
        b.record("fail", reason)
        b.transition(Phase.FAILED, "Failed", reason, warning=True)
    return b.plan()


def _start(
    b: _Builder, spec: CanaryRuleSpec, revision: str, observed: Observed, *, restarted: bool
) -> None:
    s = b.status
    s.canary_revision = revision
    s.current_step = 0
    s.weight = spec.steps[0].weight
    if s.total_replicas is None or s.phase in (Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.PENDING):
        s.total_replicas = max(1, observed.target_replicas + observed.canary_replicas)
    s.started_at = b.now
    s.step_started_at = b.now
    s.consecutive_errors = 0
    s.guards = []
    s.statistics = {}  # fresh evidence: the analysis reads the log from started_at on
    why = f"canary revision {revision}: starting at step 1 of {len(spec.steps)}, weight {s.weight}%"
    b.record("restart" if restarted else "start", why)
    b.status.phase = Phase.PENDING
    b.transition(Phase.PROGRESSING, "RolloutRestarted" if restarted else "RolloutStarted", why)
    _converge(b, observed)


def _manual(b: _Builder, spec: CanaryRuleSpec, req: ManualRequest) -> bool:
    """Apply a manual action; False when it does nothing in the current phase."""
    s = b.status
    suffix = f": {req.reason}" if req.reason else ""
    active = s.phase in (Phase.PROGRESSING, Phase.PAUSED)
    if req.action is ManualAction.ROLLBACK:
        if active:
            b.record("rollback", f"manual rollback{suffix}", manual=True)
            b.transition(
                Phase.ROLLING_BACK, "ManualRollback", f"manual rollback{suffix}", warning=True
            )
            return True
    elif req.action is ManualAction.PAUSE:
        if s.phase is Phase.PROGRESSING:
            b.record("pause", f"manual pause{suffix}", manual=True)
            b.transition(Phase.PAUSED, "ManualPause", f"paused by operator{suffix}")
            return True
    elif req.action is ManualAction.RESUME:
        if s.phase is Phase.PAUSED:
            s.consecutive_errors = 0
            b.record("resume", f"manual resume{suffix}", manual=True)
            b.transition(Phase.PROGRESSING, "ManualResume", f"resumed by operator{suffix}")
            return True
    elif req.action is ManualAction.PROMOTE_FULL:
        if active:
            b.record("promote", f"manual full promotion{suffix}", manual=True)
            b.transition(Phase.PROMOTING, "ManualPromote", f"full promotion by operator{suffix}")
            return True
    elif req.action is ManualAction.PROMOTE and active:
        _advance(b, spec, f"manual promotion to the next step{suffix}", manual=True)
        return True
    b.events.append(
        Event(
            "Warning", "ActionIgnored", f"{req.action.value} does nothing in phase {s.phase.value}"
        )
    )
    return False


def _advance(b: _Builder, spec: CanaryRuleSpec, reason: str, *, manual: bool = False) -> None:
    s = b.status
    if s.current_step + 1 >= len(spec.steps):
        b.record("promote", reason, manual=manual)
        b.transition(Phase.PROMOTING, "Promoting", f"promoting: {reason}")
        return
    s.current_step += 1
    s.weight = spec.steps[s.current_step].weight
    s.step_started_at = b.now
    b.record("advance", reason, manual=manual)
    message = f"step {s.current_step + 1}/{len(spec.steps)}, weight {s.weight}%: {reason}"
    b.events.append(Event("Normal", "StepAdvanced", message))
    s.message = message
    if s.phase is Phase.PAUSED:
        b.transition(Phase.PROGRESSING, "Resumed", message)


def _progress(b: _Builder, spec: CanaryRuleSpec, decision: Decision | None) -> None:
    if decision is None:
        return
    s = b.status
    s.last_analysis_at = b.now
    s.guards = list(decision.guards)
    errored = sorted({g.name for g in decision.guards if g.outcome is Outcome.ERROR})
    failing = sorted({g.name for g in decision.guards if g.outcome is Outcome.FAIL})

    if decision.action is Action.ROLLBACK:
        b.record("rollback", decision.reason, failing=failing)
        b.transition(Phase.ROLLING_BACK, "RollbackTriggered", decision.reason, warning=True)
        return

    s.consecutive_errors = s.consecutive_errors + 1 if errored else 0
    if errored and s.consecutive_errors >= spec.analysis.error_limit:
        why = (
            f"{s.consecutive_errors} consecutive analyses with errors "
            f"({', '.join(errored)}); limit {spec.analysis.error_limit}"
        )
        if spec.analysis.on_error_limit == "rollback":
            b.record("rollback", why, failing=errored)
            b.transition(Phase.ROLLING_BACK, "AnalysisErrors", why, warning=True)
        else:
            b.record("pause", why, failing=errored)
            b.transition(Phase.PAUSED, "AnalysisErrors", why, warning=True)
        return

    if decision.action is Action.PROMOTE:
        pause = spec.steps[s.current_step].pause
        if pause and s.step_started_at is not None:
            ready_at = s.step_started_at + timedelta(seconds=parse_duration(pause))
            if b.now < ready_at:
                s.message = f"guards pass; step pause until {ready_at.isoformat()}"
                b.record("hold", s.message)
                return
        _advance(b, spec, decision.reason)
        return

    b.record("hold", decision.reason)
    s.message = decision.reason
    b.condition("Ready", False, "Analyzing", decision.reason)


def _promoting(b: _Builder, observed: Observed) -> None:
    if observed.target_promoted:
        b.record("promoted", "target runs the canary revision and is available")
        b.transition(Phase.SUCCEEDED, "Promoted", "target runs the canary revision; canary removed")


def _rolling_back(b: _Builder, observed: Observed) -> None:
    if observed.canary_replicas == 0:
        b.record("rolled-back", "canary scaled to zero; target unchanged")
        b.transition(
            Phase.ROLLED_BACK, "RolledBack", f"rolled back: {_last_reason(b)}", warning=True
        )


def _last_reason(b: _Builder) -> str:
    for rec in reversed(b.status.history):
        if rec.action == "rollback":
            return rec.reason
    return "rollback"


def _converge(b: _Builder, observed: Observed) -> None:
    """The idempotent operations that make the cluster match the (new) phase.

    Terminal phases only act while a canary pod is left, so that a later manual scale of
    the target (or an autoscaler) is never fought by a finished rollout.
    """
    phase = b.status.phase
    if phase in (Phase.PROGRESSING, Phase.PAUSED):
        b.op(Op.ENSURE_CANARY)
        b.op(Op.SET_WEIGHT, b.status.weight)
    elif phase is Phase.PROMOTING:
        b.op(Op.ENSURE_CANARY)
        b.op(Op.PROMOTE)
    elif phase is Phase.ROLLING_BACK or (
        phase in (Phase.ROLLED_BACK, Phase.SUCCEEDED) and observed.canary_replicas > 0
    ):
        b.op(Op.SCALE_DOWN_CANARY)
