"""Replay recorded samples through the decision engine, as the controller would.

The controller looks at its evidence once per analysis interval; a replay does the same
in timestamp order — every look adds the samples that arrived before it, asks the
analysis for a decision, and stops at the first promote or rollback. Because the tests
are anytime-valid, looking every interval costs no false rollbacks; the replay is
therefore a faithful rehearsal of a live rollout, with no cluster.

Time also closes feedback windows: at each look, every sample whose
``ts + analysis.feedbackWindow`` has passed is marked ``feedback_closed`` (a retraction
and re-add through :meth:`RuleStatistics.replace`, exactly as the controller does when
its store marks the sample), so its correction burden counts — as its
``correction_minutes``, or 0 without any. The correction minutes a file carries are
taken as the feedback that arrived within the window.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from controller.analysis import RuleStatistics, evaluate
from controller.models import (
    Action,
    CanaryRuleSpec,
    Cohort,
    Decision,
    Metric,
    Sample,
    parse_duration,
)


@dataclass
class ReplayResult:
    decision: Decision
    decided_at: datetime | None
    looks: int
    seen: dict[str, int]
    skipped: Counter[str] = field(default_factory=Counter)
    first_ts: datetime | None = None
    last_ts: datetime | None = None
    feedback_closed: int = 0

    def rate_per_minute(self) -> float | None:
        """Samples per cohort per minute over the replayed span (for "needs ~N more")."""
        if self.first_ts is None or self.decided_at is None:
            return None
        minutes = (self.decided_at - self.first_ts).total_seconds() / 60.0
        return sum(self.seen.values()) / 2.0 / minutes if minutes > 0 else None


def _uses_feedback(spec: CanaryRuleSpec) -> bool:
    return any(g.metric is Metric.CORRECTION_BURDEN for g in spec.analysis.guards)


def replay(
    spec: CanaryRuleSpec,
    rule_name: str,
    samples: list[Sample],
    *,
    interval_seconds: float | None = None,
    expected_share: float | None = None,
) -> ReplayResult:
    """Look every interval from the first sample on; stop at the first final decision.

    ``expected_share``: the canary's expected share of samples (canary pods / all pods),
    for the traffic-share check; without it only the mix is checked."""
    skipped: Counter[str] = Counter()
    mine: list[Sample] = []
    for s in samples:
        if s.rule == rule_name:
            mine.append(s)
        else:
            skipped["for another rule"] += 1
    mine.sort(key=lambda s: s.ts)
    stats = RuleStatistics(spec)
    seen = {c.value: 0 for c in Cohort}
    if not mine:
        decision = evaluate(spec, stats, at=None, deadline_reached=False,
                            expected_share=expected_share)
        return ReplayResult(decision, None, 0, seen, skipped)

    step = timedelta(seconds=interval_seconds or parse_duration(spec.analysis.interval))
    max_duration = timedelta(seconds=parse_duration(spec.analysis.max_duration))
    window = timedelta(seconds=parse_duration(spec.analysis.feedback_window))
    close = _uses_feedback(spec)
    start = mine[0].ts
    look = start + step
    i, closed, looks = 0, 0, 0
    while True:
        while i < len(mine) and mine[i].ts < look:
            stats.add(mine[i])
            seen[mine[i].cohort.value] += 1
            i += 1
        while close and closed < i and mine[closed].ts + window <= look:
            s = mine[closed]
            if not s.feedback_closed:
                stats.replace(s, s.model_copy(update={"feedback_closed": True}))
            closed += 1
        looks += 1
        decision = evaluate(spec, stats, at=look, deadline_reached=look - start >= max_duration,
                            expected_share=expected_share)
        if decision.action is not Action.CONTINUE or i >= len(mine):
            return ReplayResult(decision, look, looks, seen, skipped, start, mine[-1].ts,
                                closed)
        look += step
