"""Per-step evidence: the step window, its minimum before advancing, and its own test."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.analysis import RuleStatistics, evaluate
from controller.analysis.decide import alpha_budget, group_slots, step_min_samples
from controller.models import Action, CanaryRuleSpec, Cohort, Metric, Outcome

from .test_analysis_support import TS, make_sample, make_spec

GUARDS = [{"name": "success", "metric": "taskSuccess", "tolerance": -0.1},
          {"name": "latency", "metric": "latency", "tolerance": 0.2, "relative": True}]


def three_steps(**analysis: Any) -> CanaryRuleSpec:
    spec = make_spec(GUARDS, minSamplesPerCohort=20, **analysis)
    return spec.model_copy(update={"steps": [s.model_copy(update={"weight": w})
                                             for w in (10, 30, 60) for s in spec.steps[:1]]})


def feed(stats: RuleStatistics, n: int, start: int, *, score: float = 0.9,
         canary_score: float | None = None, **fields: Any) -> None:
    """n pairs; every tenth sample of each cohort fails (a 90% success rate)."""
    for i in range(start, start + n):
        fail = i % 10 == 9
        c_score = canary_score if canary_score is not None else score
        stats.add(make_sample(i, Cohort.BASELINE, score=0.1 if fail else score,
                              validate=False, **fields))
        stats.add(make_sample(i, Cohort.CANARY, score=0.1 if fail else c_score,
                              validate=False, **fields))


def test_without_a_step_one_batch_promotes_as_before() -> None:
    spec = three_steps()
    stats = RuleStatistics(spec)
    feed(stats, 400, 0)
    assert stats.step is None
    assert evaluate(spec, stats).action is Action.PROMOTE


def test_a_new_step_needs_its_own_samples_before_it_advances() -> None:
    spec = three_steps(minSamplesPerStep=30)
    stats = RuleStatistics(spec)
    stats.enter_step(0, TS)
    feed(stats, 400, 0)
    assert evaluate(spec, stats).action is Action.PROMOTE  # step 1 has its 400
    assert stats.enter_step(1, TS + timedelta(minutes=5))
    assert not stats.enter_step(1, TS + timedelta(minutes=5))  # idempotent
    d = evaluate(spec, stats)
    assert d.action is Action.CONTINUE
    assert "step 2 has 0 of the 30 canary samples" in d.reason
    later = TS + timedelta(minutes=6)
    feed(stats, 29, 1000, ts=later)
    assert evaluate(spec, stats).action is Action.CONTINUE
    feed(stats, 1, 2000, ts=later)
    assert evaluate(spec, stats).action is Action.PROMOTE


def test_samples_from_before_the_step_do_not_count_for_it() -> None:
    spec = three_steps(minSamplesPerStep=5)
    stats = RuleStatistics(spec)
    stats.enter_step(1, TS + timedelta(minutes=10))
    old = make_sample(1, Cohort.CANARY, validate=False)  # ts = TS, before the step
    stats.add(old)
    assert stats.window_samples[Cohort.CANARY.value] == 0
    stats.replace(old, old.model_copy(update={"judge": None}))  # delayed feedback
    assert stats.window_samples[Cohort.CANARY.value] == 0
    assert stats.window_moments(Metric.TASK_SUCCESS, Cohort.CANARY).n == 0


def test_window_survives_the_status_round_trip_and_merge() -> None:
    spec = three_steps()
    stats = RuleStatistics(spec)
    stats.enter_step(2, TS)
    feed(stats, 7, 0, ts=TS)
    back = RuleStatistics.from_dict(spec, stats.to_dict())
    assert back.step == 2 and back.step_started == TS
    assert back.window_samples == stats.window_samples
    assert back.window_moments(Metric.LATENCY, Cohort.CANARY) == \
        stats.window_moments(Metric.LATENCY, Cohort.CANARY)
    assert back.merge(stats).window_samples[Cohort.CANARY.value] == 14
    old = RuleStatistics(spec).to_dict()  # statistics written before windows existed
    assert "step" not in old and RuleStatistics.from_dict(spec, old).step is None


def test_a_regression_that_starts_with_a_step_fails_on_the_step_start() -> None:
    """800 healthy pairs at step 1, then 150 at 0.55 success against 0.9: the
    cumulative drop (stratified by step) is still inconclusive at the 10-point
    tolerance; the change detector's term for the step's own start is not."""
    spec = three_steps()
    stats = RuleStatistics(spec)
    stats.enter_step(0, TS)
    feed(stats, 800, 0)
    stats.enter_step(1, TS + timedelta(minutes=30))
    later = TS + timedelta(minutes=31)
    for i in range(150):
        stats.add(make_sample(5000 + i, Cohort.BASELINE, score=0.9 if i % 10 else 0.1,
                              validate=False, ts=later))
        stats.add(make_sample(5000 + i, Cohort.CANARY, score=0.9 if i % 20 < 11 else 0.1,
                              validate=False, ts=later))
    d = evaluate(spec, stats)
    assert d.action is Action.ROLLBACK
    success = [r for r in d.guards if r.name == "success"]
    assert success[0].outcome is Outcome.FAIL and "step 2 change" in success[0].reason
    assert success[-1].step == 2 and success[-1].outcome is Outcome.FAIL
    assert success[-1].check == "change" and "since the step's start" in success[-1].reason


def test_step_minimum_precedence() -> None:
    spec = three_steps(minSamplesPerStep=40)
    assert step_min_samples(spec, 0) == 40
    steps = [spec.steps[0], spec.steps[1].model_copy(update={"min_samples": 7}), spec.steps[2]]
    spec2 = spec.model_copy(update={"steps": steps})
    assert [step_min_samples(spec2, i) for i in range(3)] == [40, 7, 40]
    assert step_min_samples(three_steps(), 1) == 5  # ceil(20 / 4)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(n_steps=st.integers(1, 5), weights=st.lists(st.floats(0.1, 10), min_size=4, max_size=4),
       group=st.sampled_from([[], ["queue"], ["queue", "risk"]]),
       max_groups=st.integers(1, 64), alpha=st.floats(0.001, 0.2))
def test_budget_with_weights_and_windows_stays_within_alpha(
        n_steps: int, weights: list[float], group: list[str], max_groups: int,
        alpha: float) -> None:
    guards = [
        {"name": "t", "metric": "trustedCompletion", "tolerance": -0.02, "groupBy": group,
         "alphaWeight": weights[0]},
        {"name": "f", "metric": "f1", "tolerance": -0.02, "alphaWeight": weights[1]},
        {"name": "l", "metric": "latency", "tolerance": 0.1, "relative": True},
        {"name": "p", "metric": "policyFailureRate", "tolerance": 0.01,
         "alphaWeight": weights[3]},
    ]
    spec = make_spec(guards, alpha=alpha, maxGroups=max_groups)
    spec = spec.model_copy(update={"steps": [spec.steps[0]] * n_steps})
    total = 0.0
    for g in spec.analysis.guards:
        share = alpha_budget(spec)[g.name]
        total += (share.all + share.slice * group_slots(spec, g)
                  + share.window * (n_steps - 1) + share.change)
    assert total == pytest.approx(alpha, rel=1e-9)
