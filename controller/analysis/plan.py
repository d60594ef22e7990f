"""How long a rollout will take, before it starts: simulated rollouts through ``evaluate``.

For a rule, a sample rate and baseline values per metric, :func:`plan_rollout` runs
rollouts of the rule as the controller would: one look per ``analysis.interval``, the
canary getting its step's share of the samples (the judge judging at most
``judge.samplesPerInterval`` per interval, alternating cohorts as the controller
does), the statistics told the step (so ``minSamplesPerStep`` applies), the step
advancing on PROMOTE after its ``pause``, up to ``maxDuration``. Every guard kind runs
through the real :func:`.decide.evaluate` (Bernoulli counts for rates, normal sums for
means with the given coefficient of variation, a confusion matrix for F1, event counts
restarting per step for Prometheus guards), so alpha weights, windows, burn-in and
per-step minimums all count. Two kinds of rollout:

- healthy (canary = baseline): time and canary samples to advance past each step and
  to promote, and which guards were still undecided at ``maxDuration``;
- for each guard, a regression of twice its tolerance (the smallest change clearly
  beyond what the guard accepts: a 2-point tolerance implies a 4-point drop), every
  other metric healthy: time to roll back, and the share of runs not caught in time.

Each figure is the median (and 90th percentile) over ``runs`` simulated rollouts with
per-interval noise, so it is an expectation under the stated rate and baselines, not a
promise; the unit tests check it against rollouts built sample by sample.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from controller.models import (
    Action,
    CanaryRuleSpec,
    Cohort,
    Guard,
    Metric,
    Outcome,
    parse_duration,
)

from .accumulator import DECISIONS, HIST, Cell, RuleStatistics, measure_of
from .decide import evaluate, guard_outcomes
from .stats import NO_TASK, Confusion, Histogram, Moments, TaskConfusions

DEFAULT_BASELINE: dict[str, float] = {
    Metric.TRUSTED_COMPLETION.value: 0.9,
    Metric.TASK_SUCCESS.value: 0.9,
    Metric.FALLBACK_RATE.value: 0.03,
    Metric.POLICY_FAILURE_RATE.value: 0.01,
    Metric.CORRECTION_BURDEN.value: 2.0,
    Metric.LATENCY.value: 1500.0,
    Metric.COST.value: 0.005,
    Metric.F1.value: 0.85,
    Metric.PROMETHEUS.value: 0.01,
}
DEFAULT_CV: dict[str, float] = {
    Metric.CORRECTION_BURDEN.value: 1.3,
    Metric.LATENCY.value: 0.6,
    Metric.COST.value: 0.3,
}
JUDGED = frozenset({Metric.TASK_SUCCESS, Metric.TRUSTED_COMPLETION, Metric.F1,
                    Metric.PRECISION, Metric.RECALL, Metric.FBETA})
RATES = frozenset({Metric.TASK_SUCCESS, Metric.TRUSTED_COMPLETION, Metric.FALLBACK_RATE,
                   Metric.POLICY_FAILURE_RATE})
F1_CLASSES = 3
ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)
"""Simulated rollouts start here (the statistics place samples in steps and intervals by
time)."""


class PlanInputError(ValueError):
    """A baseline key or value the planner cannot use (names the key)."""


@dataclass
class Quantiles:
    median: float | None
    p90: float | None

    @classmethod
    def of(cls, values: list[float]) -> Quantiles:
        if not values:
            return cls(None, None)
        arr = np.asarray(values, dtype=float)
        return cls(float(np.median(arr)), float(np.percentile(arr, 90)))


@dataclass
class StepPlan:
    step: int  # 1-based
    weight: int
    reached: float  # share of healthy runs that reached this step
    minutes: Quantiles  # time spent at this step (runs that left it)
    canary_samples: Quantiles  # canary samples gathered at this step


@dataclass
class GuardPlan:
    name: str
    metric: str
    baseline: float
    regression: float  # the simulated canary value (twice the tolerance away)
    minutes_to_rollback: Quantiles
    canary_samples_to_rollback: Quantiles
    missed: float  # share of runs not rolled back within maxDuration
    undecided_when_healthy: float  # share of healthy runs where it was not PASS at the end


@dataclass
class Plan:
    rate_per_minute: float
    interval_minutes: float
    max_duration_minutes: float
    runs: int
    promoted: float
    minutes_to_promote: Quantiles
    canary_samples_to_promote: Quantiles
    steps: list[StepPlan]
    guards: list[GuardPlan]
    warnings: list[str] = field(default_factory=list)


def parse_baseline(items: Mapping[str, float], spec: CanaryRuleSpec) -> dict[str, float]:
    """Baseline values by metric (``latency``) or guard name, plus ``<key>.cv`` for a
    mean's coefficient of variation; unknown keys and impossible values are refused."""
    out: dict[str, float] = {}
    guards = {g.name: g for g in spec.analysis.guards}
    for key, value in items.items():
        name, _, suffix = key.partition(".")
        metric = _base_key(guards[name].metric) if name in guards else _base_key(name)
        if metric not in DEFAULT_BASELINE:
            raise PlanInputError(f"--baseline {key}: unknown metric or guard {name!r}")
        if not np.isfinite(value):
            raise PlanInputError(f"--baseline {key}: must be a finite number")
        if suffix == "cv":
            if value <= 0:
                raise PlanInputError(f"--baseline {key}: a coefficient of variation must be > 0")
        elif suffix:
            raise PlanInputError(f"--baseline {key}: only '<metric>.cv' takes a suffix")
        elif Metric(metric) in RATES or metric in (Metric.F1.value, Metric.PROMETHEUS.value):
            if not 0.0 < value < 1.0:
                raise PlanInputError(f"--baseline {key}: a rate must be in (0, 1)")
        elif value <= 0:
            raise PlanInputError(f"--baseline {key}: must be > 0")
        out[f"{metric}.{suffix}" if suffix else metric] = float(value)
    return out


def regression_value(guard: Guard, base: float) -> float:
    """The canary value twice the guard's tolerance away from the baseline."""
    change = 2.0 * guard.tolerance
    value = base * (1.0 + change) if guard.relative else base + change
    if guard.metric in RATES or guard.metric.from_decisions or guard.metric is Metric.PROMETHEUS:
        return float(min(max(value, 1e-6), 1.0 - 1e-6))
    return float(max(value, 1e-9))


class _World:
    """Per-interval synthetic statistics for one rollout (canary values per metric)."""

    def __init__(self, spec: CanaryRuleSpec, base: dict[str, float],
                 canary: dict[str, float], rng: np.random.Generator) -> None:
        self.spec, self.base, self.canary, self.rng = spec, base, canary, rng
        measures: dict[str, Metric] = {}
        for g in spec.analysis.guards:
            if g.metric is not Metric.PROMETHEUS:
                measures.setdefault(measure_of(g), g.metric)
        self.measures = sorted(measures.items())

    def value(self, metric: Metric | str, cohort: Cohort) -> float:
        key = _base_key(metric)
        src = self.canary if cohort is Cohort.CANARY else self.base
        return src.get(str(metric), src.get(key, self.base.get(key, DEFAULT_BASELINE[key])))

    def cells(self, cohort: Cohort, n: int, judged: int) -> dict[str, Cell]:
        """Synthetic statistics per stored measure (what the guards read)."""
        out: dict[str, Cell] = {}
        for measure, m in self.measures:
            k = judged if m in JUDGED else n
            if k <= 0:
                continue
            if measure == DECISIONS:
                out[measure] = TaskConfusions({NO_TASK: self._confusion(self.value(m, cohort),
                                                                        k)})
            elif m in RATES:
                out[measure] = _binary(int(self.rng.binomial(k, self.value(m, cohort))), k)
            else:
                mean = self.value(m, cohort)
                cv = self.base.get(f"{m.value}.cv", DEFAULT_CV.get(m.value, 0.5))
                sd = cv * self.base.get(m.value, DEFAULT_BASELINE[m.value])
                out[measure] = (_lognormal_histogram(self.rng, k, mean, sd)
                                if measure.endswith(HIST) else _normal(self.rng, k, mean, sd))
        return out

    def _confusion(self, accuracy: float, k: int) -> Confusion:
        off = (1.0 - accuracy) / (F1_CLASSES - 1) / F1_CLASSES
        probs = np.full((F1_CLASSES, F1_CLASSES), off)
        np.fill_diagonal(probs, accuracy / F1_CLASSES)
        counts = self.rng.multinomial(k, probs.ravel()).reshape(F1_CLASSES, F1_CLASSES)
        labels = [f"c{i}" for i in range(F1_CLASSES)]
        return Confusion({(labels[i], labels[j]): int(counts[i, j])
                          for i in range(F1_CLASSES) for j in range(F1_CLASSES)
                          if counts[i, j] > 0})


def _base_key(metric: Metric | str) -> str:
    """Precision, recall and F-beta are planned with the F1 baseline (an accuracy)."""
    key = str(metric)
    return Metric.F1.value if key in (Metric.PRECISION.value, Metric.RECALL.value,
                                      Metric.FBETA.value) else key


def _lognormal_histogram(rng: np.random.Generator, n: int, mean: float, sd: float
                         ) -> Histogram:
    """n lognormal draws with this mean and sd, binned as a quantile guard keeps them."""
    sigma2 = float(np.log1p((sd / mean) ** 2))
    values = rng.lognormal(np.log(mean) - sigma2 / 2.0, np.sqrt(sigma2), size=n)
    return Histogram.of(values)


def _binary(x: int, n: int) -> Moments:
    """Moments of x ones and n − x zeros."""
    return Moments(n, 0.0, float(x), float(x))


def _normal(rng: np.random.Generator, n: int, mean: float, sd: float) -> Moments:
    """Moments of n draws with this mean and sd (sums drawn from their exact normal
    approximation: mean of the sample and its sum of squares)."""
    xbar = rng.normal(mean, sd / np.sqrt(n))
    s2 = sd * sd * rng.chisquare(max(n - 1, 1)) / max(n - 1, 1) if n > 1 else 0.0
    s1 = n * xbar
    return Moments(n, 0.0, float(s1), float(s2 * (n - 1) + n * xbar * xbar))


def _split(rate: float, minutes: float, weight: int, rng: np.random.Generator
           ) -> tuple[int, int]:
    total = int(rng.poisson(rate * minutes))
    canary = int(rng.binomial(total, weight / 100.0))
    return canary, total - canary


def _judged(limit: int | None, n_c: int, n_b: int) -> tuple[int, int]:
    """Judged samples per cohort: alternating cohorts up to the limit (the tick's rule)."""
    if limit is None:
        return n_c, n_b
    half = limit // 2
    jc, jb = min(n_c, half), min(n_b, half)
    spare = limit - jc - jb
    jc += min(n_c - jc, spare)
    spare = limit - jc - jb
    jb += min(n_b - jb, spare)
    return jc, jb


@dataclass
class _Run:
    outcome: Action  # PROMOTE, ROLLBACK or CONTINUE (deadline)
    minutes: float
    canary_samples: int
    step_minutes: list[float]
    step_samples: list[int]
    undecided: list[str]


def simulate_rollout(spec: CanaryRuleSpec, rate: float, base: dict[str, float],
                     canary: dict[str, float], rng: np.random.Generator) -> _Run:
    """One rollout through ``evaluate``; the step advances on PROMOTE after its pause."""
    world = _World(spec, base, canary, rng)
    interval = parse_duration(spec.analysis.interval) / 60.0
    looks = max(1, int(parse_duration(spec.analysis.max_duration) / 60.0 // interval))
    limit = spec.judge.samples_per_interval if spec.judge is not None else None
    prom = [g for g in spec.analysis.guards if g.metric is Metric.PROMETHEUS]
    stats = RuleStatistics(spec)
    step, step_start, canary_total = 0, 0.0, 0
    stats.enter_step(0, ORIGIN, rollout_started_at=ORIGIN)
    step_minutes: list[float] = []
    step_samples: list[int] = []
    events = {g.name: [0.0, 0.0, 0.0, 0.0] for g in prom}
    decision = None
    for look in range(1, looks + 1):
        weight = spec.steps[step].weight
        n_c, n_b = _split(rate, interval, weight, rng)
        jc, jb = _judged(limit, n_c, n_b)
        at = ORIGIN + timedelta(minutes=(look - 0.5) * interval)  # inside the interval
        for cohort, n, j in ((Cohort.CANARY, n_c, jc), (Cohort.BASELINE, n_b, jb)):
            stats.fold(cohort, n, world.cells(cohort, n, j), at=at)
        canary_total += n_c
        for g in prom:
            e = events[g.name]
            e[0] += rng.binomial(n_c, world.value(Metric.PROMETHEUS, Cohort.CANARY)
                                 if g.name in canary else base.get(g.metric.value, 0.01))
            e[1] += rng.binomial(n_b, base.get(g.metric.value, 0.01))
            e[2] += n_c
            e[3] += n_b
            if e[2] > 0 and e[3] > 0:
                stats.set_counts(g.name, canary_events=e[0], baseline_events=e[1],
                                 canary_total=e[2], baseline_total=e[3])
        now = look * interval
        decision = evaluate(spec, stats, deadline_reached=look == looks, estimate_needed=False)
        if decision.action is Action.ROLLBACK:
            return _Run(Action.ROLLBACK, now, canary_total, step_minutes, step_samples, [])
        pause = spec.steps[step].pause
        paused = pause is not None and now - step_start < parse_duration(pause) / 60.0
        if decision.action is Action.PROMOTE and not paused:
            step_minutes.append(now - step_start)
            step_samples.append(stats.window_samples[Cohort.CANARY.value])
            if step + 1 == len(spec.steps):
                return _Run(Action.PROMOTE, now, canary_total, step_minutes, step_samples, [])
            step, step_start = step + 1, now
            stats.enter_step(step, ORIGIN + timedelta(minutes=now))
            events = {g.name: [0.0, 0.0, 0.0, 0.0] for g in prom}
            stats.clear_counts()
    assert decision is not None
    undecided = [n for n, o in guard_outcomes(decision).items() if o is not Outcome.PASS]
    return _Run(Action.CONTINUE, looks * interval, canary_total, step_minutes, step_samples,
                undecided)


def plan_rollout(spec: CanaryRuleSpec, rate: float, baseline: Mapping[str, float] | None = None,
                 *, runs: int = 20, seed: int = 0) -> Plan:
    """Expected durations for the rule at ``rate`` samples per minute (both cohorts)."""
    if not np.isfinite(rate) or rate <= 0:
        raise PlanInputError("--rate must be a positive number of samples per minute")
    base = dict(DEFAULT_BASELINE) | dict(baseline or {})
    rng = np.random.default_rng(seed)
    healthy = [simulate_rollout(spec, rate, base, {}, rng) for _ in range(runs)]
    steps = []
    for i, s in enumerate(spec.steps):
        left = [r.step_minutes[i] for r in healthy if len(r.step_minutes) > i]
        gathered = [float(r.step_samples[i]) for r in healthy if len(r.step_samples) > i]
        reached = sum(len(r.step_minutes) >= i for r in healthy) / runs
        steps.append(StepPlan(i + 1, s.weight, reached, Quantiles.of(left),
                              Quantiles.of(gathered)))
    promoted = [r for r in healthy if r.outcome is Action.PROMOTE]
    guards = []
    for g in spec.analysis.guards:
        b = base.get(g.metric.value, base.get(_base_key(g.metric),
                                              DEFAULT_BASELINE[_base_key(g.metric)]))
        bad = regression_value(g, b)
        canary = {g.metric.value: bad, g.name: bad}
        rolls = [simulate_rollout(spec, rate, base, canary, rng) for _ in range(runs)]
        caught = [r for r in rolls if r.outcome is Action.ROLLBACK]
        guards.append(GuardPlan(
            g.name, g.metric.value, b, bad,
            Quantiles.of([r.minutes for r in caught]),
            Quantiles.of([float(r.canary_samples) for r in caught]),
            1.0 - len(caught) / runs,
            sum(g.name in r.undecided for r in healthy) / runs))
    plan = Plan(rate, parse_duration(spec.analysis.interval) / 60.0,
                parse_duration(spec.analysis.max_duration) / 60.0, runs,
                len(promoted) / runs, Quantiles.of([r.minutes for r in promoted]),
                Quantiles.of([float(r.canary_samples) for r in promoted]), steps, guards)
    plan.warnings = _warnings(plan)
    return plan


def _warnings(plan: Plan) -> list[str]:
    out = []
    if plan.promoted < 0.9:
        stuck = [g.name for g in plan.guards if g.undecided_when_healthy > 0.1]
        out.append(f"a healthy canary is promoted within maxDuration in only "
                   f"{plan.promoted:.0%} of runs at {plan.rate_per_minute:g} samples/min"
                   + (f"; undecided at the deadline: {', '.join(stuck)}" if stuck else ""))
    for g in plan.guards:
        if g.missed > 0.1:
            out.append(f"guard {g.name!r} misses a regression to {g.regression:.4g} "
                       f"(baseline {g.baseline:.4g}) within maxDuration in {g.missed:.0%} "
                       f"of runs at this rate")
    return out
