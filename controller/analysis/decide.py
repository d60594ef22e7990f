"""Guard outcomes and the decision: promote, roll back, or continue.

Family-wise false rollback. A false rollback needs some test's one-sided bound to
exclude the truth, so a union bound over the tests controls it (:func:`alpha_budget`):

- guard ``g`` gets ``alpha·w_g/Σw`` with its ``alphaWeight`` ``w_g`` (default 3 for
  trusted completion, 2 for task success, 1 otherwise: the guard the rollout exists
  for decides fastest; an equal split made it pay for every latency and cost guard);
- a guard tested on samples (not F1, not Prometheus) in a rule of S ≥ 2 steps puts
  ``WINDOW_SHARE`` (1/5) of its alpha on per-step windows, ``1/(S−1)`` for each of
  steps 2..S (the first step's window is the cumulative test itself);
- of the rest, an ungrouped guard spends all on the all-traffic slice; a grouped guard
  (any ``groupBy``, and F1 which is always also tested per task kind) spends
  ``ALL_TRAFFIC_SHARE`` (2/3) on the all-traffic slice and splits the other third
  evenly over a number of slots fixed by the rule alone: ``maxGroups + 1`` per queue or
  task dimension (the named slices and the ``(other)`` pool) and ``min(3, maxGroups +
  1)`` for risk tiers. Unused slots waste alpha but keep the split independent of the
  data. Every share is fixed by the rule before any data is seen, so the sum over all
  tests is at most the rule's alpha whatever happens.

Per-step evidence (windows). When the caller tells the statistics which step the
rollout is at (:meth:`RuleStatistics.enter_step`):

- PROMOTE (advance) needs, besides every guard passing on all the evidence, that the
  current step gathered ``minSamples`` canary samples of its own (the step's
  ``minSamples``, else ``analysis.minSamplesPerStep``, else ``minSamplesPerCohort/4``).
  Evidence collected at 5% says little about behaviour under 50% of the load (queues,
  caches, rate limits); without this one batch at the first step carried a rule
  through every later step in one tick.
- From the second step on, each sample guard is also tested on the step's own samples
  (all traffic, same test, its window alpha). A regression that starts with the step
  (load-dependent) is then judged on fresh evidence, not diluted by the healthy
  history of the earlier steps. A window can only roll back; it never holds.
- A failure is still decided at any moment from all of the revision's evidence (the
  cumulative tests are unchanged).

Slice outcome (contrast ``θ = μ_c − k·μ_b``, see :mod:`.sequential`):

- NO_DATA when a cohort has no observation for the metric;
- FAIL when the bound on the harmful side lies beyond the tolerance, once each cohort
  has ``min(20, minSamplesPerCohort)`` observations (a burn-in for the plug-in
  variance; Prometheus event-count tests are exact and need none) and, for a
  proportion, the canary expects 5 events at the boundary
  (:func:`.sequential.proportion_fail_ready`);
- PASS when the other bound lies within the tolerance AND both cohorts have
  ``minSamplesPerCohort`` observations;
- INCONCLUSIVE otherwise.

For a relative tolerance r the test uses ``k = 1 + r`` against 0; the reported delta
is ``canary/baseline − 1`` and its bounds are the contrast's bounds divided by the
baseline estimate plus r, so comparing them with r reproduces the test exactly.

Guard outcome: FAIL if any slice fails; otherwise the all-traffic slice's outcome
(PASS, INCONCLUSIVE or NO_DATA); ERROR when the caller reports the guard's source
failed. Group slices can only roll back, never hold: a queue's slice gets a small share
of alpha and few samples, so requiring every queue to PASS would make promotion of a
healthy canary take many times longer than the all-traffic test (or never happen for
small queues), while a real regression concentrated in one queue still crosses that
queue's bound and rolls back. What a per-queue guard buys is exactly that: a harmful
change in one queue is caught even when the overall rate looks normal.
The all-traffic entry of each guard in ``Decision.guards`` carries the guard's overall
outcome (its reason says when a slice decided it); slice entries carry their own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from controller.models import (
    Action,
    CanaryRuleSpec,
    Cohort,
    Decision,
    Guard,
    GuardResult,
    Metric,
    Outcome,
    Risk,
)

from .accumulator import ALL, RuleStatistics, parse_slice
from .sequential import (
    CS,
    diff_means_normal,
    diff_means_t,
    diff_proportions,
    f1_difference,
    proportion_fail_ready,
    rate_ratio_cs,
)
from .stats import Confusion

BURN_IN = 20
PROPORTIONS = frozenset(
    {Metric.TRUSTED_COMPLETION, Metric.TASK_SUCCESS, Metric.FALLBACK_RATE,
     Metric.POLICY_FAILURE_RATE}
)
CONTINUOUS = frozenset({Metric.CORRECTION_BURDEN, Metric.LATENCY, Metric.COST})
TEST_NAMES = {
    "proportion": "normal-mixture CS, Bernoulli (mSPRT)",
    "t": "anytime-valid t-test CS (Lindon et al. 2022)",
    "f1": "normal-mixture CS, macro-F1 delta method",
    "rate": "beta-binomial mixture, event-rate ratio",
    "rate-diff": "normal-mixture CS, event rate per request",
}
BASE = Cohort.BASELINE.value
CAN = Cohort.CANARY.value


def guard_dimensions(guard: Guard) -> list[str]:
    """Slicing dimensions tested for a guard (F1 is always also tested per task)."""
    if guard.metric is Metric.PROMETHEUS:
        return []
    dims: list[str] = [d for d in ("queue", "risk") if d in guard.group_by]
    return [*dims, "task"] if guard.metric is Metric.F1 else dims


DEFAULT_ALPHA_WEIGHTS = {Metric.TRUSTED_COMPLETION: 3.0, Metric.TASK_SUCCESS: 2.0}
WINDOW_SHARE = 0.2
ALL_TRAFFIC_SHARE = 2.0 / 3.0
TARGET_FACTOR = 4.0


@dataclass(frozen=True)
class AlphaShare:
    """Alpha of each test of one guard (see the module docstring)."""

    all: float  # the all-traffic slice, all of the revision's evidence
    slice: float  # each group slot (queue / risk / task)
    window: float  # each step window (steps 2..S), all traffic


def guard_alpha_weight(guard: Guard) -> float:
    """The guard's ``alphaWeight``, or its metric's default."""
    if guard.alpha_weight is not None:
        return guard.alpha_weight
    return DEFAULT_ALPHA_WEIGHTS.get(guard.metric, 1.0)


def has_window(guard: Guard) -> bool:
    """Guards tested on each step's own samples (moment metrics from samples)."""
    return guard.metric not in (Metric.PROMETHEUS, Metric.F1)


def group_slots(spec: CanaryRuleSpec, guard: Guard) -> int:
    """Slots the group half of a guard's alpha is split over (fixed by the rule)."""
    a = spec.analysis
    return sum(min(len(Risk), a.max_groups + 1) if d == "risk" else a.max_groups + 1
               for d in guard_dimensions(guard))


def alpha_budget(spec: CanaryRuleSpec) -> dict[str, AlphaShare]:
    """Per guard: alpha of its all-traffic test, of each group slot, of each step window."""
    a = spec.analysis
    total_w = sum(guard_alpha_weight(g) for g in a.guards)
    windows = len(spec.steps) - 1
    out: dict[str, AlphaShare] = {}
    for g in a.guards:
        per_guard = a.alpha * guard_alpha_weight(g) / total_w
        window_total = WINDOW_SHARE * per_guard if windows > 0 and has_window(g) else 0.0
        rest = per_guard - window_total
        window = window_total / windows if window_total else 0.0
        slots = group_slots(spec, g)
        if not slots:
            out[g.name] = AlphaShare(rest, 0.0, window)
        else:
            out[g.name] = AlphaShare(rest * ALL_TRAFFIC_SHARE,
                                     rest * (1.0 - ALL_TRAFFIC_SHARE) / slots, window)
    return out


def alpha_split(spec: CanaryRuleSpec) -> dict[str, tuple[float, float]]:
    """Per guard: (alpha of the all-traffic slice, alpha of each group slice)."""
    return {name: (s.all, s.slice) for name, s in alpha_budget(spec).items()}


def mixture_target(spec: CanaryRuleSpec) -> float:
    """Sample size per cohort at which the mixture CSs are tightest:
    ``TARGET_FACTOR × minSamplesPerCohort``. With a small canary share the canary
    reaches m long before the baseline, and moderate regressions are decided well past
    m; tuning at 4m costs large effects nothing measurable (decided within the burn-in
    granularity) and shortens the tail of moderate ones (see benchmarks/README.md)."""
    return TARGET_FACTOR * spec.analysis.min_samples_per_cohort


def step_min_samples(spec: CanaryRuleSpec, index: int) -> int:
    """Canary samples step ``index`` must gather at its own weight before advancing."""
    steps = spec.steps
    own = steps[index].min_samples if 0 <= index < len(steps) else None
    if own is not None:
        return own
    if spec.analysis.min_samples_per_step is not None:
        return spec.analysis.min_samples_per_step
    return math.ceil(spec.analysis.min_samples_per_cohort / 4)


def step_shortfall(spec: CanaryRuleSpec, stats: RuleStatistics) -> str | None:
    """Why the current step may not advance yet, or None (no step known: today's rule)."""
    if stats.step is None:
        return None
    need = step_min_samples(spec, stats.step)
    have = stats.window_samples.get(CAN, 0)
    if have >= need:
        return None
    return (f"step {stats.step + 1} has {have} of the {need} canary samples it needs at "
            f"its own weight")


def _num(x: object) -> float | None:
    """JSON-friendly float: None for NaN/inf/missing."""
    if x is None:
        return None
    v = float(np.asarray(x))
    return v if math.isfinite(v) else None


def _fmt(x: float | None, relative: bool = False) -> str:
    if x is None:
        return "n/a"
    return f"{x * 100:+.1f}%" if relative else f"{x:+.4g}"


@dataclass
class _Contrast:
    """Inputs for judging one slice."""

    cs: CS | None
    n_c: int
    n_b: int
    est_c: float | None
    est_b: float | None
    k: float
    threshold: float  # compare θ with this
    test: str
    exact: bool = False  # no burn-in needed
    min_n: bool = True  # PASS needs minSamplesPerCohort
    fail_ready: bool = True  # enough expected events for a proportion's FAIL
    delta: float | None = None
    lower: float | None = None
    upper: float | None = None
    note: str = ""


def evaluate(
    spec: CanaryRuleSpec,
    stats: RuleStatistics,
    *,
    at: datetime | None = None,
    deadline_reached: bool = False,
    errors: Mapping[str, str] | None = None,
) -> Decision:
    """Evaluate every guard on the current statistics and decide.

    ``errors`` maps guard names whose source failed to a message (outcome ERROR).
    Pure: same inputs, same decision.
    """
    errors = dict(errors or {})
    budget = alpha_budget(spec)
    window = _window(spec, stats)
    results: list[GuardResult] = []
    overall: dict[str, GuardResult] = {}
    for g in spec.analysis.guards:
        share = budget[g.name]
        guard_results = _evaluate_guard(spec, stats, g, (share.all, share.slice),
                                        errors.get(g.name))
        if window is not None and share.window > 0 and errors.get(g.name) is None:
            guard_results = _with_window(guard_results, _window_result(
                spec, window, g, share.window, stats.step))
        overall[g.name] = guard_results[0]
        results.extend(guard_results)
    action, reason = _decide(spec, overall, deadline_reached)
    short = step_shortfall(spec, stats) if action is Action.PROMOTE else None
    if short is not None:
        action, reason = Action.CONTINUE, f"all {len(overall)} guards pass; waiting: {short}"
    return Decision(
        action=action,
        reason=reason,
        guards=results,
        n_baseline=stats.n_samples.get(BASE, 0),
        n_canary=stats.n_samples.get(CAN, 0),
        at=at,
    )


def _window(spec: CanaryRuleSpec, stats: RuleStatistics) -> RuleStatistics | None:
    """The current step's own samples, from the second step on (else None)."""
    if stats.step is None or stats.step < 1 or len(spec.steps) < 2:
        return None
    return stats.window_statistics()


def _window_result(
    spec: CanaryRuleSpec, window: RuleStatistics, g: Guard, alpha: float, step: int | None
) -> GuardResult:
    res = _slice_result(spec, window, g, ALL, alpha)
    return res.model_copy(update={"step": None if step is None else step + 1})


def _with_window(results: list[GuardResult], win: GuardResult) -> list[GuardResult]:
    """Add a step-window result; it can turn the guard's outcome into FAIL, nothing else."""
    head = results[0]
    if win.outcome is Outcome.FAIL and head.outcome is not Outcome.FAIL:
        head = head.model_copy(update={
            "outcome": Outcome.FAIL,
            "reason": f"fails on {win.slice_label}; all traffic: {head.outcome.value} "
                      f"({head.reason})"})
    return [head, *results[1:], win]


def guard_outcomes(decision: Decision) -> dict[str, Outcome]:
    """Overall outcome per guard (the all-traffic entries of a decision)."""
    out: dict[str, Outcome] = {}
    for r in decision.guards:
        out.setdefault(r.name, r.outcome)
    return out


def _evaluate_guard(
    spec: CanaryRuleSpec,
    stats: RuleStatistics,
    g: Guard,
    alphas: tuple[float, float],
    error: str | None,
) -> list[GuardResult]:
    if error is not None:
        return [GuardResult(name=g.name, metric=g.metric.value, outcome=Outcome.ERROR,
                            tolerance=g.tolerance, relative=g.relative, alpha=alphas[0],
                            reason=f"source failed: {error}")]
    if g.metric is Metric.PROMETHEUS:
        return [_slice_result(spec, stats, g, ALL, alphas[0])]
    keys = stats.slices(g.metric, guard_dimensions(g))
    slice_results = [_slice_result(spec, stats, g, key, alphas[0] if key == ALL else alphas[1])
                     for key in keys]
    head, groups = slice_results[0], slice_results[1:]
    failing = [r for r in slice_results if r.outcome is Outcome.FAIL]
    if failing:
        outcome = Outcome.FAIL
        note = "" if head.outcome is Outcome.FAIL else (
            "fails on " + ", ".join(r.slice_label for r in failing) + "; all traffic: "
            + head.outcome.value)
    elif head.outcome is Outcome.NO_DATA:
        outcome, note = Outcome.NO_DATA, ""
    else:
        outcome, note = head.outcome, ""
    if outcome is not head.outcome or note:
        head = head.model_copy(update={
            "outcome": outcome, "reason": f"{note} ({head.reason})" if note else head.reason})
    return [head, *groups]


def _slice_result(
    spec: CanaryRuleSpec, stats: RuleStatistics, g: Guard, key: str, alpha: float
) -> GuardResult:
    dim, value = parse_slice(key)
    queue = value if dim == "queue" else None
    risk = value if dim == "risk" else None
    task = value if dim == "task" else None
    tol = g.tolerance_for(queue=queue, risk=risk) if dim in ("queue", "risk") else g.tolerance
    m = spec.analysis.min_samples_per_cohort
    target = mixture_target(spec)
    base = GuardResult(name=g.name, metric=g.metric.value, queue=queue, risk=risk, task=task,
                       outcome=Outcome.NO_DATA, tolerance=tol, relative=g.relative, alpha=alpha)
    if g.metric is Metric.PROMETHEUS:
        con = _prometheus(stats, g, tol, alpha, m)
        if isinstance(con, GuardResult):
            return con.model_copy(update={"tolerance": tol, "alpha": alpha})
    else:
        con = _sample_contrast(stats, g, key, tol, alpha, target)
    upd: dict[str, object] = {
        "n_baseline": con.n_b, "n_canary": con.n_c, "baseline": _num(con.est_b),
        "canary": _num(con.est_c), "test": con.test,
    }
    if con.cs is None:
        missing = [c for c, n in ((CAN, con.n_c), (BASE, con.n_b)) if n == 0]
        upd["reason"] = con.note or f"no {' or '.join(missing)} observations yet"
        return base.model_copy(update=upd)
    return base.model_copy(update=upd | _judge(g, con, tol, m))


def _sample_contrast(
    stats: RuleStatistics, g: Guard, key: str, tol: float, alpha: float, m: float
) -> _Contrast:
    k, thr = (1.0 + tol, 0.0) if g.relative else (1.0, tol)
    if g.metric is Metric.F1:
        return _f1_contrast(stats.confusion(g.metric, key, CAN),
                            stats.confusion(g.metric, key, BASE), k, thr, alpha, m)
    mc, mb = stats.moments(g.metric, key, CAN), stats.moments(g.metric, key, BASE)
    is_prop = g.metric in PROPORTIONS
    con = _Contrast(None, mc.n, mb.n, mc.mean if mc.n else None, mb.mean if mb.n else None,
                    k, thr, TEST_NAMES["proportion" if is_prop else "t"])
    if mc.n == 0 or mb.n == 0:
        return con
    if is_prop:
        con.cs = diff_proportions(mc.total, mc.n, mb.total, mb.n, k, alpha, m)
        con.fail_ready = bool(proportion_fail_ready(mc.n, mb.n, mb.total, k, thr))
    else:
        con.cs = diff_means_t(mc.mean, mc.variance, mc.n, mb.mean, mb.variance, mb.n, k, alpha, m)
    return con


def _f1_contrast(
    cc: Confusion, cb: Confusion, k: float, thr: float, alpha: float, m: float
) -> _Contrast:
    classes = sorted(set(cc.labels()) | set(cb.labels()))
    con = _Contrast(None, cc.n, cb.n, cc.macro_f1(classes), cb.macro_f1(classes), k, thr,
                    TEST_NAMES["f1"])
    if cc.n == 0 or cb.n == 0:
        return con
    con.cs = f1_difference(cc.matrix(classes), cb.matrix(classes), k, alpha, m,
                           cc.miss_counts(classes), cb.miss_counts(classes))
    return con


def _prometheus(
    stats: RuleStatistics, g: Guard, tol: float, alpha: float, m: int
) -> _Contrast | GuardResult:
    cnt = stats.counts.get(g.name)
    if cnt is None:
        return _Contrast(None, 0, 0, None, None, 1.0, tol, TEST_NAMES["rate"],
                         note="no counts from Prometheus yet")
    ec, eb = float(round(cnt.canary_events)), float(round(cnt.baseline_events))
    tc, tb = cnt.canary_total, cnt.baseline_total
    if tc is not None and tb is not None and not g.relative:
        n_c, n_b = round(tc), round(tb)
        rc = ec / tc if tc > 0 else None
        rb = eb / tb if tb > 0 else None
        con = _Contrast(None, n_c, n_b, rc, rb, 1.0, tol, TEST_NAMES["rate-diff"])
        if rc is None or rb is None:
            return con
        if rc <= 1.0 and rb <= 1.0:
            con.cs = diff_proportions(ec, tc, eb, tb, 1.0, alpha, m)
            con.fail_ready = bool(proportion_fail_ready(tc, tb, eb, 1.0, tol))
        else:  # more than one event per request: Poisson variance (rate per request)
            con.cs = diff_means_normal(rc, rc, tc, rb, rb, tb, 1.0, alpha, m)
        return con
    if not g.relative and tol != 0.0:
        return GuardResult(name=g.name, metric=g.metric.value, outcome=Outcome.ERROR,
                           test=TEST_NAMES["rate"],
                           reason="an absolute tolerance needs request totals "
                                  "(metrics.queries[].total); or set relative: true")
    share = tc / (tc + tb) if tc is not None and tb is not None and tc + tb > 0 else cnt.share
    with_totals = tc is not None and tb is not None
    n_c, n_b = (round(tc), round(tb)) if with_totals and tc is not None and tb is not None \
        else (int(ec), int(eb))
    rho0 = 1.0 + tol
    con = _Contrast(None, n_c, n_b, ec / tc if with_totals and tc else None,
                    eb / tb if with_totals and tb else None, 1.0, rho0, TEST_NAMES["rate"],
                    exact=True, min_n=with_totals)
    if share is None or not 0.0 < share < 1.0:
        con.note = "no traffic share for the canary"
        return con
    if ec + eb == 0:
        con.note = "no events in either cohort yet"
        cs = CS(np.asarray(np.nan), np.asarray(0.0), np.asarray(np.inf))
    else:
        cs = rate_ratio_cs(ec, eb, share, alpha, m)
    con.cs = cs
    con.delta = _num(cs.estimate - 1.0)
    con.lower = _num(cs.lower - 1.0)
    con.upper = _num(cs.upper - 1.0)
    return con


def _judge(g: Guard, con: _Contrast, tol: float, m: int) -> dict[str, object]:
    """Outcome, reported delta/bounds and the reason for one slice."""
    assert con.cs is not None
    est, lo, hi = (float(np.asarray(v)) for v in con.cs)
    hib = g.higher_is_better
    thr = con.threshold
    harmful = (hi < thr) if hib else (lo > thr)
    safe = (lo >= thr) if hib else (hi <= thr)
    burn = min(BURN_IN, m)
    enough_fail = con.exact or (con.n_c >= burn and con.n_b >= burn and con.fail_ready)
    enough_pass = (not con.min_n) or (con.n_c >= m and con.n_b >= m)
    # reported delta and bounds
    if con.delta is not None or con.lower is not None or con.upper is not None:
        delta, lower, upper = con.delta, con.lower, con.upper
    elif g.relative:
        eb = con.est_b
        scale = eb if eb is not None and eb > 0 else None
        delta = (con.est_c / scale - 1.0) if scale and con.est_c is not None else None
        lower = _num(lo / scale + tol) if scale else None
        upper = _num(hi / scale + tol) if scale else None
    else:
        delta, lower, upper = _num(est), _num(lo), _num(hi)
    rel = g.relative
    bound_name, bound = ("upper", upper) if hib else ("lower", lower)
    other_name, other = ("lower", lower) if hib else ("upper", upper)
    change = f"change {_fmt(_num(delta), rel)}"
    if harmful and enough_fail:
        outcome = Outcome.FAIL
        reason = (f"{change}, {bound_name} bound {_fmt(bound, rel)} beyond tolerance "
                  f"{_fmt(tol, rel)}")
    elif safe and enough_pass:
        outcome = Outcome.PASS
        reason = (f"{change}, {other_name} bound {_fmt(other, rel)} within tolerance "
                  f"{_fmt(tol, rel)}")
    else:
        outcome = Outcome.INCONCLUSIVE
        if harmful and not con.fail_ready:
            why = "beyond tolerance but fewer than 5 events expected at the boundary yet"
        elif harmful:
            why = (f"beyond tolerance but in burn-in (n canary {con.n_c}, "
                   f"baseline {con.n_b} < {burn})")
        elif safe:
            why = f"within tolerance but n canary {con.n_c}, baseline {con.n_b} < {m}"
        else:
            why = (f"bounds [{_fmt(lower, rel)}, {_fmt(upper, rel)}] straddle tolerance "
                   f"{_fmt(tol, rel)}")
        reason = f"{change}: {why}"
    if con.note:
        reason = f"{con.note}; {reason}"
    return {"outcome": outcome, "delta": _num(delta), "lower": lower, "upper": upper,
            "reason": reason}


def _decide(
    spec: CanaryRuleSpec, overall: dict[str, GuardResult], deadline_reached: bool
) -> tuple[Action, str]:
    fails = [r for r in overall.values() if r.outcome is Outcome.FAIL]
    if fails:
        return Action.ROLLBACK, "; ".join(f"guard {r.name!r} failed: {r.reason}" for r in fails)
    if all(r.outcome is Outcome.PASS for r in overall.values()):
        return Action.PROMOTE, f"all {len(overall)} guards pass"
    m = spec.analysis.min_samples_per_cohort
    waiting = []
    for r in overall.values():
        if r.outcome is Outcome.PASS:
            continue
        if r.outcome is Outcome.INCONCLUSIVE:
            waiting.append(f"{r.name} inconclusive (n canary {r.n_canary}/{m}, baseline "
                           f"{r.n_baseline}/{m})")
        elif r.outcome is Outcome.NO_DATA:
            waiting.append(f"{r.name} no data ({r.reason})")
        else:
            waiting.append(f"{r.name} error ({r.reason})")
    missing = "; ".join(waiting)
    if deadline_reached:
        if spec.analysis.on_inconclusive == "rollback":
            return Action.ROLLBACK, (f"deadline reached without a decision "
                                     f"(onInconclusive: rollback): {missing}")
        return Action.CONTINUE, f"deadline reached, holding: {missing}"
    return Action.CONTINUE, f"waiting: {missing}"
