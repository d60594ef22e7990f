"""From the phase to operations, and from observations to readiness and deadlines.

Operations are ordered so capacity never dips: a template write first (promotion,
restore), then Deployments that grow, then Deployments that shrink.
"""

from __future__ import annotations

from datetime import timedelta

from controller.models import Phase, parse_duration

from . import placement as pl
from .builder import Builder
from .templates import canary_template, holdback_template
from .world import Op, Role, Workload

AVAILABLE_CONDITION = "CanaryAvailable"
DELETING_CONDITION = "Deleting"


def progress_deadline(b: Builder) -> float:
    return float(b.spec.progress_deadline_seconds or b.observed.progress_deadline_seconds
                 or 600)


def promotion_deadline(b: Builder) -> float:
    return float(b.spec.promotion_deadline_seconds or progress_deadline(b))


def _surge(b: Builder) -> int:
    return pl.resolve_surge(b.observed.max_surge, b.total)


def _sides(b: Builder) -> list[Workload | None]:
    return [b.observed.canary, b.observed.holdback]


def sides_busy(b: Builder) -> bool:
    return any(w is not None and not w.idle for w in _sides(b))


def canary_placement(b: Builder) -> pl.Placement:
    s = b.status
    return pl.progress(s.weight, b.total, b.target, b.observed.canary,
                       revision=s.canary_revision, autoscaled=b.autoscaled, surge=_surge(b))


def holdback_placement(b: Builder) -> pl.Placement:
    share = b.spec.bake.holdback if b.spec.bake else 0
    return pl.progress(share, b.total, b.target, b.observed.holdback,
                       revision=b.status.stable_revision, autoscaled=b.autoscaled,
                       surge=_surge(b))


# --------------------------------------------------------------------------- tracking


def track(b: Builder) -> None:
    """Readiness, effective weight and deadlines from what is observed now."""
    s, o = b.status, b.observed
    if s.phase.active:
        s.autoscaled_by = o.autoscaler
    _effective_weight(b)
    if s.phase in (Phase.PROGRESSING, Phase.PAUSED):
        _track_canary(b)
    elif s.phase is Phase.BAKING:
        _track_holdback(b)
    elif s.phase is Phase.PROMOTING:
        b.waiting = True
        limit = promotion_deadline(b)
        if not b.transitioned and b.elapsed(s.waiting_since) >= limit:
            _promotion_deadline(b, limit)


def _effective_weight(b: Builder) -> None:
    s, o = b.status, b.observed
    if not s.phase.active:
        s.effective_weight = None
        return
    t = b.target.available
    c = o.canary.available if o.canary else 0
    h = o.holdback.available if o.holdback else 0
    s.effective_weight = pl.effective_weight(t, h) if s.phase is Phase.BAKING else \
        pl.effective_weight(c, t + h)


def _track_canary(b: Builder) -> None:
    s, t = b.status, b.target
    if s.baseline_evidence_since is None and t.rolled_out and t.revision == s.stable_revision:
        s.baseline_evidence_since = b.now + _settle(b)
    place = canary_placement(b)
    if place.ready:
        s.waiting_since = None
        s.step_ready_at = s.step_ready_at or b.now
        if s.canary_ready_at is None:
            s.canary_ready_at = b.now
            s.canary_evidence_since = b.now + _settle(b)
        b.condition(AVAILABLE_CONDITION, True, "Available",
                    f"{place.side} canary pods available at revision {s.canary_revision}")
        return
    b.waiting = True
    s.waiting_since = s.waiting_since or b.now
    c = b.observed.canary or Workload()
    detail = f"{c.available} of {place.side} canary pods available"
    if c.revision != s.canary_revision and c.replicas:
        detail += f" (replacing revision {c.revision})"
    if c.problem:
        detail += f": {c.problem}"
    b.condition(AVAILABLE_CONDITION, False, "Waiting", detail)
    if s.canary_ready_at is None and not b.transitioned and s.phase is Phase.PROGRESSING:
        s.message = f"step {s.current_step + 1}/{len(b.spec.steps)}, weight {s.weight}%: " \
                    f"waiting for the canary ({detail})"
    limit = progress_deadline(b)
    if s.phase is Phase.PROGRESSING and not b.transitioned and \
            b.elapsed(s.waiting_since) >= limit:
        _progress_deadline(b, limit, detail)


def _settle(b: Builder) -> timedelta:
    return timedelta(seconds=parse_duration(b.spec.analysis.settle))


def _track_holdback(b: Builder) -> None:
    s = b.status
    place = holdback_placement(b)
    if place.ready:
        s.waiting_since = None
        s.baseline_evidence_since = s.baseline_evidence_since or b.now
        return
    b.waiting = True


def _progress_deadline(b: Builder, limit: float, detail: str) -> None:
    why = f"canary not available within {limit:.0f}s ({detail})"
    if b.spec.on_progress_deadline == "fail":
        b.record("fail", why)
        b.transition(Phase.FAILED, "ProgressDeadlineExceeded", why, warning=True)
    else:
        b.record("rollback", why)
        b.transition(Phase.ROLLING_BACK, "ProgressDeadlineExceeded", why, warning=True)


def _promotion_deadline(b: Builder, limit: float) -> None:
    t = b.target
    why = (f"the target did not run revision {b.status.canary_revision} with every pod "
           f"available within {limit:.0f}s ({t.available} of {t.replicas} available"
           + (f": {t.problem}" if t.problem else "") + "); the canary keeps serving")
    b.record("fail", why)
    b.transition(Phase.FAILED, "PromotionDeadlineExceeded", why, warning=True)


# --------------------------------------------------------------------------- operations


def converge(b: Builder) -> None:
    phase = b.status.phase
    if phase in (Phase.PROGRESSING, Phase.PAUSED):
        _converge_progress(b)
    elif phase is Phase.PROMOTING:
        _converge_promoting(b)
    elif phase is Phase.BAKING:
        _converge_baking(b)
    elif phase is Phase.ROLLING_BACK:
        _converge_drain(b, force=b.elapsed(b.status.waiting_since) >= progress_deadline(b))
    elif phase in (Phase.SUCCEEDED, Phase.ROLLED_BACK) and sides_busy(b):
        # Terminal phases act only while a canary or holdback pod is left, so that a later
        # manual scale of the target (or an autoscaler) is never fought by a finished rule.
        _converge_drain(b, force=False)


def _scale(b: Builder, wanted: list[tuple[Role, int | None, Workload | None]]) -> None:
    """SCALE operations, growing Deployments first; nothing for what already matches."""
    grows: list[tuple[Role, int]] = []
    shrinks: list[tuple[Role, int]] = []
    for role, want, current in wanted:
        if want is None:
            continue
        have = current.replicas if current is not None else 0
        if current is not None and want == have:
            continue
        (grows if want > have else shrinks).append((role, want))
    for role, want in grows + shrinks:
        b.op(Op.SCALE, role, replicas=want)


def _ensure_canary(b: Builder) -> None:
    s = b.status
    if s.stable_template is None:
        return
    template, revision = canary_template(s.stable_template, b.spec.canary)
    if revision == s.canary_revision:
        b.op(Op.ENSURE, Role.CANARY, revision=revision, template=template)


def _converge_progress(b: Builder) -> None:
    s = b.status
    s.current_step = min(s.current_step, len(b.spec.steps) - 1)
    s.weight = b.spec.steps[s.current_step].weight
    _ensure_canary(b)
    place = canary_placement(b)
    _scale(b, [(Role.TARGET, place.target, b.observed.target),
               (Role.CANARY, place.side, b.observed.canary)])


def _converge_promoting(b: Builder) -> None:
    b.op(Op.PROMOTE, Role.TARGET, revision=b.status.canary_revision)
    if not b.autoscaled:
        _scale(b, [(Role.TARGET, b.total, b.observed.target)])


def _converge_baking(b: Builder) -> None:
    s, o = b.status, b.observed
    if s.stable_template is not None:
        template, revision = holdback_template(s.stable_template)
        b.op(Op.ENSURE, Role.HOLDBACK, revision=revision, template=template)
    place = holdback_placement(b)
    keep = 0
    if o.canary is not None and not b.autoscaled:
        holdback = o.holdback.available if o.holdback else 0
        keep = min(o.canary.replicas, o.canary.available,
                   max(0, b.floor - b.target.available - holdback))
    _scale(b, [(Role.TARGET, place.target, o.target), (Role.HOLDBACK, place.side, o.holdback),
               (Role.CANARY, keep if o.canary else None, o.canary)])
    b.waiting = b.waiting or (o.canary is not None and not o.canary.idle)


def _converge_drain(b: Builder, *, force: bool) -> None:
    """Target back (its template too, when the rollout changed it); canary and holdback
    pods go as the target's available pods cover for them (all at once past the
    deadline). The holdback runs the previous version, so it is kept before the canary."""
    s, o = b.status, b.observed
    if s.target_modified and s.stable_template is not None:
        b.op(Op.RESTORE, Role.TARGET, revision=s.stable_revision, template=s.stable_template)
    want_target, keeps = pl.drain(b.total, b.floor, b.target, [o.holdback, o.canary],
                                  autoscaled=b.autoscaled, force=force)
    _scale(b, [(Role.TARGET, want_target, o.target),
               (Role.HOLDBACK, keeps[0] if o.holdback else None, o.holdback),
               (Role.CANARY, keeps[1] if o.canary else None, o.canary)])
    b.waiting = b.waiting or sides_busy(b) or s.target_modified


# --------------------------------------------------------------------------- deletion


def deleting_sides(b: Builder) -> None:
    """Canary and holdback to zero at once (the target they stood beside is gone)."""
    o = b.observed
    _scale(b, [(Role.CANARY, 0 if o.canary else None, o.canary),
               (Role.HOLDBACK, 0 if o.holdback else None, o.holdback)])
    b.waiting = b.waiting or sides_busy(b)


def deleting(b: Builder) -> None:
    """The rule is being deleted: restore the target and remove the canary and holdback,
    then release the finalizer. Past the progress deadline, pods go regardless."""
    s = b.status
    b.condition(DELETING_CONDITION, True, "Deleting",
                "restoring the target and removing the canary before the finalizer goes")
    started = b.get_condition(DELETING_CONDITION)
    since = started.last_transition_time if started else b.now
    if b.observed.target is None:
        deleting_sides(b)
        done = not sides_busy(b)
    else:
        _converge_drain(b, force=b.elapsed(since) >= progress_deadline(b))
        restored = not s.target_modified or s.stable_template is None or \
            (b.target.revision == s.stable_revision and b.target.rolled_out)
        done = restored and not sides_busy(b)
    if done:
        b.finalizer = False
        s.target_modified = False
        s.message = "deleted: target restored, canary removed"
        return
    b.finalizer = True
    b.waiting = True
    s.message = "deleting: restoring the target and removing the canary"
