"""Reconcile one CanaryRule: read, (analyse), plan, persist status, act, report.

Level-triggered: the outcome depends only on the resource and the cluster as they are
now, never on which event woke us. The order is what makes restarts safe:

1. read the rule and observe its Deployments;
2. on an analysis tick, judge the rule's waiting samples first (once: a conflict below
   never re-runs LLM calls), then fold the log's new changes into the statistics and
   decide (:mod:`.analysis_step`);
3. ``engine.plan`` → new status + idempotent operations + events;
4. write the status through the status subresource, guarded by the resourceVersion
   read in step 1 (a 409 means someone else changed the rule: start over);
5. only then apply the operations and emit the events.

A controller killed between 4 and 5 re-derives the same operations from the persisted
status on its next reconcile; the operations are "make it so", so nothing happens twice.
Every write is skipped unless this replica holds the leader lease at that moment.
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
from controller.actuator import deployments, events, rules
from controller.actuator.client import Kube
from controller.actuator.errors import Conflict, KubeError, NotFound
from controller.conventions import KAPPA_ANNOTATION
from controller.models import CanaryRule, CanaryRuleStatus, Outcome, Phase
from controller.models.errors import format_field_errors
from controller.observability import (
    DECISIONS,
    GUARD_DELTA,
    GUARD_LOWER,
    GUARD_OUTCOME,
    GUARD_UPPER,
    RECONCILE_SECONDS,
    ROLLBACKS,
    RULE_PHASE,
    RULE_WEIGHT,
    TICK_SECONDS,
)
from controller.ports import CountsProvider, JudgePort, SampleLog

from .analysis_step import (
    AnalysisResult,
    JudgeReport,
    analyse,
    close_feedback_windows,
    judge_pending,
)

log = logging.getLogger(__name__)

CONFLICT_RETRIES = 4


def utcnow() -> datetime:
    return datetime.now(UTC)


JudgeFor = Callable[[CanaryRule], tuple[JudgePort | None, str | None]]
"""The judge for a rule and, when it cannot judge, why (its samples then wait)."""


class NotLeader(Exception):
    """This replica lost the lease: stop before writing anything."""


@dataclass
class Deps:
    """What a reconcile needs from the outside world (each a port; see controller.ports)."""

    kube: Kube
    samples: SampleLog
    is_leader: Callable[[], bool] = lambda: True
    clock: Callable[[], datetime] = utcnow
    judge_for: JudgeFor = lambda rule: (None, None)
    counts_for: Callable[[CanaryRule], CountsProvider | None] = lambda rule: None
    locks: dict[str, threading.Lock] = field(default_factory=dict)
    locks_guard: threading.Lock = field(default_factory=threading.Lock)

    def lock(self, key: str) -> threading.Lock:
        with self.locks_guard:
            return self.locks.setdefault(key, threading.Lock())


@dataclass
class ReconcileResult:
    """What one reconcile did (for logs and tests)."""

    phase: Phase | None = None
    wrote_status: bool = False
    operations: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    judged: JudgeReport | None = None
    analysis: AnalysisResult | None = None


def reconcile(
    deps: Deps, namespace: str, name: str, *, analyze: bool = False
) -> ReconcileResult:
    """Reconcile one rule; ``analyze`` on the rule's interval tick. The judge runs first,
    once; the status read-modify-write after it is retried on conflicts."""
    start = time.perf_counter()
    with deps.lock(f"{namespace}/{name}"):
        try:
            judged = _judge_step(deps, namespace, name) if analyze else None
            for attempt in range(CONFLICT_RETRIES):
                try:
                    result = _reconcile_once(deps, namespace, name, judged=judged)
                    result.judged = judged
                    return result
                except Conflict:
                    log.info("conflict on %s/%s, re-reading (attempt %d)", namespace, name,
                             attempt + 1)
            log.warning("giving up on %s/%s after %d conflicts", namespace, name,
                        CONFLICT_RETRIES)
            return ReconcileResult(judged=judged)
        finally:
            (TICK_SECONDS if analyze else RECONCILE_SECONDS).observe(time.perf_counter() - start)


def _judge_step(deps: Deps, namespace: str, name: str) -> JudgeReport | None:
    """Judge the rule's waiting samples, if its rollout is being analysed: before, and
    independent of, the status read-modify-write (a conflict never re-runs LLM calls)."""
    _check_leader(deps)
    try:
        obj = rules.get_rule(deps.kube, namespace, name)
        rule = CanaryRule.model_validate({k: v for k, v in obj.items() if k != "status"})
        status = CanaryRuleStatus.model_validate(obj.get("status") or {})
    except (NotFound, ValidationError):
        return None  # the reconcile below reports it
    if status.phase is not Phase.PROGRESSING or \
            status.canary_revision != engine.canary_revision(rule.spec):
        return None
    judge, unavailable = deps.judge_for(rule)
    close_feedback_windows(deps.samples, rule, deps.clock())
    upto = deps.samples.head(rule.key)
    _check_leader(deps)
    return judge_pending(deps.samples, rule, status, judge, upto=upto, unavailable=unavailable)


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


def _read(deps: Deps, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return rules.get_rule(deps.kube, namespace, name)
    except NotFound:
        _forget_metrics(namespace, name)
        return None


def _status_of(obj: dict[str, Any]) -> CanaryRuleStatus:
    try:
        return CanaryRuleStatus.model_validate(obj.get("status") or {})
    except ValidationError:
        meta = obj.get("metadata") or {}
        log.warning("status of %s/%s unreadable; starting from an empty status",
                    meta.get("namespace"), meta.get("name"))
        return CanaryRuleStatus()


def _reconcile_once(
    deps: Deps, namespace: str, name: str, *, judged: JudgeReport | None
) -> ReconcileResult:
    _check_leader(deps)
    obj = _read(deps, namespace, name)
    if obj is None:
        return ReconcileResult()
    now = deps.clock()
    meta = obj.get("metadata", {})
    status = _status_of(obj)
    try:
        rule = CanaryRule.model_validate({k: v for k, v in obj.items() if k != "status"})
    except ValidationError as exc:
        reason = f"invalid CanaryRule: {format_field_errors(exc)}"
        return _persist(deps, obj, engine.failed(status, now=now, reason=reason), rule=None)
    try:
        observed = deployments.observe(deps.kube, rule, status.total_replicas)
    except NotFound as exc:
        reason = f"target Deployment {rule.spec.target_ref.name!r} not found ({exc})"
        return _persist(deps, obj, engine.failed(status, now=now, reason=reason), rule=rule)

    analysis = _analyse(deps, rule, status, meta, observed, judged, now)
    if analysis is not None:
        status = status.model_copy(update={"statistics": analysis.statistics})
    plan = engine.plan(
        rule.spec, status, generation=meta.get("generation"), now=now, observed=observed,
        manual=engine.manual_request(dict(meta.get("annotations") or {})),
        decision=analysis.decision if analysis else None,
    )
    if analysis is not None:
        report_evidence_health(deps.samples, rule, plan, judged, now)
    result = _persist(deps, obj, plan, rule=rule)
    result.analysis = analysis
    return result


def report_evidence_health(
    samples: SampleLog, rule: CanaryRule, plan: engine.Plan, judged: JudgeReport | None,
    now: datetime,
) -> None:
    """Conditions (and an Event when they turn bad) for what the analysis had to work
    around: samples quarantined as unreadable, and a judge that cannot be used."""
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
    if rule.spec.judge is None:
        return
    why = judged.unavailable if judged is not None else None
    if why is None:
        status.set_condition("JudgeReady", True, "JudgeAvailable", "", now)
    elif status.set_condition("JudgeReady", False, "JudgeUnavailable", why, now):
        plan.events.append(engine.Event("Warning", "JudgeUnavailable", why))


def _analyse(
    deps: Deps, rule: CanaryRule, status: CanaryRuleStatus, meta: dict[str, Any],
    observed: engine.Observed, judged: JudgeReport | None, now: datetime,
) -> AnalysisResult | None:
    """This interval's analysis, when the judge step ran for the rollout now in status."""
    if judged is None or status.phase is not Phase.PROGRESSING \
            or status.canary_revision != engine.canary_revision(rule.spec):
        return None
    total = observed.target_replicas + observed.canary_replicas
    return analyse(
        deps.samples, rule, status, now=now, judged=judged,
        deadline_reached=engine.deadline_reached(rule.spec, status, now),
        canary_share=observed.canary_replicas / total if total else None,
        counts=deps.counts_for(rule),
        judge_kappa=_float((meta.get("annotations") or {}).get(KAPPA_ANNOTATION)),
    )


def _persist(
    deps: Deps, obj: dict[str, Any], plan: engine.Plan, *, rule: CanaryRule | None
) -> ReconcileResult:
    """Write the status (if it changed), then act, then emit events."""
    meta = obj.get("metadata", {})
    namespace, name = meta.get("namespace", "default"), meta["name"]
    new = plan.status
    out = ReconcileResult(phase=new.phase)
    try:
        old = CanaryRuleStatus.model_validate(obj.get("status") or {})
    except ValidationError:
        old = CanaryRuleStatus()
    if _dump_status(new) != _dump_status(old) or not obj.get("status"):
        _check_leader(deps)
        rules.patch_status(deps.kube, namespace, name, _dump_status(new),
                           meta.get("resourceVersion"))
        out.wrote_status = True
    if rule is not None:
        for operation in plan.operations:
            _check_leader(deps)
            _apply(deps, rule, new, operation)
            out.operations.append(operation.op.value)
    for ev in plan.events:
        _check_leader(deps)
        try:
            events.emit(deps.kube, obj, ev.type, ev.reason, ev.message)
        except KubeError as exc:  # an event is a report, not a step of the rollout
            log.warning("event %s for %s/%s not recorded: %s", ev.reason, namespace, name, exc)
        out.events.append(ev.reason)
    _record_metrics(namespace, name, old, new)
    return out


def _apply(deps: Deps, rule: CanaryRule, status: CanaryRuleStatus, operation: engine.Operation
           ) -> None:
    total = status.total_replicas or 1
    revision = status.canary_revision or engine.canary_revision(rule.spec)
    op = operation.op
    if op is engine.Op.ENSURE_CANARY:
        deployments.ensure_canary(deps.kube, rule, revision)
    elif op is engine.Op.SET_WEIGHT:
        deployments.set_weight(deps.kube, rule, operation.weight or 0, total)
    elif op is engine.Op.PROMOTE:
        deployments.promote(deps.kube, rule, revision, total)
    elif op is engine.Op.SCALE_DOWN_CANARY:
        deployments.scale_down_canary(deps.kube, rule, total)


def _record_metrics(namespace: str, name: str, old: CanaryRuleStatus, new: CanaryRuleStatus
                    ) -> None:
    for phase in Phase:
        RULE_PHASE.labels(namespace, name, phase.value).set(1.0 if new.phase is phase else 0.0)
    RULE_WEIGHT.labels(namespace, name).set(new.weight)
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
