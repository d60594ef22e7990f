"""One rule's analysis at one interval, as four short steps: judge, collect, fold, evaluate.

The path of a sample: ``POST /v1/samples`` stores it in the sample log (durably, with an
insert change) → at the rule's next interval :func:`judge_pending` scores it (or records
why not) and writes the verdict back to the log → :func:`collect` reads the log's changes
after the cursor kept in the rule's status → :func:`fold` adds each change to the
sufficient statistics (or swaps an old contribution for a new one) → :func:`evaluate`
runs the guards → the engine plans and the status is written with the new statistics and
cursor, in one patch.

Why in this order:

- **Judging happens before the status read-modify-write**, and writes its verdicts to the
  log. A status conflict (someone else changed the rule) re-runs collect/fold/evaluate
  from the re-read status, never the LLM calls: the verdicts are already stored.
- **The analysis reads the log only up to where the judge looked** (``JudgeReport.upto``):
  a sample that arrived after the judge step waits for the next interval, so it is judged
  before it is counted instead of being counted without its verdict.
- **The cursor lives in the status**, written in the same patch as the statistics: a
  controller restarted between two intervals (or a lost status write) re-reads exactly
  the changes that were not yet persisted. Nothing is counted twice or skipped.
- **Which samples are judged** is a random draw per interval, half from each cohort,
  optionally oversampling strata (``judge.oversample``); each verdict carries the weight
  (1/probability of being drawn) that keeps the estimates unbiased
  (:mod:`controller.judge.sampling`).
- **A fresh rollout** has empty statistics and no cursor: :func:`collect` starts at the log
  position of the rollout's start (samples stored before it belong to another revision).
- **Evidence belongs to a revision and a baseline** (:mod:`controller.engine.evidence`):
  :func:`fold` counts only what the rollout's evidence window admits (the current canary
  revision; unrevisioned canary samples from its availability plus ``settle``; baseline
  samples from the baseline's last change; during a bake, cohorts by revision), and the
  judge is not paid for samples that will never count.

A rule with ``judge.minKappa`` needs the judge's measured agreement with humans in the
annotation ``canary.llmops.dev/judge-kappa``; without it, or below the minimum, the judged
guards report ERROR with that reason: the rollout holds (then pauses at the error limit)
instead of trusting an uncalibrated judge.

A judge outage is an error, not silence: when the judge failed (unreachable, timing out,
rate limited, out of budget) for at least half of the samples it tried this interval, the
judged guards report ERROR with the cause and the count, which counts toward the rule's
error limit. Transient failures are retried in later intervals (up to
``MAX_JUDGE_ATTEMPTS``); a sample still unjudged after that, or refused for good
(malformed answers, not sampled), is *unjudged*: never a success and never a zero.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from controller.analysis import RuleStatistics, StatisticsMismatch, evaluate
from controller.conventions import KAPPA_ANNOTATION
from controller.engine import Evidence
from controller.judge import sampling
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
    parse_duration,
)
from controller.models.rule import VERDICT_METRICS
from controller.models.verdict import TRANSIENT_REASONS, UnjudgedReason
from controller.ports import CountsProvider, EvidenceLog, FeedbackWindows, JudgePort, VerdictLog
from controller.sources.counts import Status
from controller.sources.records import AwaitingVerdict, Quarantined, SampleChange

log = logging.getLogger(__name__)

MAX_CHANGES_PER_LOOK = 200_000
"""Changes folded in one look at most; a backlog beyond it is read over several looks."""
READ_BATCH = 10_000
MAX_JUDGE_ATTEMPTS = 3
"""Intervals in which a transiently failed sample is offered to the judge again."""
OUTAGE_SHARE = 0.5
"""Share of an interval's judge attempts that must fail for the judge to count as down."""
JUDGED_METRICS = frozenset({Metric.TASK_SUCCESS, Metric.TRUSTED_COMPLETION})
"""Metrics that always rest on the judge's verdicts (others may, see :func:`judged`)."""
OUTAGE_REASONS = frozenset({"budget"})
"""Permanent unjudged reasons that still mean "the judge did not do its job this interval"."""


# --------------------------------------------------------------------------- judging


@dataclass
class JudgeReport:
    """What the judge step did for one rule in one interval."""

    upto: int
    """Log position after the judge's own writes; the analysis reads no further this
    interval, so what it counts was offered to the judge first."""
    judged: int = 0
    unjudged: Counter[str] = field(default_factory=Counter)
    """Samples written off this interval, by reason (never counted as successes)."""
    retrying: Counter[str] = field(default_factory=Counter)
    """Samples that failed transiently and will be offered again, by reason."""
    unavailable: str | None = None
    """Why the judge could not run at all (no key, endpoint not allowed, ...)."""

    @property
    def outage(self) -> str | None:
        """"judge unavailable: ..." when the judge failed this interval, else None."""
        if self.unavailable is not None:
            return f"judge unavailable: {self.unavailable}"
        failed = self.retrying + Counter(
            {r: n for r, n in self.unjudged.items()
             if r in OUTAGE_REASONS or r in TRANSIENT_REASONS}
        )
        tried = self.judged + sum(failed.values())
        if not failed or sum(failed.values()) < OUTAGE_SHARE * tried:
            return None
        causes = ", ".join(f"{r} x{n}" for r, n in failed.most_common())
        return f"judge unavailable: {sum(failed.values())} of {tried} samples unjudged ({causes})"


def close_feedback_windows(samples: FeedbackWindows, rule: CanaryRule, now: datetime) -> int:
    """Resolve the rule's outputs whose feedback window has closed (0 minutes unless
    feedback came), before the log position the analysis reads up to is taken. Only for
    rules that measure correction burden and do not receive feedback for every output."""
    a = rule.spec.analysis
    if a.feedback_complete or not any(
            g.metric is Metric.CORRECTION_BURDEN for g in a.guards):
        return 0
    return samples.close_feedback_windows(
        rule.key, now - timedelta(seconds=parse_duration(a.feedback_window)))


def evidence_since(evidence: Evidence) -> datetime:
    """Samples stamped before this belong to an earlier rollout and never count."""
    return evidence.since


def judge_pending(
    samples: VerdictLog,
    rule: CanaryRule,
    evidence: Evidence,
    judge: JudgePort | None,
    *,
    upto: int,
    unavailable: str | None = None,
) -> JudgeReport:
    """Judge the rule's samples stored up to log position ``upto`` that have no verdict
    yet and count as evidence (up to ``samplesPerInterval``, both cohorts alike) and
    store the verdicts; samples that will never count (another revision, before the
    canary settled) are written off as ``not_counted`` without a call. Runs before, and
    independent of, the status read-modify-write. A sample stored while the judge runs is
    counted at once for what needs no verdict; its verdict is a later change that swaps
    its contribution."""
    key = rule.key
    spec = rule.spec.judge
    if spec is None:
        return JudgeReport(upto)
    waiting = samples.awaiting_verdict(key, upto=upto, since=evidence_since(evidence))
    awaiting: list[AwaitingVerdict] = []
    ignored: list[str] = []
    for a in waiting:
        if evidence.admit(a.sample) is None:
            ignored.append(a.sample.id)
        else:
            awaiting.append(a)
    if ignored:
        samples.set_verdicts(key, [(i, Unjudged(reason=UnjudgedReason.NOT_COUNTED))
                                   for i in ignored])
    if not awaiting:
        return JudgeReport(samples.head(key) if ignored else upto,
                           unavailable=unavailable if judge is None else None)
    if judge is None:
        return _judge_unavailable(samples, rule, awaiting, upto, unavailable or "no judge")
    chosen = sampling.select(awaiting, spec.samples_per_interval,
                             sampling.interval_seed(str(key), awaiting[0].seq),
                             sample_of=lambda a: a.sample, oversample=spec.oversample)
    chosen_ids = {c.item.sample.id for c in chosen}
    verdicts = _judge(judge, rule, [without_client_verdict(c.item.sample) for c in chosen])
    report = JudgeReport(upto)
    written: list[tuple[str, Verdict]] = []
    retry: list[str] = []
    for pick, verdict in zip(chosen, verdicts, strict=True):
        item = pick.item
        if isinstance(verdict, RecordedVerdict):
            report.judged += 1
            written.append((item.sample.id, verdict.model_copy(
                update={"sampling_weight": pick.weight})))
        elif verdict.transient and item.attempts + 1 < MAX_JUDGE_ATTEMPTS:
            report.retrying[verdict.reason] += 1
            retry.append(item.sample.id)
        else:
            report.unjudged[verdict.reason] += 1
            written.append((item.sample.id, verdict))
    for item in awaiting:
        if item.sample.id not in chosen_ids and item.attempts == 0:
            report.unjudged["not_sampled"] += 1
            written.append((item.sample.id, Unjudged(reason="not_sampled")))
    samples.set_verdicts(key, written, retry=retry)
    report.upto = samples.head(key)
    return report


def _judge(judge: JudgePort, rule: CanaryRule, batch: Sequence[Sample]) -> list[Verdict]:
    """The judge's verdicts; a judge bug becomes ``Unjudged("error")`` for the batch, so it
    cannot stop the rollout's other guards."""
    try:
        verdicts = judge.judge(batch)
    except Exception as exc:
        log.exception("judge failed for rule %s", rule.key)
        return [Unjudged(reason="error", detail=type(exc).__name__) for _ in batch]
    if len(verdicts) != len(batch):
        log.error("judge returned %d verdicts for %d samples", len(verdicts), len(batch))
        return [Unjudged(reason="error", detail="verdict count mismatch") for _ in batch]
    return verdicts


def _judge_unavailable(
    samples: VerdictLog, rule: CanaryRule, awaiting: list[AwaitingVerdict], upto: int,
    reason: str,
) -> JudgeReport:
    """No judge this interval (no key, no allowed endpoint): every waiting sample gets one
    more attempt; after ``MAX_JUDGE_ATTEMPTS`` intervals it is written off."""
    short = reason.split(":", 1)[0]
    expired = [(a.sample.id, Unjudged(reason=short, detail=reason[:200]))
               for a in awaiting if a.attempts + 1 >= MAX_JUDGE_ATTEMPTS]
    samples.set_verdicts(
        rule.key, expired,
        retry=[a.sample.id for a in awaiting if a.attempts + 1 < MAX_JUDGE_ATTEMPTS])
    written_off = Counter({short: len(expired)}) if expired else Counter()
    return JudgeReport(samples.head(rule.key), unjudged=written_off, unavailable=reason)


def without_client_verdict(sample: Sample) -> Sample:
    """What the controller's judge sees: a verdict the client attached never spares a
    sample from being judged (nor is it sent along)."""
    return sample if sample.judge is None else sample.model_copy(update={"judge": None})


# --------------------------------------------------------------------------- analysis


@dataclass
class AnalysisResult:
    decision: Decision
    statistics: dict[str, Any]
    new_samples: int = 0
    notes: list[str] = field(default_factory=list)
    judge_outage: str | None = None
    """The judge step's outage this interval ("judge unavailable: ..."), if any."""
    quarantined: tuple[Quarantined, ...] = ()
    """Stored samples this look found unreadable: moved aside, not counted."""


def load_statistics(rule: CanaryRule, status: CanaryRuleStatus) -> tuple[RuleStatistics, bool]:
    """Statistics from the status, and whether they were there; fresh when absent or
    computed under another configuration of the guards (the evidence restarts)."""
    stats_data = (status.statistics or {}).get("stats")
    if stats_data:
        try:
            return RuleStatistics.from_dict(rule.spec, stats_data), True
        except (StatisticsMismatch, KeyError, ValueError, TypeError) as exc:
            log.warning("statistics of %s restart: %s", rule.key, exc)
    return RuleStatistics(rule.spec), False


def start_cursor(
    samples: EvidenceLog, rule: CanaryRule, status: CanaryRuleStatus, evidence: Evidence, *,
    resumed: bool,
) -> int:
    """Where reading resumes: the cursor saved with the statistics, if it is a position
    in this very log; else the log position of the rollout's start (a new rollout,
    statistics that had to restart - every sample of the rollout is read again, nothing
    older - or another replica's log after a failover or an upgrade: what that one
    counted stays counted, and this log's samples of the rollout are read from its
    start)."""
    saved = status.statistics or {}
    cursor = saved.get("cursor")
    same_log = saved.get("log") in (None, samples.log_id())
    if resumed and cursor is not None and same_log:
        return int(cursor)
    return samples.position_at(rule.key, evidence_since(evidence))


@dataclass
class Collected:
    changes: list[SampleChange]
    cursor: int
    quarantined: tuple[Quarantined, ...] = ()


def collect(samples: EvidenceLog, rule: CanaryRule, cursor: int, upto: int) -> Collected:
    """The rule's changes after ``cursor`` up to ``upto`` (bounded per look). Samples the
    log could not read back are quarantined by it and skipped: one poisoned row never
    halts the analysis of the rest."""
    out = Collected([], cursor)
    while len(out.changes) < MAX_CHANGES_PER_LOOK:
        batch = samples.changes(rule.key, after=out.cursor, upto=upto, limit=READ_BATCH)
        out.changes.extend(batch.changes)
        out.quarantined += batch.quarantined
        out.cursor = batch.cursor
        if not batch.more:
            break
    return out


def with_verdict(sample: Sample, verdict: Verdict | None, *, client: bool = False) -> Sample:
    """The sample as the analysis counts it. By default the verdict is the controller's
    judge's (or none): a ``judge`` object the client sent is dropped, so a client can
    neither promote a regression nor force a rollback with forged scores. With
    ``verdicts: client`` the sample's own verdict counts as sent."""
    if client:
        return sample
    judged = verdict if isinstance(verdict, RecordedVerdict) else None
    if judged is None and sample.judge is None:
        return sample
    return sample.model_copy(update={"judge": judged})


def fold(
    stats: RuleStatistics, changes: Sequence[SampleChange], evidence: Evidence,
    *, client_verdicts: bool = False,
) -> int:
    """Add each change the evidence window admits to the statistics (a sample of another
    revision, or from before its cohort settled, is skipped for good: the window is fixed
    for the revision, so a later change of the same sample is skipped alike). Returns how
    many samples were new."""
    new = 0
    for c in changes:
        current = evidence.admit(c.current)
        if current is None:
            continue
        current = with_verdict(current, c.verdict, client=client_verdicts)
        if c.previous is None:
            stats.add(current)
            new += 1
        else:
            previous = evidence.admit(c.previous)
            if previous is None:  # it did not count before (cannot happen for one sample)
                stats.add(current)
                new += 1
            else:
                stats.replace(
                    with_verdict(previous, c.verdict_before, client=client_verdicts), current)
    return new


def analyse(
    samples: EvidenceLog,
    rule: CanaryRule,
    status: CanaryRuleStatus,
    evidence: Evidence,
    *,
    now: datetime,
    judged: JudgeReport,
    deadline_reached: bool,
    canary_share: float | None,
    counts: CountsProvider | None = None,
    judge_kappa: float | None = None,
) -> AnalysisResult:
    """Collect → fold → count events → evaluate, from the status just read. Never raises
    for a failed source: it becomes the guard's ERROR outcome."""
    stats, resumed = load_statistics(rule, status)
    # the step's own window starts when its pods were all available (engine.evidence);
    # the rollout's start anchors the change detector's time slots
    stats.enter_step(evidence.step, started_at=evidence.step_since,
                     rollout_started_at=evidence.since)
    cursor = start_cursor(samples, rule, status, evidence, resumed=resumed)
    got = collect(samples, rule, cursor, judged.upto)
    new = fold(stats, got.changes, evidence, client_verdicts=rule.spec.client_verdicts)
    errors = judged_guard_errors(rule, judged, judge_kappa)
    notes: list[str] = []
    if any(g.metric is Metric.PROMETHEUS for g in rule.spec.analysis.guards):
        count_events(rule, status, stats, counts, now, canary_share, errors, notes)
    decision = evaluate(rule.spec, stats, at=now, deadline_reached=deadline_reached,
                        errors=errors, expected_share=canary_share)
    label_verdict_source(rule, decision)
    return AnalysisResult(decision, {"stats": stats.to_dict(), "cursor": got.cursor,
                                     "log": samples.log_id()}, new, notes,
                          quarantined=got.quarantined)


def label_verdict_source(rule: CanaryRule, decision: Decision) -> None:
    """Say, per guard that rests on verdicts, whose verdicts they were."""
    source = rule.spec.verdicts
    for g in decision.guards:
        if g.metric in VERDICT_METRICS:
            g.verdicts = source


NO_VERDICT_SOURCE = ("no verdicts: the rule has no spec.judge; add one, or set "
                     "spec.verdicts: client to count the verdicts the application sends")


def judged_guard_errors(
    rule: CanaryRule, judged: JudgeReport, kappa: float | None
) -> dict[str, str]:
    """ERROR for the guards that rest on the judge, when the judge cannot be trusted, was
    down this interval, or does not exist (and client verdicts are not accepted)."""
    if rule.spec.client_verdicts:
        return {}
    why = _judge_untrusted(rule, kappa) or judged.outage
    if rule.spec.judge is None:
        why = NO_VERDICT_SOURCE
    if why is None:
        return {}
    return {g.name: why for g in rule.spec.analysis.guards if rests_on_judge(rule, g.metric)}


def rests_on_judge(rule: CanaryRule, metric: Metric) -> bool:
    """Whether the judge decides this metric for the rule: task success and trusted
    completion always; decision metrics when the judge extracts the decision labels;
    policy failures when the judge checks a policy."""
    judge = rule.spec.judge
    if metric in JUDGED_METRICS:
        return True
    if judge is None:
        return False
    if metric.from_decisions:
        return bool(judge.decision_labels)
    return metric is Metric.POLICY_FAILURE_RATE and judge.policy is not None


def _judge_untrusted(rule: CanaryRule, kappa: float | None) -> str | None:
    """Why the judge's verdicts may not decide anything, or None: a judge that disagrees
    with humans must not promote or roll back on its own say."""
    judge = rule.spec.judge
    if judge is None or judge.min_kappa is None:
        return None
    if kappa is None:
        return (f"judge not calibrated: minKappa {judge.min_kappa} needs the annotation "
                f"{KAPPA_ANNOTATION} (run canaryctl judge calibrate)")
    if kappa < judge.min_kappa:
        return f"judge not trusted: kappa {kappa:.2f} < minKappa {judge.min_kappa}"
    return None


def count_events(
    rule: CanaryRule,
    status: CanaryRuleStatus,
    stats: RuleStatistics,
    counts: CountsProvider | None,
    now: datetime,
    canary_share: float | None,
    errors: dict[str, str],
    notes: list[str],
) -> None:
    """Prometheus counts since the current step's pods were all available (the share is
    constant from then on), for every ``prometheus`` guard."""
    queries = {q.name: q for q in rule.spec.metrics.queries}
    began = status.step_ready_at or status.step_started_at or now
    window = max(1.0, (now - began).total_seconds())
    for g in rule.spec.analysis.guards:
        if g.metric is not Metric.PROMETHEUS:
            continue
        stats.clear_counts(g.name)
        query = queries.get(g.query or "")
        if counts is None or query is None:
            errors[g.name] = ("no Prometheus URL: set metrics.prometheusUrl or the "
                              "controller's --prometheus-url") if counts is None else \
                f"no metrics.queries entry named {g.query!r}"
            continue
        got = counts.counts(query, rule=rule.metadata.name, namespace=rule.key.namespace,
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
