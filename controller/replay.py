"""Replay recorded samples through the decision engine, as the controller would.

The controller looks at its evidence once per analysis interval; a replay does the same
in timestamp order — every look adds the samples that arrived before it, asks the
analysis for a decision, and stops at the first promote or rollback. Because the tests
are anytime-valid, looking every interval costs no false rollbacks; the replay is
therefore a faithful rehearsal of a live rollout, with no cluster.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from controller.analysis import RuleStatistics, evaluate
from controller.models import Action, CanaryRuleSpec, Cohort, Decision, Sample, parse_duration


@dataclass
class ReplayResult:
    decision: Decision
    decided_at: datetime | None
    looks: int
    seen: dict[str, int]
    skipped: Counter[str] = field(default_factory=Counter)
    first_ts: datetime | None = None
    last_ts: datetime | None = None


def replay(
    spec: CanaryRuleSpec,
    rule_name: str,
    samples: list[Sample],
    *,
    interval_seconds: float | None = None,
) -> ReplayResult:
    """Look every interval from the first sample on; stop at the first final decision."""
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
        decision = evaluate(spec, stats, at=None, deadline_reached=False)
        return ReplayResult(decision, None, 0, seen, skipped)

    step = timedelta(seconds=interval_seconds or parse_duration(spec.analysis.interval))
    max_duration = timedelta(seconds=parse_duration(spec.analysis.max_duration))
    start = mine[0].ts
    look = start + step
    i, looks = 0, 0
    while True:
        while i < len(mine) and mine[i].ts < look:
            stats.add(mine[i])
            seen[mine[i].cohort.value] += 1
            i += 1
        looks += 1
        decision = evaluate(spec, stats, at=look, deadline_reached=look - start >= max_duration)
        if decision.action is not Action.CONTINUE or i >= len(mine):
            return ReplayResult(decision, look, looks, seen, skipped, start, mine[-1].ts)
        look += step
