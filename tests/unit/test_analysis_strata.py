"""Strata (one per step), the detector's buckets, and the stratified comparisons.

- Each sample's stratum is the step its timestamp falls in, also when it arrives after
  the next step began; a replay without steps is one stratum; statistics rebuilt
  in the middle of a rollout put earlier samples in one "pre" stratum.
- Delayed feedback swaps a contribution in its own stratum and bucket, exactly.
- Buckets: one per analysis interval of the current step, the oldest forgotten after
  MAX_STARTS; a new step starts afresh.
- Round trip and merge keep strata, buckets and the step history; statistics of the
  previous format restart (they raise StatisticsMismatch).
- Stratified comparisons: one stratum is the unstratified test; under drift the
  stratified estimate is the per-step difference, where pooling is confounded; the
  decision is the same whether or not the bounds are computed.
- Histogram.of bins many values exactly as one add() each.
"""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.analysis import RuleStatistics, StatisticsMismatch, evaluate
from controller.analysis.changes import MAX_STARTS
from controller.analysis.sequential import diff_means_normal, diff_proportions
from controller.analysis.stats import Histogram
from controller.analysis.steps import NO_STEP, PRE
from controller.analysis.strata import proportions_log_e, stratified_means
from controller.models import Action, CanaryRuleSpec, Cohort, Metric

from .test_analysis_support import TS, make_sample, make_spec

GUARDS = [{"name": "success", "metric": "taskSuccess", "tolerance": -0.05},
          {"name": "fallback", "metric": "fallbackRate", "tolerance": 0.05,
           "groupBy": ["queue"]},
          {"name": "burden", "metric": "correctionBurden", "tolerance": 1.0}]
MIN = timedelta(minutes=1)


def three_steps(**analysis: object) -> CanaryRuleSpec:
    spec = make_spec(GUARDS, minSamplesPerCohort=20, interval="1m", maxDuration="30m",
                     **analysis)
    return spec.model_copy(update={"steps": [s.model_copy(update={"weight": w})
                                             for w in (10, 30, 60) for s in spec.steps[:1]]})


def sample(i: int, cohort: Cohort, minute: float, **fields: object):  # type: ignore[no-untyped-def]
    fields.setdefault("correction_minutes", 1.0)
    fields.setdefault("feedback_closed", True)
    return make_sample(i, cohort, validate=False, ts=TS + minute * MIN, **fields)


def test_each_sample_goes_to_the_step_of_its_timestamp() -> None:
    spec = three_steps()
    stats = RuleStatistics(spec)
    stats.enter_step(0, TS, rollout_started_at=TS)
    stats.add(sample(1, Cohort.CANARY, 1))
    stats.enter_step(1, TS + 10 * MIN)
    stats.add(sample(2, Cohort.CANARY, 9))  # stamped in step 1, arrived in step 2
    stats.add(sample(3, Cohort.CANARY, 11))
    stats.add(sample(4, Cohort.BASELINE, 12, fallback=True))
    assert set(stats.strata) == {"0", "1"}
    assert stats.strata["0"]["taskSuccess"]["all"][Cohort.CANARY.value].n == 2
    assert stats.strata["1"]["taskSuccess"]["all"][Cohort.CANARY.value].n == 1
    assert stats.window_moments(Metric.FALLBACK_RATE, Cohort.BASELINE).mean == 1.0
    assert stats.moments(Metric.TASK_SUCCESS, "all", Cohort.CANARY).n == 3
    assert len(stats.strata_moments(Metric.TASK_SUCCESS, "all")) == 1  # step 1: no baseline
    stats.add(sample(5, Cohort.BASELINE, 2))
    assert len(stats.strata_moments(Metric.TASK_SUCCESS, "all")) == 2


def test_replays_have_one_stratum_and_rebuilt_statistics_a_pre_stratum() -> None:
    spec = three_steps()
    replay = RuleStatistics(spec)
    replay.add(sample(1, Cohort.CANARY, 1))
    assert set(replay.strata) == {NO_STEP}
    assert replay.step is None and not replay.buckets
    rebuilt = RuleStatistics(spec)
    rebuilt.enter_step(2, TS + 20 * MIN)  # only the current step is known
    rebuilt.add(sample(2, Cohort.CANARY, 5))
    rebuilt.add(sample(3, Cohort.CANARY, 21))
    assert set(rebuilt.strata) == {PRE, "2"}


def test_delayed_feedback_swaps_in_its_own_stratum_and_bucket() -> None:
    spec = three_steps()
    stats = RuleStatistics(spec)
    stats.enter_step(0, TS, rollout_started_at=TS)
    early = sample(1, Cohort.CANARY, 3.5, correction_minutes=None, feedback_closed=False)
    stats.add(early)
    stats.enter_step(1, TS + 10 * MIN)
    stats.add(sample(2, Cohort.CANARY, 10.5))
    stats.replace(early, early.model_copy(update={"correction_minutes": 4.0,
                                                  "feedback_closed": True}))
    burden0 = stats.strata["0"]["correctionBurden"]["all"][Cohort.CANARY.value]
    assert (burden0.n, burden0.mean) == (1, 4.0)
    assert stats.window_moments(Metric.CORRECTION_BURDEN, Cohort.CANARY).mean == 1.0
    assert [b for b, *_ in stats.change_buckets(Metric.CORRECTION_BURDEN)] == [0]


def test_buckets_follow_the_intervals_of_the_current_step() -> None:
    spec = three_steps()
    stats = RuleStatistics(spec)
    stats.enter_step(0, TS, rollout_started_at=TS)
    stats.enter_step(1, TS + 2.5 * MIN)
    for i, minute in enumerate((2.6, 3.4, 3.6, 5.9)):
        stats.add(sample(i, Cohort.CANARY, minute))
        stats.add(sample(i, Cohort.BASELINE, minute))
    got = [(b, slot, c.n) for b, slot, c, _ in stats.change_buckets(Metric.FALLBACK_RATE)]
    assert got == [(0, 2, 2), (1, 3, 1), (3, 5, 1)]  # slot: whole intervals since TS
    late = 2.5 + MAX_STARTS + 3
    stats.add(sample(99, Cohort.CANARY, late))
    kept = [b for b, *_ in stats.change_buckets(Metric.FALLBACK_RATE)]
    assert kept == [MAX_STARTS + 3]  # older buckets forgotten
    stats.add(sample(100, Cohort.CANARY, 2.7))  # too old for a bucket: step window only
    assert [b for b, *_ in stats.change_buckets(Metric.FALLBACK_RATE)] == kept
    assert stats.window_moments(Metric.FALLBACK_RATE, Cohort.CANARY).n == 6
    stats.enter_step(2, TS + 40 * MIN)
    assert not stats.buckets


def test_round_trip_and_merge_keep_strata_buckets_and_history() -> None:
    spec = three_steps()
    a = RuleStatistics(spec)
    a.enter_step(0, TS, rollout_started_at=TS)
    for i in range(5):
        a.add(sample(i, Cohort.CANARY, i * 0.5))
        a.add(sample(i, Cohort.BASELINE, i * 0.5, fallback=True))
    a.enter_step(1, TS + 3 * MIN)
    for i in range(5, 9):
        a.add(sample(i, Cohort.CANARY, 3 + (i - 5) * 0.7, queue="vip"))
        a.add(sample(i, Cohort.BASELINE, 3 + (i - 5) * 0.7))
    back = RuleStatistics.from_dict(spec, json.loads(json.dumps(a.to_dict())))
    assert back.to_dict() == a.to_dict()
    assert back.clock == a.clock
    assert back.change_buckets(Metric.FALLBACK_RATE) == a.change_buckets(Metric.FALLBACK_RATE)
    both = a.merge(back)
    for sk in ("0", "1"):
        for key in ("all", "queue=vip", "queue=default"):
            one = a.strata[sk]["fallbackRate"].get(key, {})
            two = both.strata[sk]["fallbackRate"].get(key, {})
            assert {c: m.n * 2 for c, m in one.items()} == {c: m.n for c, m in two.items()}
    assert [c.n for _, _, c, _ in both.change_buckets(Metric.FALLBACK_RATE)] == \
        [2 * c.n for _, _, c, _ in a.change_buckets(Metric.FALLBACK_RATE)]
    old = a.to_dict() | {"version": 2}
    with pytest.raises(StatisticsMismatch):
        RuleStatistics.from_dict(spec, old)


def test_one_stratum_is_the_unstratified_test() -> None:
    rng = np.random.default_rng(4)
    n_c, n_b = rng.integers(30, 800, 200).astype(float), rng.integers(30, 3000, 200).astype(float)
    x_c, x_b = rng.binomial(n_c.astype(int), 0.86), rng.binomial(n_b.astype(int), 0.9)
    mine = diff_proportions(x_c, n_c, x_b, n_b, 1.0, 0.01, 800)
    for tol in (-0.02, -0.05):
        below = proportions_log_e(x_c[None], n_c[None], x_b[None], n_b[None], 1.0, tol, 0.01,
                                  800, upper=False) >= np.log(100)
        assert np.array_equal(below, mine.upper < tol)
    mc, mb = rng.normal(3, 1, 200), rng.normal(3, 1, 200)
    vc, vb = rng.uniform(1, 4, 200), rng.uniform(1, 4, 200)
    a = diff_means_normal(mc, vc, n_c, mb, vb, n_b, 1.1, 0.01, 800)
    b = stratified_means(mc[None], vc[None], n_c[None], mb[None], vb[None], n_b[None], 1.1,
                         0.01, 800)
    np.testing.assert_allclose(b.lower, a.lower, rtol=1e-12)


def test_under_drift_the_stratified_estimate_is_the_per_step_difference() -> None:
    """Two steps, the canary exactly 2 points below the baseline in each, the base rate
    0.93 in the first (5% canary) and 0.87 in the second (50%): pooled, the canary looks
    4+ points worse; stratified, 2."""
    nc = np.array([[50.0], [500.0]])
    nb = np.array([[950.0], [500.0]])
    xc = np.array([[0.91 * 50], [0.85 * 500]])
    xb = np.array([[0.93 * 950], [0.87 * 500]])
    pooled = xc.sum() / nc.sum() - xb.sum() / nb.sum()
    assert pooled < -0.04
    from controller.analysis.strata import stratified_proportions

    cs = stratified_proportions(xc, nc, xb, nb, 1.0, 0.05, 800)
    assert float(cs.estimate[0]) == pytest.approx(-0.02, abs=1e-9)


def test_the_decision_is_the_same_with_or_without_bounds() -> None:
    spec = three_steps()
    rng = np.random.default_rng(9)
    for run in range(6):
        stats = RuleStatistics(spec)
        for minute in range(30):
            step = min(minute // 10, 2)
            stats.enter_step(step, TS + 10 * step * MIN, rollout_started_at=TS)
            for i in range(40):
                cohort = Cohort.CANARY if rng.random() < (0.1, 0.3, 0.6)[step] else \
                    Cohort.BASELINE
                bad = cohort is Cohort.CANARY and run % 2 and minute > 12
                stats.add(sample(minute * 100 + i, cohort, minute + i / 40,
                                 fallback=bool(rng.random() < (0.15 if bad else 0.03)),
                                 score=0.9 if rng.random() < 0.9 else 0.1))
            full = evaluate(spec, stats)
            fast = evaluate(spec, stats, estimate_needed=False)
            assert full.action is fast.action
            assert [r.outcome for r in full.guards] == [r.outcome for r in fast.guards]
            if full.action is not Action.CONTINUE:
                break


@settings(max_examples=30, deadline=None, derandomize=True)
@given(st.lists(st.floats(0.0, 1e6, allow_nan=False), max_size=60))
def test_histogram_of_many_values_bins_like_add(values: list[float]) -> None:
    one = Histogram()
    for x in values:
        one.add(x)
    assert Histogram.of(np.asarray(values, float)) == one
