"""One analysis tick for one rule: new samples → judge → Prometheus → statistics → decision.

State lives in ``status.statistics`` (written with the rest of the status in one patch):
``{"stats": RuleStatistics.to_dict(), "cursor": <store sequence>}``. A tick reads the
store's change log after ``cursor``, so a controller restarted between ticks (or a
status write lost to a conflict) re-reads exactly the changes that were not yet
persisted: nothing is counted twice or skipped. Verdicts are written to the store
before the status, so a re-read never pays the judge twice.

A rule with ``judge.minKappa`` needs the judge's measured agreement with humans in the
annotation ``canary.llmops.dev/judge-kappa``; without it, or below the minimum, the
judged guards report ERROR with that reason: the rollout holds (then pauses at the
error limit) instead of trusting an uncalibrated judge.

Samples from before the rollout started (``ts < status.startedAt``) are ignored: they
belong to an earlier canary revision. Samples without a verdict beyond the judge's
``samplesPerInterval`` are recorded as unjudged (``not_sampled``) and still count for
fallback, policy, latency and cost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from controller.analysis import RuleStatistics, StatisticsMismatch, evaluate
from controller.conventions import KAPPA_ANNOTATION
from controller.models import (
    CanaryRule,
    CanaryRuleStatus,
    Cohort,
    Decision,
    Metric,
    RecordedVerdict,
    Sample,
    Unjudged,
    Verdict,
)
from controller.sources.prometheus import PrometheusSource, Status
from controller.sources.store import SampleStore

log = logging.getLogger(__name__)

MAX_CHANGES_PER_TICK = 200_000
READ_BATCH = 10_000

JUDGED_METRICS = frozenset({Metric.TASK_SUCCESS, Metric.TRUSTED_COMPLETION})

JudgeFn = Callable[[Sequence[Sample]], list[Verdict]]
"""Judges samples (all interleaved in one batch); one verdict per sample, same order."""


@dataclass
class TickResult:
    decision: Decision
    statistics: dict[str, Any]
    new_samples: int = 0
    judged: int = 0
    unjudged: int = 0
    notes: list[str] = field(default_factory=list)


def _with_verdict(sample: Sample, verdict: Verdict | None) -> Sample:
    """The sample as the analysis counts it: a stored RecordedVerdict wins over none."""
    if sample.judge is None and isinstance(verdict, RecordedVerdict):
        return sample.model_copy(update={"judge": verdict})
    return sample


def load_statistics(rule: CanaryRule, status: CanaryRuleStatus) -> tuple[RuleStatistics, int]:
    """Statistics and store cursor from the status; fresh when absent or from another
    configuration of the guards (a changed rule restarts the evidence)."""
    data = status.statistics or {}
    stats_data = data.get("stats")
    cursor = int(data.get("cursor", 0))
    if stats_data:
        try:
            return RuleStatistics.from_dict(rule.spec, stats_data), cursor
        except (StatisticsMismatch, KeyError, ValueError, TypeError) as exc:
            log.warning("statistics of %s reset: %s", rule.metadata.name, exc)
    return RuleStatistics(rule.spec), cursor


def run_tick(
    rule: CanaryRule,
    status: CanaryRuleStatus,
    *,
    now: datetime,
    store: SampleStore,
    deadline_reached: bool,
    canary_share: float | None,
    judge: JudgeFn | None = None,
    prometheus: PrometheusSource | None = None,
    judge_error: str | None = None,
    judge_kappa: float | None = None,
) -> TickResult:
    """Consume the rule's new samples and decide. Pure apart from the store and the
    two clients passed in; never raises for a failed source (it becomes ERROR)."""
    name = rule.metadata.name
    spec = rule.spec
    stats, cursor = load_statistics(rule, status)
    started = status.started_at
    errors: dict[str, str] = {}
    result_notes: list[str] = []

    changes = []
    read = 0
    while read < MAX_CHANGES_PER_TICK:
        batch = store.changes(name, after=cursor, limit=READ_BATCH)
        changes.extend(batch.changes)
        read += len(batch.changes)
        cursor = batch.cursor
        if not batch.more:
            break
    changes = [c for c in changes if started is None or c.current.ts >= started]

    # judge what is new and has no verdict, up to the per-interval sample size
    todo = [c for c in changes if c.is_new and c.current.judge is None and c.verdict is None]
    verdicts: dict[str, Verdict] = {}
    judged = unjudged = 0
    if todo:
        limit = spec.judge.samples_per_interval if spec.judge else 0
        chosen = _balanced(todo, limit) if judge is not None and judge_error is None else []
        chosen_ids = {c.sample_id for c in chosen}
        if chosen and judge is not None:
            try:
                got = judge([c.current for c in chosen])
            except Exception as exc:  # a judge bug must not stop the rollout's other guards
                log.exception("judge failed for rule %s", name)
                got = [Unjudged(reason="error", detail=type(exc).__name__) for _ in chosen]
            for c, v in zip(chosen, got, strict=True):
                verdicts[c.sample_id] = v
        reason = judge_error or ("not_sampled" if spec.judge else "no_judge")
        for c in todo:
            if c.sample_id not in chosen_ids:
                verdicts[c.sample_id] = Unjudged(reason=reason)
        store.set_verdicts(verdicts.items())
        judged = sum(isinstance(v, RecordedVerdict) for v in verdicts.values())
        unjudged = len(verdicts) - judged

    for c in changes:
        current = _with_verdict(c.current, verdicts.get(c.sample_id, c.verdict))
        if c.previous is None:
            stats.add(current)
        else:
            stats.replace(_with_verdict(c.previous, c.verdict_before), current)

    untrusted = _judge_untrusted(rule, judge_kappa)
    if untrusted:
        for g in spec.analysis.guards:
            if g.metric in JUDGED_METRICS:
                errors[g.name] = untrusted

    if prometheus is not None:
        _prometheus_counts(rule, status, stats, prometheus, now, canary_share, errors,
                           result_notes)
    elif any(g.metric is Metric.PROMETHEUS for g in spec.analysis.guards):
        for g in spec.analysis.guards:
            if g.metric is Metric.PROMETHEUS:
                errors[g.name] = "no metrics.prometheusUrl configured"

    decision = evaluate(spec, stats, at=now, deadline_reached=deadline_reached, errors=errors)
    return TickResult(
        decision=decision,
        statistics={"stats": stats.to_dict(), "cursor": cursor},
        new_samples=sum(c.is_new for c in changes),
        judged=judged,
        unjudged=unjudged,
        notes=result_notes,
    )


def _judge_untrusted(rule: CanaryRule, kappa: float | None) -> str | None:
    """Why the judge's verdicts may not decide anything, or None (DESIGN §6: a judge that
    disagrees with humans must not promote or roll back on its own say)."""
    judge = rule.spec.judge
    if judge is None or judge.min_kappa is None:
        return None
    if kappa is None:
        return (f"judge not calibrated: minKappa {judge.min_kappa} needs the annotation "
                f"{KAPPA_ANNOTATION} (run canaryctl judge calibrate)")
    if kappa < judge.min_kappa:
        return f"judge not trusted: kappa {kappa:.2f} < minKappa {judge.min_kappa}"
    return None


def _balanced(todo: list[Any], limit: int) -> list[Any]:
    """Up to ``limit`` samples, alternating cohorts so both are judged alike."""
    by_cohort = {c: [x for x in todo if x.current.cohort is c] for c in Cohort}
    out: list[Any] = []
    i = 0
    while len(out) < limit and any(i < len(v) for v in by_cohort.values()):
        for items in by_cohort.values():
            if i < len(items) and len(out) < limit:
                out.append(items[i])
        i += 1
    return out


def _prometheus_counts(
    rule: CanaryRule,
    status: CanaryRuleStatus,
    stats: RuleStatistics,
    prometheus: PrometheusSource,
    now: datetime,
    canary_share: float | None,
    errors: dict[str, str],
    notes: list[str],
) -> None:
    """Counts since the current step began (the share is constant within a step)."""
    queries = {q.name: q for q in rule.spec.metrics.queries}
    window = max(1.0, (now - (status.step_started_at or now)).total_seconds())
    for g in rule.spec.analysis.guards:
        if g.metric is not Metric.PROMETHEUS:
            continue
        stats.clear_counts(g.name)
        query = queries.get(g.query or "")
        if query is None:
            errors[g.name] = f"no metrics.queries entry named {g.query!r}"
            continue
        got = prometheus.counts(query, rule=rule.metadata.name,
                                namespace=rule.metadata.namespace or "default",
                                interval=window, at=now)
        if got.status is Status.ERROR:
            errors[g.name] = f"prometheus {got.error}"
            continue
        canary, base = got.get(Cohort.CANARY), got.get(Cohort.BASELINE)
        if canary is None or base is None or not (canary.has_data and base.has_data):
            notes.append(f"{g.name}: no data from Prometheus")
            continue
        assert canary.events is not None and base.events is not None
        if canary.total is None and (canary_share is None or not 0 < canary_share < 1):
            notes.append(f"{g.name}: no canary traffic share yet")
            continue
        stats.set_counts(g.name, canary_events=canary.events, baseline_events=base.events,
                         share=canary_share, canary_total=canary.total,
                         baseline_total=base.total)
