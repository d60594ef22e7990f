"""What each phase does with this reconcile's analysis and observations."""

from __future__ import annotations

from controller.models import Action, Decision, Outcome, Phase, parse_duration

from .builder import Builder
from .lifecycle import last_reason

JUDGE_CONDITION = "JudgeAvailable"


def advance(b: Builder, reason: str, *, manual: bool = False) -> None:
    s, steps = b.status, b.spec.steps
    if s.current_step + 1 >= len(steps):
        promote(b, reason, manual=manual)
        return
    s.current_step += 1
    s.weight = steps[s.current_step].weight
    s.step_started_at = s.waiting_since = b.now
    s.step_ready_at = None
    b.record("advance", reason, manual=manual)
    message = f"step {s.current_step + 1}/{len(steps)}, weight {s.weight}%: {reason}"
    b.event("Normal", "StepAdvanced", message)
    s.message = message
    if s.phase is Phase.PAUSED:
        b.transition(Phase.PROGRESSING, "Resumed", message)


def promote(b: Builder, reason: str, *, manual: bool = False) -> None:
    """Into Promoting: from now on the target runs a template this rollout writes."""
    b.status.target_modified = True
    b.record("promote", reason, manual=manual)
    b.transition(Phase.PROMOTING, "ManualPromote" if manual else "Promoting",
                 f"promoting: {reason}")


def judge_condition(b: Builder, outage: str | None) -> None:
    """JudgeAvailable, with an Event when an outage starts and when it ends."""
    if b.spec.judge is None:
        return
    if outage:
        if b.condition(JUDGE_CONDITION, False, "JudgeUnavailable", outage):
            b.event("Warning", "JudgeUnavailable", outage)
        return
    before = b.get_condition(JUDGE_CONDITION)
    if b.condition(JUDGE_CONDITION, True, "JudgeAvailable", "the judge answered") and \
            before is not None:
        b.event("Normal", "JudgeRecovered", "the judge answers again")


def _look(b: Builder, decision: Decision, judge: str | None) -> tuple[list[str], list[str]]:
    """Record an analysis: guards, the judge's health, the error count. Returns the
    guards with errors and the failing ones."""
    s = b.status
    s.last_analysis_at = b.now
    s.guards = list(decision.guards)
    judge_condition(b, judge)
    errored = sorted({g.name for g in decision.guards if g.outcome is Outcome.ERROR})
    failing = sorted({g.name for g in decision.guards if g.outcome is Outcome.FAIL})
    if decision.action is not Action.ROLLBACK:
        s.consecutive_errors = s.consecutive_errors + 1 if errored else 0
    return errored, failing


def _over_error_limit(b: Builder, errored: list[str]) -> str | None:
    """Why the error limit acts now (errorLimit errors are tolerated, the next acts)."""
    s, limit = b.status, b.spec.analysis.error_limit
    if not errored or s.consecutive_errors <= limit:
        return None
    return (f"{s.consecutive_errors} consecutive analyses with errors ({', '.join(errored)}); "
            f"errorLimit {limit} tolerated")


def progress(b: Builder, decision: Decision | None, judge: str | None) -> None:
    if decision is None:
        return
    s = b.status
    errored, failing = _look(b, decision, judge)
    if decision.action is Action.ROLLBACK:
        b.record("rollback", decision.reason, failing=failing)
        b.transition(Phase.ROLLING_BACK, "RollbackTriggered", decision.reason, warning=True)
        return
    why = _over_error_limit(b, errored)
    if why is not None:
        if b.spec.analysis.on_error_limit == "rollback":
            b.record("rollback", why, failing=errored)
            b.transition(Phase.ROLLING_BACK, "AnalysisErrors", why, warning=True)
        else:
            b.record("pause", why, failing=errored)
            b.transition(Phase.PAUSED, "AnalysisErrors", why, warning=True)
        return
    if decision.action is Action.PROMOTE:
        _promote_step(b, decision.reason)
        return
    b.record("hold", decision.reason)
    s.message = decision.reason
    b.condition("Ready", False, "Analyzing", decision.reason)


def _promote_step(b: Builder, reason: str) -> None:
    """Guards pass: advance, once the step's pods are all available and its pause is over."""
    s = b.status
    if s.step_ready_at is None:
        s.message = (f"guards pass; waiting for step {s.current_step + 1}'s canary pods to be "
                     "available")
        b.record("hold", s.message)
        return
    pause = b.spec.steps[min(s.current_step, len(b.spec.steps) - 1)].pause
    if pause:
        ready_at = s.step_ready_at + b.seconds(pause)
        if b.now < ready_at:
            s.message = f"guards pass; step pause until {ready_at.isoformat()}"
            b.record("hold", s.message)
            return
    advance(b, reason)


def promoting(b: Builder) -> None:
    s, t = b.status, b.target
    full = b.autoscaled or t.replicas >= b.total
    if not (t.revision == s.canary_revision and t.rolled_out and full):
        return
    s.promoted_revision = s.canary_revision
    if b.spec.bake is not None:
        start_bake(b)
        return
    s.target_modified = False
    b.record("promoted", "the target runs the canary revision and is available")
    b.transition(Phase.SUCCEEDED, "Promoted", "the target runs the canary revision; canary "
                 "removed")


def start_bake(b: Builder) -> None:
    s, bake = b.status, b.spec.bake
    assert bake is not None
    s.bake_started_at = b.now
    s.baseline_evidence_since = None  # once the holdback is available
    s.step_ready_at = None
    s.statistics = {}
    s.guards = []
    s.consecutive_errors = 0
    why = (f"the target runs revision {s.canary_revision}; baking for {bake.duration} with a "
           f"{bake.holdback}% holdback on revision {s.stable_revision}")
    b.record("bake", why)
    b.transition(Phase.BAKING, "Baking", why)


def end_bake(b: Builder, reason: str, *, manual: bool = False) -> None:
    b.status.target_modified = False
    b.record("baked", reason, manual=manual)
    b.transition(Phase.SUCCEEDED, "Baked", f"the target runs revision "
                 f"{b.status.canary_revision}: {reason}")


def baking(b: Builder, decision: Decision | None, judge: str | None) -> None:
    s, bake = b.status, b.spec.bake
    if bake is None:  # the bake was removed from the spec: it ends now
        end_bake(b, "spec.bake removed")
        return
    if decision is not None:
        errored, failing = _look(b, decision, judge)
        if decision.action is Action.ROLLBACK:
            b.record("rollback", f"bake failed: {decision.reason}", failing=failing)
            b.transition(Phase.ROLLING_BACK, "BakeFailed",
                         f"bake failed, restoring the previous template: {decision.reason}",
                         warning=True)
            return
        why = _over_error_limit(b, errored)
        if why is not None and b.spec.analysis.on_error_limit == "rollback":
            b.record("rollback", why, failing=errored)
            b.transition(Phase.ROLLING_BACK, "AnalysisErrors", why, warning=True)
            return
        s.message = f"baking: {why or decision.reason}"
        b.record("hold", s.message, failing=errored)
    over = s.consecutive_errors > b.spec.analysis.error_limit
    if not over and b.elapsed(s.bake_started_at) >= parse_duration(bake.duration):
        end_bake(b, f"no regression in {bake.duration} of bake")


def rolling_back(b: Builder) -> None:
    s, o = b.status, b.observed
    idle = all(w is None or w.idle for w in (o.canary, o.holdback))
    restored = not s.target_modified or (b.target.revision == s.stable_revision
                                         and b.target.rolled_out)
    if not (idle and restored):
        return
    what = "target restored to its previous template" if s.target_modified else \
        "target unchanged"
    s.target_modified = False
    b.record("rolled-back", f"canary removed; {what}")
    b.transition(Phase.ROLLED_BACK, "RolledBack", f"rolled back: {last_reason(b)}",
                 warning=True)
