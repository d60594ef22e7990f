"""Starting, restarting and ending rollouts (shared by spec changes, drift and actions)."""

from __future__ import annotations

from controller.models import HistoryAction, Phase
from controller.models.base import JSON

from .builder import Builder
from .templates import TemplateError, canary_template, template_revision


def start(b: Builder, stable: JSON, revision: str, *, cause: str, action: HistoryAction,
          manual: bool = False) -> None:
    """A (re)start at step 1 with fresh evidence: the canary runs ``revision`` (built from
    ``stable`` plus ``spec.canary``), compared with ``stable`` as it runs in the target."""
    s, target = b.status, b.target
    in_flight = s.phase in (Phase.PROGRESSING, Phase.PAUSED) and s.total_replicas
    s.canary_revision = revision
    s.stable_template = stable
    s.stable_revision = template_revision(stable)
    if not in_flight:
        sides = [w for w in (b.observed.canary, b.observed.holdback) if w and not w.idle]
        if not (sides and s.total_replicas):
            s.total_replicas = max(1, target.replicas)
        s.available_before = min(target.available, s.total_replicas or 1)
    s.autoscaled_by = b.observed.autoscaler
    s.current_step = 0
    s.weight = b.spec.steps[0].weight
    s.started_at = s.step_started_at = s.waiting_since = b.now
    s.step_ready_at = s.canary_ready_at = s.canary_evidence_since = None
    settled = target.rolled_out and target.revision == s.stable_revision
    s.baseline_evidence_since = b.now if settled else None
    s.bake_started_at = None
    s.consecutive_errors = 0
    s.guards = []
    s.statistics = {}
    s.target_modified = False
    s.promoted_revision = None
    why = (f"{cause}: canary revision {revision} against {s.stable_revision}, step 1 of "
           f"{len(b.spec.steps)}, weight {s.weight}%")
    b.record(action, why, manual=manual)
    restarted = action != "start"
    s.phase = Phase.PENDING  # a (re)start is always reported, even from Progressing
    b.transition(Phase.PROGRESSING, "RolloutRestarted" if restarted else "RolloutStarted", why)


def restart_on(b: Builder, stable: JSON, *, cause: str, action: HistoryAction,
               manual: bool = False) -> None:
    """Restart against ``stable`` (the target as it runs now): a fresh rollout, nothing
    to do when the canary equals it, a rollback when ``spec.canary`` does not fit it."""
    try:
        _, revision = canary_template(stable, b.spec.canary)
    except TemplateError as exc:
        reason = f"{cause}, and spec.canary does not fit it: {exc}"
        b.record("rollback", reason, manual=manual)
        b.transition(Phase.ROLLING_BACK, "InvalidCanary", reason, warning=True)
        return
    if revision == template_revision(stable):
        nothing_to_do(b, revision, cause=cause)
        return
    start(b, stable, revision, cause=cause, action=action, manual=manual)


def nothing_to_do(b: Builder, revision: str, *, cause: str = "") -> None:
    """The canary equals the target's running template: a no-op, reported as such."""
    s = b.status
    s.canary_revision = s.stable_revision = revision
    s.stable_template = None
    s.target_modified = False
    why = (f"nothing to roll out: the canary equals the target's running template "
           f"(revision {revision})")
    if cause:
        why = f"{cause}; {why}"
    b.record("no-op", why)
    b.transition(Phase.SUCCEEDED, "NothingToRollOut", why)


def abort_to_stable(b: Builder) -> None:
    """spec.canary is back to the stable template mid-rollout: traffic back to stable,
    then the canary removed, without analysis and without a new rollout."""
    why = "spec.canary is back to the stable template: aborting the rollout without analysis"
    b.record("abort", why)
    b.transition(Phase.ROLLING_BACK, "BackToStable", why, warning=True)


def last_reason(b: Builder) -> str:
    for rec in reversed(b.status.history):
        if rec.action in ("rollback", "abort", "undo"):
            return rec.reason
    return "rollback"
