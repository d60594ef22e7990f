"""Reconcile one CanaryRule: read, (analyse), plan, persist status, act, report.

Level-triggered: the outcome depends only on the resource and the cluster as they are
now, never on which event woke us. The order is what makes restarts safe:

1. read the rule and observe its Deployments (through the traffic router);
2. on an analysis tick, judge the rule's waiting samples first (once: a conflict below
   never re-runs LLM calls), then fold the log's new changes into the statistics and
   decide (:mod:`.analysis_step`) - only while the engine's evidence window is open;
3. ``engine.plan`` → new status + idempotent operations + events + the finalizer;
4. write the status through the status subresource, guarded by the resourceVersion
   read in step 1 (a 409 means someone else changed the rule: start over);
5. add the finalizer (before any pod exists), apply the operations in order (growing
   before shrinking), emit the events, and release the finalizer last.

A controller killed between 4 and 5 re-derives the same operations from the persisted
status on its next reconcile; the operations are "make it so", so nothing happens twice.
Every write is skipped unless this replica holds the leader lease at that moment.

A failed operation (403, 422, an unreachable API server, a conflict that kept coming)
stops the remaining ones (a shrink never follows a failed grow), sets the condition
``Synced=False`` naming the API's error, emits an ``OperationFailed`` Event, and is
raised to the manager, which reconciles the rule again after a capped exponential
backoff (:data:`controller.actuator.retry.FAILURE`), not only at the next tick.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from controller import engine
from controller.actuator.errors import Conflict, KubeError, NotFound
from controller.actuator.retry import CONFLICT, CONFLICT_ATTEMPTS
from controller.conventions import FINALIZER, KAPPA_ANNOTATION
from controller.models import CanaryRule, CanaryRuleStatus, Outcome, Phase
from controller.models.errors import format_field_errors
from controller.observability import (
    DECISIONS,
    GUARD_DELTA,
    GUARD_LOWER,
    GUARD_OUTCOME,
    GUARD_UPPER,
    JUDGE_AVAILABLE,
    OPERATION_FAILURES,
    RECONCILE_SECONDS,
    ROLLBACKS,
    RULE_EFFECTIVE_WEIGHT,
    RULE_PHASE,
    RULE_WEIGHT,
    TICK_SECONDS,
)
from controller.ports import Cluster, CountsProvider, JudgePort, SampleLog, TrafficRouter

from .analysis_step import (
    AnalysisResult,
    JudgeReport,
    analyse,
    close_feedback_windows,
    judge_pending,
)

log = logging.getLogger(__name__)

SYNCED = "Synced"


def utcnow() -> datetime:
    return datetime.now(UTC)


JudgeFor = Callable[[CanaryRule], tuple[JudgePort | None, str | None]]
"""The judge for a rule and, when it cannot judge, why (its samples then wait)."""
Claims = Callable[[str, str], list[engine.Claim]]
"""The rules of a namespace that name a target Deployment (from the manager's watch)."""


class NotLeader(Exception):
    """This replica lost the lease: stop before writing anything."""


class OperationFailed(KubeError):
    """An operation failed; the rule says why (condition and Event). ``cause`` is the
    API's error."""

    def __init__(self, what: str, cause: KubeError) -> None:
        super().__init__(f"{what}: {cause}", reason=cause.reason, status=cause.status,
                         retry_after=cause.retry_after)
        self.cause = cause


@dataclass
class Deps:
    """What a reconcile needs from the outside world (each a port; see controller.ports)."""

    cluster: Cluster
    router: TrafficRouter
    samples: SampleLog
    is_leader: Callable[[], bool] = lambda: True
    clock: Callable[[], datetime] = utcnow
    judge_for: JudgeFor = lambda rule: (None, None)
    counts_for: Callable[[CanaryRule], CountsProvider | None] = lambda rule: None
    claims: Claims = lambda namespace, target: []
    on_observed: Callable[[CanaryRule, engine.Observed], None] = lambda rule, observed: None
    """Told what each reconcile observed (the target's pod template included): the
    controller watches only its own Deployments, so whoever needs the targets (e.g. who may
    report for a rule) learns them here, at every reconcile."""
    locks: dict[str, threading.Lock] = field(default_factory=dict)
    locks_guard: threading.Lock = field(default_factory=threading.Lock)

    def lock(self, key: str) -> threading.Lock:
        with self.locks_guard:
            return self.locks.setdefault(key, threading.Lock())


@dataclass
class ReconcileResult:
    """What one reconcile did (for logs, the manager and tests)."""

    phase: Phase | None = None
    wrote_status: bool = False
    operations: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    judged: JudgeReport | None = None
    analysis: AnalysisResult | None = None
    waiting: bool = False
    """The rollout waits on pods: reconcile again soon."""


class _Stale(Exception):
    """The status write met a newer resourceVersion: re-read and decide again."""


def reconcile(
    deps: Deps, namespace: str, name: str, *, analyze: bool = False
) -> ReconcileResult:
    """Reconcile one rule; ``analyze`` on the rule's interval tick. The judge runs first,
    once; the read-decide-write after it starts over on a stale status."""
    start = time.perf_counter()
    with deps.lock(f"{namespace}/{name}"):
        try:
            judged = _judge_step(deps, namespace, name) if analyze else None
            for attempt in range(CONFLICT_ATTEMPTS):
                try:
                    result = _reconcile_once(deps, namespace, name, judged=judged)
                    result.judged = judged
                    return result
                except _Stale:
                    log.info("conflict on %s/%s, re-reading (attempt %d)", namespace, name,
                             attempt + 1)
                    time.sleep(CONFLICT.delay(attempt))
            raise Conflict(f"status of {namespace}/{name} kept changing; gave up after "
                           f"{CONFLICT_ATTEMPTS} attempts", reason="Conflict", status=409)
        finally:
            (TICK_SECONDS if analyze else RECONCILE_SECONDS).observe(time.perf_counter() - start)


def _parse(obj: dict[str, Any]) -> tuple[CanaryRule | None, CanaryRuleStatus, str | None]:
    """The rule (None when invalid), its status, and why it is invalid."""
    status = _status_of(obj)
    try:
        rule = CanaryRule.model_validate({k: v for k, v in obj.items() if k != "status"})
    except ValidationError as exc:
        return None, status, f"invalid CanaryRule: {format_field_errors(exc)}"
    return rule, status, None


def _judge_step(deps: Deps, namespace: str, name: str) -> JudgeReport | None:
    """Judge the rule's waiting samples, if its rollout is being analysed: before, and
    independent of, the status read-modify-write (a conflict never re-runs LLM calls)."""
    _check_leader(deps)
    try:
        obj = deps.cluster.get_rule(namespace, name)
    except NotFound:
        return None
    rule, status, _ = _parse(obj)
    window = None if rule is None else _analysis_window(rule, status)
    if rule is None or window is None:
        return None
    judge, unavailable = deps.judge_for(rule)
    close_feedback_windows(deps.samples, rule, deps.clock())
    upto = deps.samples.head(rule.key)
    _check_leader(deps)
    return judge_pending(deps.samples, rule, window, judge, upto=upto,
                         unavailable=unavailable)


def _analysis_window(rule: CanaryRule, status: CanaryRuleStatus) -> engine.Evidence | None:
    """The evidence window of the rollout in status, if it is this rule's canary and the
    window is open (one test for the judge step and the analysis, so both see the same)."""
    if status.canary_spec_hash != engine.spec_hash(rule.spec.canary):
        return None
    return engine.evidence(status)


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _dump_status(status: CanaryRuleStatus) -> dict[str, Any]:
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)


def _check_leader(deps: Deps) -> None:
    if not deps.is_leader():
        raise NotLeader


def _status_of(obj: dict[str, Any]) -> CanaryRuleStatus:
    try:
        return CanaryRuleStatus.model_validate(obj.get("status") or {})
    except ValidationError:
        meta = obj.get("metadata") or {}
        log.warning("status of %s/%s unreadable; starting from an empty status",
                    meta.get("namespace"), meta.get("name"))
        return CanaryRuleStatus()


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return dict(obj.get("metadata") or {})


def _reconcile_once(
    deps: Deps, namespace: str, name: str, *, judged: JudgeReport | None
) -> ReconcileResult:
    _check_leader(deps)
    try:
        obj = deps.cluster.get_rule(namespace, name)
    except NotFound:
        _forget_metrics(namespace, name)
        return ReconcileResult()
    meta = _meta(obj)
    deleting = bool(meta.get("deletionTimestamp"))
    if deleting and FINALIZER not in (meta.get("finalizers") or []):
        return ReconcileResult()  # nothing of ours to undo; another finalizer holds it
    now = deps.clock()
    rule, status, invalid = _parse(obj)
    if rule is None:
        plan = engine.invalid(status, now=now, reason=invalid or "invalid CanaryRule")
        if deleting:
            plan.finalizer = False  # no spec to restore anything from
        return _persist(deps, obj, plan, rule=None)
    try:
        observed = deps.router.observe(rule)
    except KubeError as exc:
        raise _report(deps, obj, OperationFailed("observing the Deployments", exc)) from exc
    deps.on_observed(rule, observed)
    analysis = None if deleting else _analyse(deps, rule, status, meta, judged, now)
    if analysis is not None:
        status = status.model_copy(update={"statistics": analysis.statistics})
    plan = engine.plan(
        rule.spec, status, generation=meta.get("generation"), now=now, observed=observed,
        manual=engine.manual_request(dict(meta.get("annotations") or {})),
        decision=analysis.decision if analysis else None,
        judge=analysis.judge_outage if analysis else None,
        deleting=deleting, claimed_by=_claimed_by(deps, rule, status),
    )
    if analysis is not None:
        report_evidence_health(deps.samples, rule, plan, judged, now)
    result = _persist(deps, obj, plan, rule=rule)
    result.analysis = analysis
    return result


def _claimed_by(deps: Deps, rule: CanaryRule, status: CanaryRuleStatus) -> str | None:
    """Another rule that manages this rule's target (None: this one does)."""
    claims = [c for c in deps.claims(rule.key.namespace, rule.spec.target_ref.name)
              if c.name != rule.metadata.name]
    if not claims:
        return None
    me = engine.Claim(rule.metadata.name, str(rule.metadata.model_extra.get(
        "creationTimestamp", "") if rule.metadata.model_extra else ""),
        active=status.phase.active)
    chosen = engine.owner([*claims, me])
    return None if chosen == rule.metadata.name else chosen


def report_evidence_health(
    samples: SampleLog, rule: CanaryRule, plan: engine.Plan, judged: JudgeReport | None,
    now: datetime,
) -> None:
    """A condition (and an Event when more appear) for stored samples the analysis had
    to set aside as unreadable. (The judge's availability is the engine's condition.)"""
    status = plan.status
    report = samples.quarantined(rule.key)
    if report.count > status.quarantined_samples and report.latest is not None:
        new = report.count - status.quarantined_samples
        message = (f"{new} stored sample(s) could not be read back and were set aside "
                   f"({report.count} in all; latest {report.latest.sample_id!r}: "
                   f"{report.latest.reason}); the analysis goes on without them")
        plan.events.append(engine.Event("Warning", "SamplesQuarantined", message))
        status.set_condition("SamplesReadable", False, "SamplesQuarantined", message, now)
    status.quarantined_samples = report.count


def _analyse(
    deps: Deps, rule: CanaryRule, status: CanaryRuleStatus, meta: dict[str, Any],
    judged: JudgeReport | None, now: datetime,
) -> AnalysisResult | None:
    """This interval's analysis, when the judge step ran for the rollout now in status
    and the evidence window is open."""
    window = _analysis_window(rule, status)
    if judged is None or window is None:
        return None
    share = None if status.effective_weight is None else status.effective_weight / 100
    result = analyse(
        deps.samples, rule, status, window, now=now, judged=judged,
        deadline_reached=engine.deadline_reached(rule.spec, status, now),
        canary_share=share, counts=deps.counts_for(rule),
        judge_kappa=_float((meta.get("annotations") or {}).get(KAPPA_ANNOTATION)),
    )
    result.judge_outage = judged.outage
    return result


def _persist(
    deps: Deps, obj: dict[str, Any], plan: engine.Plan, *, rule: CanaryRule | None
) -> ReconcileResult:
    """Write the status (if it changed), add the finalizer, act, emit events, release
    the finalizer."""
    meta = _meta(obj)
    namespace, name = meta.get("namespace", "default"), meta["name"]
    new = plan.status
    out = ReconcileResult(phase=new.phase, waiting=plan.waiting)
    old = _status_of(obj)
    if _dump_status(new) != _dump_status(old) or not obj.get("status"):
        _check_leader(deps)
        try:
            obj = deps.cluster.write_status(obj, _dump_status(new))
        except Conflict as exc:
            raise _Stale from exc
        out.wrote_status = True
    has_finalizer = FINALIZER in (_meta(obj).get("finalizers") or [])
    if plan.finalizer and not has_finalizer:
        _check_leader(deps)
        obj = deps.cluster.set_finalizer(obj, True) or obj
    if rule is not None:
        _apply_all(deps, obj, rule, plan, out)
    _emit(deps, obj, plan.events, out)
    if plan.finalizer is False and has_finalizer:
        _check_leader(deps)
        deps.cluster.set_finalizer(obj, False)
    _record_metrics(namespace, name, old, new)
    if any(c.type == SYNCED and c.status == "False" for c in new.conditions):
        _synced_again(deps, namespace, name)
    return out


def _apply_all(deps: Deps, obj: dict[str, Any], rule: CanaryRule, plan: engine.Plan,
               out: ReconcileResult) -> None:
    """The plan's operations in order; the first failure stops the rest and is reported."""
    for operation in plan.operations:
        _check_leader(deps)
        try:
            deps.router.apply(rule, operation)
        except KubeError as exc:
            _emit(deps, obj, plan.events, out)  # what was decided is still reported
            plan.events.clear()
            raise _report(deps, obj, OperationFailed(str(operation), exc)) from exc
        out.operations.append(str(operation))


def _emit(deps: Deps, obj: dict[str, Any], evs: list[engine.Event],
          out: ReconcileResult) -> None:
    meta = _meta(obj)
    for ev in evs:
        _check_leader(deps)
        try:
            deps.cluster.emit(obj, ev.type, ev.reason, ev.message)
        except KubeError as exc:  # an event is a report, not a step of the rollout
            log.warning("event %s for %s/%s not recorded: %s", ev.reason,
                        meta.get("namespace"), meta.get("name"), exc)
        out.events.append(ev.reason)


def _report(deps: Deps, obj: dict[str, Any], failure: OperationFailed) -> OperationFailed:
    """Make a failed operation visible: ``Synced=False`` naming the API's error and an
    ``OperationFailed`` Event (repeats are counted on one Event). Returns ``failure``."""
    meta = _meta(obj)
    namespace, name = meta.get("namespace", "default"), meta["name"]
    cause = failure.cause
    OPERATION_FAILURES.labels(namespace, name, cause.reason or type(cause).__name__).inc()
    log.warning("%s/%s: %s", namespace, name, failure)
    message = f"{failure}"
    with contextlib.suppress(KubeError, NotLeader):
        _check_leader(deps)
        fresh = deps.cluster.get_rule(namespace, name)
        status = _status_of(fresh)
        before = _dump_status(status)
        status.set_condition(SYNCED, False, cause.reason or "Error", message,
                             deps.clock())
        if _dump_status(status) != before:  # a write would wake the rule's watch again
            deps.cluster.write_status(fresh, _dump_status(status))
    with contextlib.suppress(KubeError, NotLeader):
        _check_leader(deps)
        deps.cluster.emit(obj, "Warning", "OperationFailed", message)
    return failure


def _synced_again(deps: Deps, namespace: str, name: str) -> None:
    """Every operation went through: ``Synced`` back to True (one write, on recovery)."""
    with contextlib.suppress(KubeError, NotLeader):
        _check_leader(deps)
        fresh = deps.cluster.get_rule(namespace, name)
        status = _status_of(fresh)
        status.set_condition(SYNCED, True, "Synced",
                             "every operation went through", deps.clock())
        deps.cluster.write_status(fresh, _dump_status(status))


def _record_metrics(namespace: str, name: str, old: CanaryRuleStatus, new: CanaryRuleStatus
                    ) -> None:
    for phase in Phase:
        RULE_PHASE.labels(namespace, name, phase.value).set(1.0 if new.phase is phase else 0.0)
    RULE_WEIGHT.labels(namespace, name).set(new.weight)
    if new.effective_weight is not None:
        RULE_EFFECTIVE_WEIGHT.labels(namespace, name).set(new.effective_weight)
    judge = next((c for c in new.conditions if c.type == "JudgeAvailable"), None)
    if judge is not None:
        JUDGE_AVAILABLE.labels(namespace, name).set(1.0 if judge.status == "True" else 0.0)
    last = old.history[-1].time if old.history else None
    fresh = [r for r in new.history if last is None or r.time > last]
    for rec in fresh:
        DECISIONS.labels(namespace, name, rec.action).inc()
        if rec.action == "rollback":
            ROLLBACKS.labels(namespace, name, "manual" if rec.manual else "automatic").inc()
    for g in new.guards:
        labels = (namespace, name, g.name, g.slice_label)
        for gauge, value in ((GUARD_DELTA, g.delta), (GUARD_LOWER, g.lower),
                             (GUARD_UPPER, g.upper)):
            if value is not None:
                gauge.labels(*labels).set(value)
        for outcome in Outcome:
            GUARD_OUTCOME.labels(*labels, outcome.value).set(1.0 if g.outcome is outcome else 0.0)


def _forget_metrics(namespace: str, name: str) -> None:
    for phase in Phase:
        with contextlib.suppress(KeyError):
            RULE_PHASE.remove(namespace, name, phase.value)
    for gauge in (RULE_WEIGHT, RULE_EFFECTIVE_WEIGHT, JUDGE_AVAILABLE):
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, name)
