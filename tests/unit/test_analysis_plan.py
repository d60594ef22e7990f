"""canaryctl plan's predictions against rollouts built sample by sample."""

from __future__ import annotations

import numpy as np
import pytest

from controller.analysis import RuleStatistics, evaluate
from controller.analysis.plan import (
    PlanInputError,
    parse_baseline,
    plan_rollout,
    regression_value,
)
from controller.models import Action, Cohort, Risk, Sample

from .test_analysis_support import make_spec

RATE = 120.0  # samples per minute
BASE = 0.05


def spec():  # type: ignore[no-untyped-def]
    s = make_spec([{"name": "fallback", "metric": "fallbackRate", "tolerance": 0.05}],
                  minSamplesPerCohort=60, maxDuration="40m", minSamplesPerStep=30)
    return s


def by_samples(seed: int, canary_rate: float) -> tuple[Action, int]:
    """One rollout fed sample by sample through RuleStatistics.add: (outcome, minutes)."""
    sp = spec()
    rng = np.random.default_rng(seed)
    stats = RuleStatistics(sp)
    step = 0
    stats.enter_step(0)
    i = 0
    for minute in range(1, 41):
        total = rng.poisson(RATE)
        n_c = rng.binomial(total, sp.steps[step].weight / 100)
        for cohort, n, p in ((Cohort.CANARY, n_c, canary_rate),
                             (Cohort.BASELINE, total - n_c, BASE)):
            for fb in rng.random(n) < p:
                i += 1
                stats.add(Sample.model_construct(
                    id=str(i), rule="r", cohort=cohort, ts=None, queue="q", risk=Risk.LOW,
                    input="q", output="a", latency_ms=1.0, cost_usd=0.0, fallback=bool(fb),
                    judge=None))
        action = evaluate(sp, stats).action
        if action is Action.ROLLBACK:
            return action, minute
        if action is Action.PROMOTE:
            if step + 1 == len(sp.steps):
                return action, minute
            step += 1
            stats.enter_step(step)
    return Action.CONTINUE, 40


def test_plan_agrees_with_rollouts_built_sample_by_sample() -> None:
    """Stated tolerance: medians within 25% (or 2 minutes) and shares within 0.2, over
    30 runs each."""
    sp = spec()
    plan = plan_rollout(sp, RATE, {"fallbackRate": BASE}, runs=30, seed=1)
    healthy = [by_samples(s, BASE) for s in range(30)]
    share = sum(a is Action.PROMOTE for a, _ in healthy) / 30
    direct = float(np.median([m for a, m in healthy if a is Action.PROMOTE]))
    assert abs(plan.promoted - share) <= 0.2, (plan.promoted, share)
    assert plan.minutes_to_promote.median is not None
    assert abs(plan.minutes_to_promote.median - direct) <= max(2.0, 0.25 * direct), \
        (plan.minutes_to_promote.median, direct)
    bad = regression_value(sp.analysis.guards[0], BASE)
    assert bad == pytest.approx(0.15)
    rolled = [by_samples(100 + s, bad) for s in range(30)]
    direct_rb = float(np.median([m for a, m in rolled if a is Action.ROLLBACK]))
    missed = sum(a is not Action.ROLLBACK for a, _ in rolled) / 30
    g = plan.guards[0]
    assert abs(g.missed - missed) <= 0.2, (g.missed, missed)
    assert g.minutes_to_rollback.median is not None
    assert abs(g.minutes_to_rollback.median - direct_rb) <= max(2.0, 0.25 * direct_rb)


def test_plan_warns_when_the_rate_is_too_low_to_decide() -> None:
    plan = plan_rollout(spec(), 5.0, {"fallbackRate": BASE}, runs=5)
    assert plan.promoted < 0.9
    assert any("promoted within maxDuration" in w for w in plan.warnings)


def test_baseline_keys_are_checked() -> None:
    sp = spec()
    assert parse_baseline({"fallback": 0.1, "latency.cv": 0.5}, sp) == \
        {"fallbackRate": 0.1, "latency.cv": 0.5}
    for bad in ({"nope": 0.1}, {"fallbackRate": 1.5}, {"latency": -1.0},
                {"latency.sd": 1.0}, {"latency": float("nan")}):
        with pytest.raises(PlanInputError):
            parse_baseline(bad, sp)
    with pytest.raises(PlanInputError):
        plan_rollout(sp, 0.0)
