"""The accumulator across steps, as the controller drives it: samples stamped in time,
``RuleStatistics.enter_step`` at every look, ``evaluate`` deciding.

- Drift between steps does not bias the comparison: the base rate moves between steps
  while the canary's share grows, the canary is a fixed distance from the baseline
  within each step; the guard's estimate is that distance whatever the drift, where the
  pooled rates are confounded (and would roll back a canary inside its tolerance). A
  canary truly beyond the tolerance in every step still fails.
- The change detector ``evaluate`` runs on the accumulator is the detector the Monte
  Carlo tests bound (tests/unit/test_analysis_changes.py): on the same streams it
  alarms at exactly the same looks, at the boundary and after a change; and at the
  rule's own budget, with the base rate drifting within and between steps, its
  false-alarm rate at the boundary stays within that budget.
- A change that starts in the middle of a step is caught by the detector sooner than by
  the cumulative (stratified) statistic, which the healthy samples before the onset
  dilute.
- Merged statistics own their strata, buckets and window: growing them leaves the
  inputs as they were.

Streams are seeded; sizes are small (one guard, tens of rollouts through the
accumulator, thousands only in the vectorised simulation).
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.analysis import RuleStatistics, evaluate
from controller.analysis.decide import _evaluate_guard, alpha_budget, change_result
from controller.analysis.stats import Moments
from controller.models import Action, CanaryRuleSpec, Cohort, Outcome

from .test_analysis_changes import PER_LOOK, SHARES, TARGET, K, L, _detector, _rate_streams
from .test_analysis_simulation import slack
from .test_analysis_support import TS, make_sample, make_spec

MIN = timedelta(minutes=1)


def stepped(guards: list[dict[str, object]], weights: tuple[int, ...], **analysis: object
            ) -> CanaryRuleSpec:
    spec = make_spec(guards, interval="1m", **analysis)
    return spec.model_copy(update={"steps": [spec.steps[0].model_copy(update={"weight": w})
                                             for w in weights]})


# -- drift between steps ------------------------------------------------------------------

SUCCESS = [{"name": "success", "metric": "taskSuccess", "tolerance": -0.03}]
# (canary, baseline) samples per step: 10% of traffic, then half
SIZES = ((100, 900), (500, 500))


def _two_steps(base: tuple[float, float], gap: float) -> tuple[CanaryRuleSpec, RuleStatistics]:
    """Task success ``base[s]`` in the baseline at step s, ``base[s] + gap`` in the
    canary; exact counts (every rate a whole number of samples), each sample stamped
    inside its step."""
    spec = stepped(SUCCESS, (10, 50), minSamplesPerCohort=20, maxDuration="30m")
    stats = RuleStatistics(spec)
    i = 0
    for step, (rate, (n_c, n_b)) in enumerate(zip(base, SIZES, strict=True)):
        start = TS + 10 * step * MIN
        stats.enter_step(step, start, rollout_started_at=TS)
        for cohort, n, p in ((Cohort.CANARY, n_c, rate + gap), (Cohort.BASELINE, n_b, rate)):
            good = round(p * n)
            for j in range(n):
                stats.add(make_sample(i, cohort, validate=False, score=0.9 if j < good else 0.1,
                                      ts=start + (j / n) * 10 * MIN))
                i += 1
    return spec, stats


def _all_traffic(spec: CanaryRuleSpec, stats: RuleStatistics):  # type: ignore[no-untyped-def]
    d = evaluate(spec, stats)
    return d, next(r for r in d.guards if r.name == "success" and r.check == "compare"
                   and r.queue is None and r.step is None)


def test_drift_between_steps_does_not_roll_back_a_canary_inside_its_tolerance() -> None:
    """Success 0.95 at 10% canary, 0.85 at 50% (the day moved on), the canary 1 point
    below the baseline in both steps: pooled, the canary looks 4 points worse, beyond
    the 3-point tolerance; the guard sees its 1 point and does not fail."""
    spec, stats = _two_steps((0.95, 0.85), -0.01)
    d, row = _all_traffic(spec, stats)
    pooled = row.canary - row.baseline
    assert pooled < -0.03  # the trap: a pooled comparison aims at the wrong quantity
    assert row.delta == pytest.approx(-0.01, abs=1e-9)
    assert row.outcome is not Outcome.FAIL
    assert d.action is not Action.ROLLBACK


def test_a_canary_beyond_the_tolerance_in_every_step_still_fails() -> None:
    """The same drift the other way round (pooled, the canary looks better than the
    baseline), the canary 10 points below it in each step: FAIL."""
    spec, stats = _two_steps((0.80, 0.95), -0.10)
    d, row = _all_traffic(spec, stats)
    assert row.canary - row.baseline > -0.03  # pooled, the regression is hidden
    assert row.delta == pytest.approx(-0.10, abs=1e-9)
    assert row.outcome is Outcome.FAIL
    assert d.action is Action.ROLLBACK


@settings(max_examples=12, deadline=None, derandomize=True)
@given(first=st.integers(60, 97), second=st.integers(60, 97), gap=st.integers(-6, 2))
def test_the_estimate_is_the_per_step_gap_whatever_the_drift(first: int, second: int,
                                                             gap: int) -> None:
    spec, stats = _two_steps((first / 100, second / 100), gap / 100)
    _, row = _all_traffic(spec, stats)
    assert row.delta == pytest.approx(gap / 100, abs=1e-9)
    assert row.lower is not None and row.upper is not None
    assert row.lower < gap / 100 < row.upper


# -- the change detector ---------------------------------------------------------------------

FALLBACK = [{"name": "fallback", "metric": "fallbackRate", "tolerance": 0.02}]


def fallback_rule() -> CanaryRuleSpec:
    """The simulations' setting: 5% → 20% → 50%, K = 45 one-minute looks, the mixtures
    tuned at 4 × 200 samples (test_analysis_changes.TARGET)."""
    spec = stepped(FALLBACK, tuple(round(100 * s) for s in SHARES), minSamplesPerCohort=200,
                   maxDuration=f"{K}m")
    assert 4 * spec.analysis.min_samples_per_cohort == TARGET
    return spec


def _binary(x: float, n: float) -> Moments:
    return Moments(int(n), 0.0, float(x), float(x))


def _looks(spec: CanaryRuleSpec, counts: list[np.ndarray], run: int):  # type: ignore[no-untyped-def]
    """Feed one run's per-interval counts through the accumulator, a look per interval;
    yields (look, statistics) after each interval's samples are in."""
    stats = RuleStatistics(spec)
    xc, nc, xb, nb = (a[:, run] for a in counts)
    for t in range(K):
        step = t // L
        stats.enter_step(step, TS + L * step * MIN, rollout_started_at=TS)
        at = TS + (t + 0.5) * MIN
        stats.fold(Cohort.CANARY, int(nc[t]), {"fallbackRate": _binary(xc[t], nc[t])}, at=at)
        stats.fold(Cohort.BASELINE, int(nb[t]), {"fallbackRate": _binary(xb[t], nb[t])}, at=at)
        yield t, stats


def test_the_accumulators_detector_is_the_simulated_one_look_by_look() -> None:
    """The canary at the tolerance all along (8 runs), and jumping from the boundary to
    15% in the middle of step 2 (8 runs): ``evaluate``'s change row on the accumulator
    fails at exactly the looks where the vectorised detector of the Monte Carlo tests
    alarms, at the alpha the rule gives the detector."""
    spec = fallback_rule()
    g = spec.analysis.guards[0]
    alpha = alpha_budget(spec)[g.name].change
    runs = 8
    rng = np.random.default_rng(21)
    boundary = _rate_streams(rng, runs, np.full(K, 0.03), 0.02)
    spike = _rate_streams(rng, runs, np.full(K, 0.03), 0.12, onset=L + 7)
    counts = [np.concatenate([a, b], axis=1) for a, b in zip(boundary, spike, strict=True)]
    simulated = _detector(counts, 0.02, alpha, upper=True)
    mine = np.zeros_like(simulated)
    for run in range(2 * runs):
        for t, stats in _looks(spec, counts, run):
            row = change_result(spec, stats, g, alpha)
            mine[t, run] = row.outcome is Outcome.FAIL
            if t == L + 10 and run == 0:  # the whole decision carries the row
                rows = [r for r in evaluate(spec, stats, estimate_needed=False).guards
                        if r.check == "change"]
                assert [r.outcome for r in rows] == [row.outcome]
    assert mine.any() and not mine.all()  # both outcomes are compared
    np.testing.assert_array_equal(mine, simulated)
    assert not mine[:, :runs].any()  # the boundary runs: no alarm
    assert mine[:, runs:].any(axis=0).all()  # every change caught


def test_false_alarms_at_the_boundary_with_drift_stay_within_the_detectors_budget() -> None:
    """The detector as the previous test proves the accumulator runs it, at the budget
    the rule gives it, on 3000 rollouts with the canary exactly at the tolerance while
    the base fallback rate climbs from 2% to 5% over the rollout (within and between
    steps): alarms in at most alpha + 3 Monte Carlo standard errors."""
    spec = fallback_rule()
    alpha = alpha_budget(spec)[spec.analysis.guards[0].name].change
    runs = 3000
    base = np.linspace(0.02, 0.05, K)
    counts = _rate_streams(np.random.default_rng(22), runs, base, 0.02)
    rate = float(_detector(counts, 0.02, alpha, upper=True).any(axis=0).mean())
    assert rate <= slack(alpha, runs), f"{rate:.4f} > {alpha}"
    # the test can fail: beyond the tolerance (+4 points), the detector alarms
    worse = _rate_streams(np.random.default_rng(23), 400, base, 0.04)
    assert _detector(worse, 0.02, alpha, upper=True).any(axis=0).mean() > 10 * slack(alpha, runs)


def test_a_change_in_the_middle_of_a_step_is_caught_sooner_than_by_the_cumulative_test() -> None:
    """Fallback 3% → 15% from the 8th interval of step 2 (860 healthy canary samples
    before it), 12 rollouts through the accumulator: the detector's row fails in every
    run, and in median at least 1.5× sooner (in intervals after the onset) than the
    all-traffic cumulative test of the same guard on the same statistics."""
    spec = fallback_rule()
    g = spec.analysis.guards[0]
    share = alpha_budget(spec)[g.name]
    runs, onset = 12, L + 7
    counts = _rate_streams(np.random.default_rng(24), runs, np.full(K, 0.03), 0.12, onset)
    detector, cumulative = [], []
    for run in range(runs):
        first: dict[str, int] = {}
        for t, stats in _looks(spec, counts, run):
            d = evaluate(spec, stats, estimate_needed=False)
            if "change" not in first and any(r.check == "change" and r.outcome is Outcome.FAIL
                                             for r in d.guards):
                assert d.action is Action.ROLLBACK
                first["change"] = t
            head = _evaluate_guard(spec, stats, g, share, None, False)[0]
            if "cumulative" not in first and head.outcome is Outcome.FAIL:
                first["cumulative"] = t
            if len(first) == 2:
                break
        assert "change" in first, f"run {run}: the change was never detected"
        assert first["change"] >= onset  # never before the onset
        detector.append(first["change"] - onset + 1)
        cumulative.append(first.get("cumulative", K) - onset + 1)
    assert 1.5 * float(np.median(detector)) <= float(np.median(cumulative)), \
        (detector, cumulative)
    assert float(np.median(detector)) * PER_LOOK * SHARES[1] <= 400  # ≤ 5 intervals at 20%


def test_merge_leaves_its_inputs_untouched_when_the_result_grows() -> None:
    """Strata, detector buckets and the step window of a merge are its own: adding to
    the merged statistics never changes the statistics it was merged from."""
    latency = {"name": "latency", "metric": "latency", "tolerance": 0.2, "relative": True}
    spec = stepped([*FALLBACK, latency], (5, 20, 50), minSamplesPerCohort=20,
                   maxDuration=f"{K}m")
    a = RuleStatistics(spec)
    a.enter_step(1, TS, rollout_started_at=TS)
    for i in range(6):
        a.add(make_sample(i, Cohort.CANARY, validate=False, ts=TS + (i / 3) * MIN))
    empty = RuleStatistics(spec)
    empty.enter_step(1, TS, rollout_started_at=TS)
    before = a.to_dict()
    both = empty.merge(a)
    for i in range(6, 12):
        both.add(make_sample(i, Cohort.CANARY, validate=False, fallback=True,
                             latency_ms=5000.0, ts=TS + (i / 6) * MIN))
    assert a.to_dict() == before
    assert both.to_dict() != before
