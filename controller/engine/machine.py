"""The rollout state machine: (spec, status, observed, decision, now) -> plan.

Pure: it never reads the clock or the network, so every transition is testable with
plain values. The reconciler persists the returned status *before* executing the
returned operations, and every operation is idempotent ("make it so", not "do it
again"). A controller killed between the two re-derives the same plan from the
persisted status and re-applies the same idempotent operations: nothing happens twice.

Phases::

    Pending -> Progressing -(guards pass, last step)-> Promoting -> [Baking] -> Succeeded
                 |  ^   \\-(guard fails, deadline, manual)-> RollingBack -> RolledBack
                 v  |                                          ^
                Paused       Promoting / Baking / Succeeded (undo) / Failed -/

In order, each reconcile: a deletion restores the target and releases the finalizer; a
rule that does not own its target (another rule does) waits; a changed ``spec.canary``
starts a rollout (or does nothing when the canary equals the running template, or
aborts at once when it is set back to the stable template); a change of the target's
template during a rollout (drift) restarts it with the new baseline or pauses it; a
manual action; then the phase's own step with this interval's analysis; then readiness,
deadlines and the operations that make the cluster match the phase.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from controller.models import CanaryRuleSpec, CanaryRuleStatus, Decision, Phase, parse_duration

from . import converge as cv
from . import lifecycle, phases
from .builder import Builder, StatusWriter
from .manual import ALLOWED, ManualAction, ManualError, ManualRequest
from .templates import TemplateError, canary_template, describe_change, spec_hash
from .world import Observed, Plan

CLAIMED_CONDITION = "Claimed"
TARGET_CONDITION = "TargetFound"
DRIFT_CONDITION = "TargetChanged"
TRANSITIONAL = (Phase.PROMOTING, Phase.BAKING, Phase.ROLLING_BACK)


def plan(
    spec: CanaryRuleSpec,
    status: CanaryRuleStatus,
    *,
    generation: int | None,
    now: datetime,
    observed: Observed,
    manual: ManualRequest | ManualError | None = None,
    decision: Decision | None = None,
    judge: str | None = None,
    deleting: bool = False,
    claimed_by: str | None = None,
) -> Plan:
    """Decide what to do now. ``decision`` is this interval's analysis, if one ran, and
    ``judge`` the judge outage it saw; ``claimed_by`` names another rule that manages the
    same target."""
    b = Builder(spec, status, now, observed)
    b.status.observed_generation = generation
    if deleting:
        cv.deleting(b)
        return b.plan()
    if claimed_by is not None:
        _claimed(b, claimed_by)
        return b.plan()
    if b.get_condition(CLAIMED_CONDITION) is not None:  # it waited for another rule
        b.condition(CLAIMED_CONDITION, True, "Claimed", f"manages Deployment "
                    f"{spec.target_ref.name}")
    if observed.target is None:
        _target_missing(b)
        return b.plan()
    b.condition(TARGET_CONDITION, True, "Found", f"Deployment {spec.target_ref.name}")
    _adopt_legacy(b)
    if not (_canary_changed(b) or _target_changed(b)):
        acted = _manual(b, manual)
        # At most one transition per reconcile: observations predate this plan's
        # operations, so a phase entered just now is only judged complete next time.
        if not acted:
            _phase_step(b, decision, judge)
    cv.track(b)
    cv.converge(b)
    b.finalizer = b.status.phase.active or b.status.target_modified or cv.sides_busy(b)
    return b.plan()


def invalid(status: CanaryRuleStatus, *, now: datetime, reason: str) -> Plan:
    """The rule cannot be read as a CanaryRule (a cross-field check the CRD cannot make)."""
    b = StatusWriter(status, now)
    if b.status.phase is not Phase.FAILED:
        b.record("fail", reason)
        b.transition(Phase.FAILED, "InvalidSpec", reason, warning=True)
    return b.plan()


def deadline_reached(spec: CanaryRuleSpec, status: CanaryRuleStatus, now: datetime) -> bool:
    """maxDuration since the rollout started has passed."""
    if status.started_at is None:
        return False
    limit = timedelta(seconds=parse_duration(spec.analysis.max_duration))
    return now - status.started_at >= limit


# --------------------------------------------------------------------------- ownership, target


def _claimed(b: Builder, owner: str) -> None:
    why = (f"Deployment {b.spec.target_ref.name} is managed by CanaryRule {owner}; this rule "
           "waits until that one is deleted")
    if b.condition(CLAIMED_CONDITION, False, "TargetManagedByAnotherRule", why):
        b.event("Warning", "TargetManagedByAnotherRule", why)
    b.status.message = why
    b.finalizer = False if not b.status.phase.active else None


def _target_missing(b: Builder) -> None:
    s, name = b.status, b.spec.target_ref.name
    b.condition(CLAIMED_CONDITION, True, "Claimed", f"manages Deployment {name}")
    b.condition(TARGET_CONDITION, False, "NotFound", f"Deployment {name} not found")
    if cv.sides_busy(b):
        s.message = f"target Deployment {name} is gone: removing the canary"
        cv.deleting_sides(b)
        b.finalizer = True
        return
    if s.phase.active:
        why = f"target Deployment {name} was deleted during the rollout; canary removed"
        b.record("fail", why)
        b.transition(Phase.FAILED, "TargetDeleted", why, warning=True)
    elif s.phase is Phase.PENDING:
        s.message = f"waiting for the target Deployment {name}"
    b.finalizer = False


# --------------------------------------------------------------------------- spec changes


def _adopt_legacy(b: Builder) -> None:
    """A status written before revisions were template hashes (no canarySpecHash): a
    rollout in flight for the same spec.canary continues with the target as its stable
    template (the canary's pods roll once to get their revision marks)."""
    s = b.status
    if s.canary_spec_hash is not None or s.canary_revision is None:
        return
    legacy = s.canary_revision
    if legacy != spec_hash(b.spec.canary) or s.phase not in (Phase.PROGRESSING, Phase.PAUSED):
        return
    try:
        _, revision = canary_template(b.observed.target_template, b.spec.canary)
    except TemplateError:
        return
    s.canary_spec_hash = legacy
    s.stable_template = b.observed.target_template
    s.stable_revision = b.target.revision
    s.canary_revision = revision
    s.baseline_evidence_since = s.started_at


def _canary_changed(b: Builder) -> bool:
    """A new ``spec.canary``: start, restart, no-op or fast abort. True when handled."""
    s, spec = b.status, b.spec
    wanted = spec_hash(spec.canary)
    if s.canary_spec_hash == wanted or s.phase in TRANSITIONAL:
        return False  # in a transitional phase, acted on once the phase ends
    active = s.phase in (Phase.PROGRESSING, Phase.PAUSED) and s.stable_template is not None
    stable = s.stable_template if active and s.stable_template is not None \
        else b.observed.target_template
    s.canary_spec_hash = wanted
    try:
        _, revision = canary_template(stable, spec.canary)
    except TemplateError as exc:
        reason = f"spec.canary does not fit the target: {exc}"
        b.record("rollback" if active else "fail", reason)
        b.transition(Phase.ROLLING_BACK if active else Phase.FAILED, "InvalidCanary", reason,
                     warning=True)
        return True
    if active and revision == s.canary_revision:
        return False  # the same canary template: nothing changes
    if revision == b.target.revision or (active and revision == s.stable_revision):
        if active:
            lifecycle.abort_to_stable(b)
        else:
            lifecycle.nothing_to_do(b, revision)
        return True
    restarted = s.canary_revision is not None
    cause = "spec.canary changed mid-rollout" if active else "new canary"
    lifecycle.start(b, stable, revision, cause=cause,
                    action="restart" if restarted else "start")
    return True


def _target_changed(b: Builder) -> bool:
    """Drift: the target's template changed during a rollout (not by us). True when the
    rollout restarted or paused because of it."""
    s = b.status
    if s.phase not in (Phase.PROGRESSING, Phase.PAUSED) or s.target_modified or \
            s.stable_revision is None or b.target.revision in (None, s.stable_revision):
        return False
    change = describe_change(s.stable_template or {}, b.observed.target_template)
    if s.phase is Phase.PAUSED or b.spec.on_target_change == "pause":
        why = f"the target's template changed during the rollout ({change}); paused until " \
              "resumed (resume restarts with it as the new baseline)"
        changed = b.condition(DRIFT_CONDITION, True, "TargetChanged", why)
        if s.phase is Phase.PROGRESSING:
            b.record("pause", why)
            b.transition(Phase.PAUSED, "TargetChanged", why, warning=True)
            return True
        if changed:
            b.event("Warning", "TargetChanged", why)
        return False
    why = f"the target's template changed during the rollout ({change})"
    b.condition(DRIFT_CONDITION, True, "TargetChanged",
                f"{why}; restarted with it as the new baseline and fresh evidence")
    b.event("Warning", "TargetChanged", f"{why}: restarting with it as the new baseline")
    lifecycle.restart_on(b, b.observed.target_template, cause=why, action="restart")
    return True


# --------------------------------------------------------------------------- manual actions


def _manual(b: Builder, req: ManualRequest | ManualError | None) -> bool:
    """Apply a manual action once (by id); False when it does nothing now."""
    s = b.status
    if isinstance(req, ManualError):
        b.event("Warning", "InvalidAction", req.message)
        return False
    if req is None or req.id == s.last_action_id:
        return False
    s.last_action_id = req.id
    if s.phase not in ALLOWED[req.action]:
        return _ignored(b, req, f"does nothing in phase {s.phase.value}")
    suffix = f": {req.reason}" if req.reason else ""
    handler = _HANDLERS[req.action]
    why = handler(b, suffix)
    return True if why is None else _ignored(b, req, why)


def _ignored(b: Builder, req: ManualRequest, why: str) -> bool:
    b.event("Warning", "ActionIgnored", f"{req.action.value} {why}")
    return False


def _rollback(b: Builder, suffix: str) -> str | None:
    s = b.status
    if s.phase is Phase.SUCCEEDED:
        if s.stable_template is None or s.promoted_revision is None:
            return "has nothing to restore: no previous template is known"
        if b.target.revision != s.promoted_revision:
            return (f"cannot undo: the target changed since the promotion (runs "
                    f"{b.target.revision}, promoted {s.promoted_revision})")
        s.target_modified = True
        b.record("undo", f"manual undo of the promotion{suffix}", manual=True)
        b.transition(Phase.ROLLING_BACK, "Undo",
                     f"restoring the previous template (revision {s.stable_revision}){suffix}",
                     warning=True)
        return None
    b.record("rollback", f"manual rollback{suffix}", manual=True)
    b.transition(Phase.ROLLING_BACK, "ManualRollback", f"manual rollback{suffix}",
                 warning=True)
    return None


def _pause(b: Builder, suffix: str) -> str | None:
    b.record("pause", f"manual pause{suffix}", manual=True)
    b.transition(Phase.PAUSED, "ManualPause", f"paused by operator{suffix}")
    return None


def _resume(b: Builder, suffix: str) -> str | None:
    s = b.status
    if s.stable_revision is not None and b.target.revision != s.stable_revision \
            and not s.target_modified:
        lifecycle.restart_on(b, b.observed.target_template, manual=True, action="restart",
                             cause=f"resumed after the target's template changed{suffix}")
        return None
    s.consecutive_errors = 0
    b.record("resume", f"manual resume{suffix}", manual=True)
    b.transition(Phase.PROGRESSING, "ManualResume", f"resumed by operator{suffix}")
    return None


def _promote(b: Builder, suffix: str) -> str | None:
    phases.advance(b, f"manual promotion to the next step{suffix}", manual=True)
    return None


def _promote_full(b: Builder, suffix: str) -> str | None:
    if b.status.phase is Phase.BAKING:
        phases.end_bake(b, f"bake ended by operator{suffix}", manual=True)
        return None
    phases.promote(b, f"full promotion by operator{suffix}", manual=True)
    return None


def _retry(b: Builder, suffix: str) -> str | None:
    if b.status.target_modified:
        return ("cannot retry while the target runs a template this rollout wrote: roll "
                "back first")
    lifecycle.restart_on(b, b.observed.target_template, cause=f"retry by operator{suffix}",
                         action="retry", manual=True)
    return None


_HANDLERS = {
    ManualAction.ROLLBACK: _rollback,
    ManualAction.PAUSE: _pause,
    ManualAction.RESUME: _resume,
    ManualAction.PROMOTE: _promote,
    ManualAction.PROMOTE_FULL: _promote_full,
    ManualAction.RETRY: _retry,
}


def _phase_step(b: Builder, decision: Decision | None, judge: str | None) -> None:
    phase = b.status.phase
    if phase is Phase.PROGRESSING:
        phases.progress(b, decision, judge)
    elif phase is Phase.PROMOTING:
        phases.promoting(b)
    elif phase is Phase.BAKING:
        phases.baking(b, decision, judge)
    elif phase is Phase.ROLLING_BACK:
        phases.rolling_back(b)
