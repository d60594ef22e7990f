"""Guard outcomes and the decision: promote, roll back, or continue.

Family-wise false rollback. A false rollback needs some test's one-sided bound to
exclude the truth, so a union bound over the tests controls it (:func:`alpha_budget`):

- the family is the guards plus every absolute floor or ceiling (``minimum`` /
  ``maximum``); guard ``g`` gets ``alpha·w_g/W`` with its ``alphaWeight`` ``w_g``
  (default 3 for trusted completion, 2 for task success, 1 otherwise: the guard the
  rollout exists for decides fastest; an equal split made it pay for every latency and
  cost guard), each floor or ceiling ``alpha/W`` (weight 1), ``W`` the sum of all weights;
- a guard on a rate or a mean of samples puts ``WINDOW_SHARE`` (1/5) of its alpha on its
  change detector (:mod:`.changes`: one Shiryaev–Roberts e-detector over every start
  time of the rollout, whose own accounting keeps it within that share); a quantile
  guard in a rule of S ≥ 2 steps puts the same share on per-step windows, ``1/(S−1)``
  for each of steps 2..S (the first step's window is the cumulative test itself);
- of the rest, an ungrouped guard spends all on the all-traffic slice; a grouped guard
  (any ``groupBy``, and the decision metrics which are always also tested per task kind)
  spends ``ALL_TRAFFIC_SHARE`` (2/3) on the all-traffic slice and splits the other third
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
- Each rate or mean guard is also watched by its change detector: the samples since
  every start time of the current step (its own start, and each analysis interval of
  it), tested at once. A regression that starts with the step (load-dependent) or in
  the middle of it is judged on the samples since it began, not diluted by the healthy
  history. Quantile guards keep the step window (the step's own samples, from the
  second step on). Neither can hold; they only roll back.
- The cumulative comparisons are stratified by step (:mod:`.strata`): each step's
  canary is compared with that step's baseline and the differences combined, so a
  base rate that drifts while the canary's share grows cannot bias them.

Mixture tuning: every CS is tuned to be tightest at :func:`mixture_target`
(``4 × minSamplesPerCohort``); PASS still needs ``minSamplesPerCohort`` per cohort.

Slice outcome (contrast ``θ = μ_c − k·μ_b``, see :mod:`.sequential`):

- NO_DATA when a cohort has no observation for the metric;
- FAIL when the bound on the harmful side lies beyond the tolerance, once each cohort
  has ``min(20, minSamplesPerCohort)`` observations (a burn-in for the plug-in
  variance; quantile and Prometheus event-count tests are exact and need none; a mean
  needs :data:`MEAN_BURN_IN`, 200, so its variance has seen a skewed metric's tail)
  and, for a proportion, the canary expects 5 events at the boundary
  (:func:`.sequential.proportion_fail_ready`);
- PASS when the other bound lies within the tolerance AND both cohorts have
  ``minSamplesPerCohort`` observations;
- INCONCLUSIVE otherwise.

For a relative tolerance r the test uses ``k = 1 + r`` against 0; the reported delta
is ``canary/baseline − 1`` and its bounds are the contrast's bounds divided by the
baseline estimate plus r, so comparing them with r reproduces the test exactly.

Guard outcome: FAIL if any slice, floor or ceiling fails; otherwise the all-traffic
slice's outcome (PASS, INCONCLUSIVE or NO_DATA), held at INCONCLUSIVE while a floor or
ceiling has not passed; ERROR when the caller reports the guard's source failed.

Group slices by default can only roll back, never hold: a queue's slice gets a small
share of alpha and few samples, so requiring every queue to PASS would make promotion of
a healthy canary take many times longer than the all-traffic test (or never happen for
small queues), while a real regression concentrated in one queue still crosses that
queue's bound and rolls back. What a per-queue guard buys is exactly that: a harmful
change in one queue is caught even when the overall rate looks normal.

**Required slices** (``mustPass``): a rule may name slices (``risk=high``) or whole
dimensions that must PASS — show non-inferiority at the alpha the slice is allotted —
before promotion. This changes *when* we promote, not how often we falsely roll back:
the harmful-side bounds and their alpha are untouched, so the family-wise false-rollback
guarantee is unchanged. On the other side it only adds conditions to promotion, so the
probability of promoting a canary that is beyond tolerance on a required slice is at
most that slice's alpha (without the requirement it was unbounded), and for every other
regression it can only fall. The price is time: a slice with few samples and a small
alpha share needs many samples to pass; every inconclusive entry carries
``needed_canary`` / ``needed_baseline``, the extra samples that would make it pass if
the current estimate and variance held (the CS recomputed at scaled counts).

Traffic mix (:mod:`.mix`): a mismatch of the cohorts' mix, or of the canary's share
beyond its band, holds promotion; it never rolls back (rollback on a failing guard still
happens: it is the safe direction). Its alpha is its own (``trafficMix.alpha``).

The all-traffic entry of each guard in ``Decision.guards`` carries the guard's overall
outcome (its reason says when a slice or floor decided it); slice, floor and mix entries
carry their own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
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
    guard_dimensions,
    parse_duration,
)

from . import classification as clf
from .accumulator import ALL, DECISIONS, HIST, RuleStatistics, measure_of, parse_slice
from .changes import (
    detector_log_r,
    horizon,
    mean_log_e,
    proportion_log_e,
    slot_weight,
    step_start_weight,
    total_weight,
)
from .mix import mix_check, share_check
from .onesample import mean_cs, proportion_cs, proportion_normal_cs
from .quantiles import combine_quantile_bounds, histogram_quantile_cs, quantile_difference
from .sequential import (
    CS,
    diff_means_normal,
    diff_proportions,
    proportion_fail_ready,
    rate_ratio_cs,
)
from .stats import FloatArray, Moments
from .strata import proportions_log_e, stratified_means, stratified_proportions

BURN_IN = 20
MEAN_BURN_IN = 200
"""Observations per cohort before a mean may FAIL. The plug-in variance of a skewed
metric needs enough samples to see its tail: with 10% cache hits at zero latency, 20
canary samples miss them all one time in eight, and such a cohort's tiny variance made
the comparison fail a canary exactly at the tolerance in 15% of runs at alpha 5% (2.4%
with 200; tests/unit/test_analysis_simulation.py)."""
PROPORTIONS = frozenset(
    {Metric.TRUSTED_COMPLETION, Metric.TASK_SUCCESS, Metric.FALLBACK_RATE,
     Metric.POLICY_FAILURE_RATE}
)
TEST_NAMES = {
    "proportion": "normal-mixture CS, Bernoulli score (mSPRT), stratified by step",
    "mean": "normal-mixture CS, plug-in variance, stratified by step",
    "change": "e-detector: Shiryaev-Roberts over start times (Shin et al. 2023)",
    "f1": "normal-mixture CS, per-task delta method",
    "rate": "beta-binomial mixture, event-rate ratio",
    "rate-diff": "normal-mixture CS, event rate per request",
    "quantile": "quantile CS, time-uniform rank bound (Howard & Ramdas 2022), log-histogram",
    "binomial": "beta-binomial mixture CS (one sample)",
    "t1": "anytime-valid one-sample t-test CS",
    "f1-1": "normal-mixture CS, delta method (one sample)",
    "mix": "Dirichlet-multinomial mixture e-value (Lindon & Malek 2022)",
    "share": "beta-binomial mixture CS on the canary share",
}
BASE = Cohort.BASELINE.value
CAN = Cohort.CANARY.value
MIX = "traffic-mix"
NEED_GRID = np.geomspace(1.0, 1e6, 37)
"""Scale factors tried for the "samples needed" estimate (47% apart; the answer is
interpolated in log-scale between the two that bracket it)."""

__all__ = ["BURN_IN", "AlphaShare", "alpha_budget", "alpha_split", "bound_alpha", "evaluate",
           "family_size", "group_slots", "guard_alpha_weight", "guard_dimensions",
           "guard_outcomes", "has_window", "mixture_target", "step_min_samples",
           "step_shortfall", "traffic_checks"]


DEFAULT_ALPHA_WEIGHTS = {Metric.TRUSTED_COMPLETION: 3.0, Metric.TASK_SUCCESS: 2.0}
BOUND_WEIGHT = 1.0
"""Alpha weight of one floor or ceiling (one more slot of the family)."""
WINDOW_SHARE = 0.2
ALL_TRAFFIC_SHARE = 2.0 / 3.0
TARGET_FACTOR = 4.0


@dataclass(frozen=True)
class AlphaShare:
    """Alpha of each test of one guard (see the module docstring)."""

    all: float  # the all-traffic slice, all of the revision's evidence
    slice: float  # each group slot (queue / risk / task)
    window: float  # each step window (steps 2..S), all traffic (quantile guards)
    bound: float = 0.0  # each floor or ceiling of the guard
    change: float = 0.0  # the change detector, over the whole rollout (moment guards)


def guard_alpha_weight(guard: Guard) -> float:
    """The guard's ``alphaWeight``, or its metric's default."""
    if guard.alpha_weight is not None:
        return guard.alpha_weight
    return DEFAULT_ALPHA_WEIGHTS.get(guard.metric, 1.0)


def has_window(guard: Guard) -> bool:
    """Guards tested on each step's own samples (sample metrics other than the decision
    metrics, whose per-task matrices are not windowed)."""
    return guard.metric is not Metric.PROMETHEUS and not guard.metric.from_decisions


def has_detector(guard: Guard) -> bool:
    """Guards watched by the change detector: the moment measures (rates and means);
    quantile guards keep the per-step window test."""
    return has_window(guard) and not measure_of(guard).endswith(HIST)


def group_slots(spec: CanaryRuleSpec, guard: Guard) -> int:
    """Slots the group part of a guard's alpha is split over (fixed by the rule)."""
    a = spec.analysis
    return sum(min(len(Risk), a.max_groups + 1) if d == "risk" else a.max_groups + 1
               for d in guard_dimensions(guard))


def family_size(spec: CanaryRuleSpec) -> float:
    """The total alpha weight: every guard's weight plus one per floor or ceiling."""
    return sum(guard_alpha_weight(g) + BOUND_WEIGHT * len(g.bounds)
               for g in spec.analysis.guards)


def bound_alpha(spec: CanaryRuleSpec) -> float:
    """The alpha of one floor or ceiling (one slot of the family)."""
    return spec.analysis.alpha * BOUND_WEIGHT / family_size(spec)


def alpha_budget(spec: CanaryRuleSpec) -> dict[str, AlphaShare]:
    """Per guard: alpha of its all-traffic test, of each group slot, of each step window,
    and of each of its floors or ceilings."""
    a = spec.analysis
    total_w = family_size(spec)
    windows = len(spec.steps) - 1
    bound = bound_alpha(spec)
    out: dict[str, AlphaShare] = {}
    for g in a.guards:
        per_guard = a.alpha * guard_alpha_weight(g) / total_w
        change = WINDOW_SHARE * per_guard if has_detector(g) else 0.0
        window_total = (WINDOW_SHARE * per_guard
                        if windows > 0 and has_window(g) and not change else 0.0)
        rest = per_guard - window_total - change
        window = window_total / windows if window_total else 0.0
        slots = group_slots(spec, g)
        if not slots:
            out[g.name] = AlphaShare(rest, 0.0, window, bound, change)
        else:
            out[g.name] = AlphaShare(rest * ALL_TRAFFIC_SHARE,
                                     rest * (1.0 - ALL_TRAFFIC_SHARE) / slots, window, bound,
                                     change)
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
    """Inputs for judging one slice (or one floor)."""

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
    burn: int | None = None  # observations per cohort before a FAIL (default BURN_IN)
    verdict: tuple[bool, bool] | None = None  # (harmful, safe) from tests, not from bounds
    delta: float | None = None
    lower: float | None = None
    upper: float | None = None
    note: str = ""
    cs_at: Callable[[FloatArray], CS] | None = None  # the CS with counts scaled
    one_sample: bool = False
    clipped_c: int = 0
    clipped_b: int = 0


def evaluate(
    spec: CanaryRuleSpec,
    stats: RuleStatistics,
    *,
    at: datetime | None = None,
    deadline_reached: bool = False,
    errors: Mapping[str, str] | None = None,
    expected_share: float | None = None,
    estimate_needed: bool = True,
) -> Decision:
    """Evaluate every guard on the current statistics and decide.

    ``errors`` maps guard names whose source failed to a message (outcome ERROR).
    ``expected_share`` is the canary's expected share of samples at the current step
    (canary pods / all pods); without it the share check is skipped (the mix check
    needs no share). ``estimate_needed=False`` skips the samples-needed estimates and
    the confidence bounds of rate comparisons, deciding those by their tests at the
    tolerance (simulations that only want the decision; the decision is the same).
    Pure: same inputs, same decision.
    """
    errors = dict(errors or {})
    budget = alpha_budget(spec)
    window = _window(spec, stats)
    results: list[GuardResult] = []
    overall: dict[str, GuardResult] = {}
    required: list[GuardResult] = []
    for g in spec.analysis.guards:
        share = budget[g.name]
        rows = _evaluate_guard(spec, stats, g, share, errors.get(g.name), estimate_needed)
        if errors.get(g.name) is None:
            if window is not None and share.window > 0:
                rows = _with_window(rows, _window_result(spec, window, g, share.window,
                                                         stats.step))
            if share.change > 0 and stats.step is not None:
                rows = _with_window(rows, change_result(spec, stats, g, share.change))
        overall[g.name] = rows[0]
        required.extend(r for r in rows[1:] if r.required)
        results.extend(rows)
    checks = traffic_checks(spec, stats, expected_share)
    results.extend(checks)
    action, reason = _decide(spec, overall, required, checks, deadline_reached)
    short = step_shortfall(spec, stats) if action is Action.PROMOTE else None
    if short is not None:
        action, reason = Action.CONTINUE, f"{reason}; waiting: {short}"
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
    res = _slice_result(spec, window, g, ALL, alpha, needed=False)
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


def change_result(spec: CanaryRuleSpec, stats: RuleStatistics, g: Guard,
                  alpha: float) -> GuardResult:
    """The change detector's row for a moment guard in the current step (see
    :mod:`.changes`): FAIL when ``R = Σ_j w_j·Λ_j ≥ W/α`` over the start times j."""
    a = spec.analysis
    k_looks = horizon(parse_duration(a.max_duration), parse_duration(a.interval))
    total = total_weight(k_looks, len(spec.steps))
    step = stats.step if stats.step is not None else 0
    terms = _change_terms(stats, g, step, k_looks)
    base = GuardResult(name=g.name, metric=g.metric.value, outcome=Outcome.PASS,
                       step=step + 1, check="change", tolerance=g.tolerance,
                       relative=g.relative, alpha=alpha, statistic=g.stat,
                       test=TEST_NAMES["change"])
    log_e = _change_log_e(spec, g, terms, alpha / total)
    if log_e is None:
        return base.model_copy(update={"reason": "too few samples in this step to test "
                                                 "for a change yet"})
    weights = np.array([w for _, w, _, _ in terms])
    log_r = float(detector_log_r(log_e, weights, np.isfinite(log_e)))
    limit = math.log(total / alpha)
    with np.errstate(divide="ignore"):
        best = int(np.argmax(log_e + np.log(weights)))
    since, _, c, b = terms[best]
    what = "the step's start" if since == 0 else f"interval {since + 1} of the step"
    if log_r >= limit:
        return base.model_copy(update={
            "outcome": Outcome.FAIL, "n_canary": c.n, "n_baseline": b.n,
            "canary": c.mean, "baseline": b.mean,
            "reason": f"change since {what}: log R {log_r:.2f} ≥ log(W/α) {limit:.2f} "
                      f"(canary {c.mean:.4g} vs baseline {b.mean:.4g} on {c.n} canary and "
                      f"{b.n} baseline samples)"})
    return base.model_copy(update={
        "n_canary": c.n, "n_baseline": b.n,
        "reason": f"no change detected (log R {log_r:.2f} < {limit:.2f}; "
                  f"{len(terms)} start times)"})


def _change_log_e(spec: CanaryRuleSpec, g: Guard,
                  terms: list[tuple[int, float, Moments, Moments]],
                  tune: float) -> FloatArray | None:
    """log Λ per start time (−inf for a start past which too few samples came: burn-in,
    expected events, and :data:`MEAN_BURN_IN` for a mean); None when no start is ready."""
    if not terms:
        return None
    a = spec.analysis
    k, thr = (1.0 + g.tolerance, 0.0) if g.relative else (1.0, g.tolerance)
    c_cols = {f: np.array([float(getattr(t[2], f)) for t in terms])
              for f in ("total", "n_eff", "mean", "variance", "n")}
    b_cols = {f: np.array([float(getattr(t[3], f)) for t in terms])
              for f in ("total", "n_eff", "mean", "variance", "n")}
    burn = min(BURN_IN, a.min_samples_per_cohort)
    ready = (c_cols["n"] >= burn) & (b_cols["n"] >= burn)
    prop = g.metric in PROPORTIONS
    with np.errstate(divide="ignore", invalid="ignore"):
        if prop:
            ready &= proportion_fail_ready(c_cols["n_eff"], b_cols["n_eff"], b_cols["total"],
                                           k, thr)
        else:
            ready &= (np.isfinite(c_cols["variance"]) & np.isfinite(b_cols["variance"])
                      & (np.minimum(c_cols["n"], b_cols["n"]) >= MEAN_BURN_IN))
        if not ready.any():
            return None
        c = {f: v[ready] for f, v in c_cols.items()}
        b = {f: v[ready] for f, v in b_cols.items()}
        upper = not g.higher_is_better
        if prop:
            got = proportion_log_e(c["total"], c["n_eff"], b["total"], b["n_eff"], k, thr,
                                   tune, mixture_target(spec), upper=upper)
        else:
            got = mean_log_e(c["mean"], c["variance"], c["n_eff"], b["mean"], b["variance"],
                             b["n_eff"], k, thr, tune, mixture_target(spec), upper=upper)
    out = np.full(len(terms), -np.inf)
    out[ready] = got
    return out


def _change_terms(stats: RuleStatistics, g: Guard, step: int,
                  k_looks: int) -> list[tuple[int, float, Moments, Moments]]:
    """(bucket, weight, canary, baseline) per start time of the current step: the step's
    own start (all of its samples), then each kept later bucket (its samples onward)."""
    measure = measure_of(g)
    out: list[tuple[int, float, Moments, Moments]] = []
    start_c, start_b = stats.window_moments(measure, CAN), stats.window_moments(measure, BASE)
    if start_c.n and start_b.n:
        out.append((0, step_start_weight(k_looks, len(stats.spec.steps)) if step > 0 else 0.0,
                    start_c, start_b))
    run_c, run_b = Moments(), Moments()
    later = []
    for bucket, slot, c, b in reversed(stats.change_buckets(measure)):
        run_c, run_b = run_c.merge(c), run_b.merge(b)
        if bucket > 0 and run_c.n and run_b.n:
            later.append((bucket, slot_weight(slot, k_looks), run_c, run_b))
    return out + later[::-1]


def guard_outcomes(decision: Decision) -> dict[str, Outcome]:
    """Overall outcome per guard (the all-traffic entries of a decision)."""
    out: dict[str, Outcome] = {}
    for r in decision.guards:
        if r.check in ("mix", "share"):
            continue
        out.setdefault(r.name, r.outcome)
    return out


def _evaluate_guard(
    spec: CanaryRuleSpec,
    stats: RuleStatistics,
    g: Guard,
    share: AlphaShare,
    error: str | None,
    estimate_needed: bool = True,
) -> list[GuardResult]:
    if error is not None:
        return [GuardResult(name=g.name, metric=g.metric.value, outcome=Outcome.ERROR,
                            tolerance=g.tolerance, relative=g.relative, alpha=share.all,
                            reason=f"source failed: {error}")]
    if g.metric is Metric.PROMETHEUS:
        return [_slice_result(spec, stats, g, ALL, share.all)]
    keys = stats.slices(measure_of(g), guard_dimensions(g))
    rows = [_slice_result(spec, stats, g, key, share.all if key == ALL else share.slice,
                          needed=estimate_needed and (key == ALL or _required_key(g, key)),
                          bounds=estimate_needed)
            for key in keys]
    rows = _mark_required(g, rows, share.slice)
    bounds = [_bound_result(spec, stats, g, kind, value, share.bound, estimate_needed)
              for kind, value in g.bounds]
    return [_combine(rows[0], rows[1:], bounds), *rows[1:], *bounds]


def _combine(head: GuardResult, groups: list[GuardResult],
             bounds: list[GuardResult]) -> GuardResult:
    """The guard's overall outcome on its all-traffic entry."""
    failing = [r for r in [head, *groups, *bounds] if r.outcome is Outcome.FAIL]
    note = ""
    if failing:
        outcome = Outcome.FAIL
        if head.outcome is not Outcome.FAIL:
            note = ("fails on " + ", ".join(r.slice_label for r in failing)
                    + "; all traffic: " + head.outcome.value)
        elif len(failing) > 1:  # name every failing slice, not only all traffic
            return head.model_copy(update={"reason": head.reason + "; also fails on "
                                           + ", ".join(r.slice_label for r in failing[1:])})
    elif head.outcome is Outcome.PASS and any(b.outcome is not Outcome.PASS for b in bounds):
        outcome = Outcome.INCONCLUSIVE
        note = "passes, but " + ", ".join(f"{b.check} {b.outcome.value}" for b in bounds
                                          if b.outcome is not Outcome.PASS)
    else:
        outcome = head.outcome
    if outcome is head.outcome and not note:
        return head
    return head.model_copy(update={
        "outcome": outcome, "reason": f"{note} ({head.reason})" if note else head.reason})


def _selected(selector: str, r: GuardResult) -> bool:
    dim, eq, value = selector.partition("=")
    have = {"queue": r.queue, "risk": r.risk, "task": r.task}.get(dim)
    return have is not None and (not eq or have == value)


def _required_key(g: Guard, key: str) -> bool:
    dim, _ = parse_slice(key)
    return any(sel in (dim, key) for sel in g.must_pass)


def _mark_required(g: Guard, rows: list[GuardResult], alpha: float) -> list[GuardResult]:
    """Flag the slices named in ``mustPass``; a named slice with no data yet is added as
    NO_DATA so that it visibly holds promotion."""
    if not g.must_pass:
        return rows
    out = [r.model_copy(update={"required": True})
           if any(_selected(sel, r) for sel in g.must_pass) else r for r in rows]
    for sel in g.must_pass:
        dim, eq, value = sel.partition("=")
        if eq and not any(_selected(sel, r) for r in rows):
            tol = g.tolerance_for(queue=value if dim == "queue" else None,
                                  risk=value if dim == "risk" else None)
            out.append(GuardResult(name=g.name, metric=g.metric.value, outcome=Outcome.NO_DATA,
                                   required=True, tolerance=tol, relative=g.relative,
                                   alpha=alpha, statistic=g.stat, reason="no observations yet",
                                   **{dim: value}))
    return out


def _slice_result(
    spec: CanaryRuleSpec, stats: RuleStatistics, g: Guard, key: str, alpha: float,
    needed: bool = True, bounds: bool = True,
) -> GuardResult:
    """One slice's row; ``needed``: also estimate the samples it needs to pass (only
    where that can hold promotion: all traffic and required slices); ``bounds``: report
    the confidence bounds of a rate comparison (else decide it by its tests at the
    tolerance alone: the same outcome, cheaper, for simulations)."""
    dim, value = parse_slice(key)
    queue = value if dim == "queue" else None
    risk = value if dim == "risk" else None
    task = value if dim == "task" else None
    tol = g.tolerance_for(queue=queue, risk=risk) if dim in ("queue", "risk") else g.tolerance
    m = spec.analysis.min_samples_per_cohort
    base = GuardResult(name=g.name, metric=g.metric.value, queue=queue, risk=risk, task=task,
                       outcome=Outcome.NO_DATA, tolerance=tol, relative=g.relative, alpha=alpha,
                       statistic=None if g.metric is Metric.PROMETHEUS else g.stat)
    if g.metric is Metric.PROMETHEUS:
        con = _prometheus(stats, g, tol, alpha, mixture_target(spec))
        if isinstance(con, GuardResult):
            return con.model_copy(update={"tolerance": tol, "alpha": alpha})
    else:
        con = _sample_contrast(stats, g, key, tol, alpha, mixture_target(spec), bounds)
    return base.model_copy(update=_result_fields(con, tol, m, g.higher_is_better, g.relative,
                                                 needed=needed))


def _result_fields(con: _Contrast, tol: float, m: int, hib: bool, relative: bool,
                   limit: str = "tolerance", needed: bool = True) -> dict[str, object]:
    upd: dict[str, object] = {
        "n_baseline": con.n_b, "n_canary": con.n_c, "baseline": _num(con.est_b),
        "canary": _num(con.est_c), "test": con.test, "clipped_canary": con.clipped_c,
        "clipped_baseline": con.clipped_b,
    }
    if con.cs is None:
        missing = [c for c, n in ((CAN, con.n_c), (BASE, con.n_b)) if n == 0]
        upd["reason"] = con.note or f"no {' or '.join(missing)} observations yet"
        return upd
    upd |= _classify_slice(con, tol, m, hib=hib, relative=relative, limit=limit)
    if needed and upd["outcome"] is Outcome.INCONCLUSIVE:
        upd |= _needed(con, m, hib)
    return upd


def _sample_contrast(
    stats: RuleStatistics, g: Guard, key: str, tol: float, alpha: float, m: float,
    bounds: bool = True,
) -> _Contrast:
    """One slice's contrast; ``m`` is where the mixtures are tuned (not the PASS minimum)."""
    k, thr = (1.0 + tol, 0.0) if g.relative else (1.0, tol)
    measure = measure_of(g)
    if measure == DECISIONS:
        return _class_contrast(stats, g, key, k, thr, alpha, m)
    if measure.endswith(HIST):
        return _quantile_contrast(stats, g, measure, key, k, thr, alpha, m)
    mc, mb = stats.moments(measure, key, CAN), stats.moments(measure, key, BASE)
    is_prop = g.metric in PROPORTIONS
    con = _Contrast(None, mc.n, mb.n, mc.mean if mc.n else None, mb.mean if mb.n else None,
                    k, thr, TEST_NAMES["proportion" if is_prop else "mean"],
                    clipped_c=mc.clipped, clipped_b=mb.clipped)
    strata = stats.strata_moments(measure, key)
    if mc.n == 0 or mb.n == 0 or not strata:
        return con
    if len(strata) > 1:
        con.note = f"stratified by step ({len(strata)} steps)"
    if is_prop:
        xc, nc, xb, nb = (np.array([[getattr(p[i], a)] for p in strata])
                          for i, a in ((0, "total"), (0, "n_eff"), (1, "total"), (1, "n_eff")))
        con.cs_at = lambda f: stratified_proportions(xc * f, nc * f, xb * f, nb * f, k, alpha,
                                                     m)
        con.fail_ready = bool(proportion_fail_ready(mc.n_eff, mb.n_eff, mb.total, k, thr))
        if bounds:
            con.cs = _scalar(stratified_proportions(xc, nc, xb, nb, k, alpha, m))
            return con
        # the CS excludes the tolerance on a side iff that side's test at it rejects
        limit = math.log(1.0 / alpha)
        above, below = (
            float(np.asarray(proportions_log_e(xc, nc, xb, nb, k, thr, alpha, m, upper=u))
                  .reshape(-1)[0]) >= limit for u in (True, False))
        con.verdict = (below, above) if g.higher_is_better else (above, below)
        nan = np.asarray(np.nan)
        con.cs = CS(np.asarray(mc.mean - k * mb.mean), nan, nan)
        return con
    cols = [np.array([[float(getattr(p[i], a))] for p in strata])
            for i in (0, 1) for a in ("mean", "variance", "n_eff")]
    if not all(np.isfinite(c).all() for c in cols):
        con.note = ("values too large to average (set analysis.plausibilityCap, or compare "
                    "a quantile)")
        con.cs = CS(np.asarray(np.nan), np.asarray(-np.inf), np.asarray(np.inf))
        return con
    mean_c, var_c, n_c, mean_b, var_b, n_b = cols
    con.burn = MEAN_BURN_IN
    con.cs_at = lambda f: stratified_means(mean_c, var_c, n_c * f, mean_b, var_b, n_b * f, k,
                                           alpha, m)
    con.cs = _scalar(stratified_means(mean_c, var_c, n_c, mean_b, var_b, n_b, k, alpha, m))
    return con


def _scalar(cs: CS) -> CS:
    """A CS computed on a one-element axis, as 0-d arrays."""
    return CS(*(np.asarray(np.asarray(v).reshape(-1)[0]) for v in cs))


def _class_contrast(stats: RuleStatistics, g: Guard, key: str, k: float, thr: float,
                    alpha: float, m: float) -> _Contrast:
    tc, tb = stats.task_confusions(key, CAN), stats.task_confusions(key, BASE)
    con = _Contrast(None, tc.n, tb.n, None, None, k, thr, TEST_NAMES["f1"])
    both = clf.estimates({CAN: tc, BASE: tb}, g) if tc.n and tb.n else None
    if both is None:
        one_c, one_b = clf.estimates({CAN: tc}, g), clf.estimates({BASE: tb}, g)
        con.est_c = one_c[CAN].value if one_c else None
        con.est_b = one_b[BASE].value if one_b else None
        if tc.n and tb.n:
            what = f"class {g.label!r}" if g.label else "a task"
            con.note = f"no {what} with decisions in both cohorts yet"
        return con
    ec, eb = both[CAN], both[BASE]
    con.est_c, con.est_b = ec.value, eb.value
    con.cs_at = lambda f: clf.difference_cs(ec, eb, k, alpha, m, f)
    con.cs = clf.difference_cs(ec, eb, k, alpha, m)
    return con


def _quantile_contrast(stats: RuleStatistics, g: Guard, measure: str, key: str, k: float,
                       thr: float, alpha: float, m: float) -> _Contrast:
    hc, hb = stats.histogram(measure, key, CAN), stats.histogram(measure, key, BASE)
    p = g.quantile
    assert p is not None
    con = _Contrast(None, hc.n, hb.n, None, None, k, thr, TEST_NAMES["quantile"], exact=True)
    c = histogram_quantile_cs(hc, p, alpha / 2.0, m) if hc.n else None
    b = histogram_quantile_cs(hb, p, alpha / 2.0, m) if hb.n else None
    con.est_c = None if c is None else float(c.estimate)
    con.est_b = None if b is None else float(b.estimate)
    if c is None or b is None:
        return con
    con.cs_at = lambda f: quantile_difference(hc, hb, p, k, alpha, m, f)
    con.cs = combine_quantile_bounds(c, b, k)
    if g.relative:
        with np.errstate(divide="ignore", invalid="ignore"):
            con.delta = _num(c.estimate / b.estimate - 1.0)
            con.lower = _num(c.lower / b.upper - 1.0)
            con.upper = _num(c.upper / b.lower - 1.0) if float(b.lower) > 0 else None
    return con


def _prometheus(
    stats: RuleStatistics, g: Guard, tol: float, alpha: float, m: float
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


# ---- absolute floors and ceilings -----------------------------------------------------

def _one_sample(stats: RuleStatistics, g: Guard, alpha: float, m: float,
                value: float) -> _Contrast:
    """The canary's own value with one-sided bounds at ``alpha`` (all traffic)."""
    measure = measure_of(g)
    con = _Contrast(None, 0, 0, None, None, 1.0, value, "", one_sample=True)
    if measure == DECISIONS:
        tc = stats.task_confusions(ALL, CAN)
        est = clf.estimates({CAN: tc}, g)
        con.n_c, con.test = tc.n, TEST_NAMES["f1-1"]
        if est is not None:
            e = est[CAN]
            con.cs_at = lambda f: clf.one_sample_cs(e, alpha, m, f)
    elif measure.endswith(HIST):
        h, p = stats.histogram(measure, ALL, CAN), g.quantile
        assert p is not None
        con.n_c, con.test, con.exact = h.n, TEST_NAMES["quantile"], True
        if h.n:
            con.cs_at = lambda f: histogram_quantile_cs(h, p, alpha, m, f)
    else:
        mc = stats.moments(measure, ALL, CAN)
        con.n_c, con.clipped_c = mc.n, mc.clipped
        if g.metric in PROPORTIONS:
            con.test, con.exact = TEST_NAMES["binomial"], not mc.weighted
            x, n = mc.total, mc.n_eff
            if mc.n:
                con.cs = proportion_cs(x, n, alpha, m, value)
            # the estimate of samples needed uses the normal approximation (cheaper)
            con.cs_at = lambda f: proportion_normal_cs(x, n, alpha, m, f)
        else:
            con.test = TEST_NAMES["t1"]
            mean, var, n = mc.mean, mc.variance, mc.n_eff
            con.cs_at = lambda f: mean_cs(mean, var, n, alpha, m, f)
        if mc.n == 0:
            con.cs_at = None
    if con.cs_at is not None and con.cs is None:
        con.cs = con.cs_at(np.asarray(1.0))
    if con.cs is not None:
        con.est_c = _num(con.cs.estimate)
    return con


def _bound_result(spec: CanaryRuleSpec, stats: RuleStatistics, g: Guard, kind: str,
                  value: float, alpha: float, estimate_needed: bool = True) -> GuardResult:
    m = spec.analysis.min_samples_per_cohort
    con = _one_sample(stats, g, alpha, mixture_target(spec), value)
    base = GuardResult(name=g.name, metric=g.metric.value, outcome=Outcome.NO_DATA,
                       check=kind, tolerance=value, alpha=alpha, statistic=g.stat)
    upd = _result_fields(con, value, m, kind == "minimum", False, limit=kind,
                         needed=estimate_needed)
    upd["n_baseline"], upd["baseline"] = 0, None
    return base.model_copy(update=upd)


# ---- classifying one slice ------------------------------------------------------------

def _classify_slice(con: _Contrast, tol: float, m: int, *, hib: bool, relative: bool,
                    limit: str = "tolerance") -> dict[str, object]:
    """Outcome, reported delta/bounds and the reason for one slice (or floor)."""
    assert con.cs is not None
    est, lo, hi = (float(np.asarray(v)) for v in con.cs)
    thr = con.threshold
    harmful = (hi < thr) if hib else (lo > thr)
    safe = (lo >= thr) if hib else (hi <= thr)
    if con.verdict is not None:
        harmful, safe = con.verdict
    burn = con.burn if con.burn is not None else min(BURN_IN, m)
    n_b = con.n_c if con.one_sample else con.n_b
    enough_fail = con.exact or (con.n_c >= burn and n_b >= burn and con.fail_ready)
    enough_pass = (not con.min_n) or (con.n_c >= m and n_b >= m)
    delta, lower, upper = _reported(con, est, lo, hi, tol, relative)
    bound_name, bound = ("upper", upper) if hib else ("lower", lower)
    other_name, other = ("lower", lower) if hib else ("upper", upper)
    what = "canary" if con.one_sample else "change"
    change = f"{what} {_fmt(_num(delta), relative)}"
    if harmful and enough_fail:
        outcome = Outcome.FAIL
        reason = (f"{change}, {bound_name} bound {_fmt(bound, relative)} beyond {limit} "
                  f"{_fmt(tol, relative)}")
    elif safe and enough_pass:
        outcome = Outcome.PASS
        reason = (f"{change}, {other_name} bound {_fmt(other, relative)} within {limit} "
                  f"{_fmt(tol, relative)}")
    else:
        outcome = Outcome.INCONCLUSIVE
        counts = (f"n canary {con.n_c}" if con.one_sample
                  else f"n canary {con.n_c}, baseline {con.n_b}")
        if harmful and not con.fail_ready:
            why = f"beyond {limit} but fewer than 5 events expected at the boundary yet"
        elif harmful:
            why = f"beyond {limit} but in burn-in ({counts} < {burn})"
        elif safe:
            why = f"within {limit} but {counts} < {m}"
        else:
            why = (f"bounds [{_fmt(lower, relative)}, {_fmt(upper, relative)}] straddle {limit} "
                   f"{_fmt(tol, relative)}")
        reason = f"{change}: {why}"
    if con.note:
        reason = f"{con.note}; {reason}"
    return {"outcome": outcome, "delta": None if con.one_sample else _num(delta),
            "lower": lower, "upper": upper, "reason": reason}


def _reported(con: _Contrast, est: float, lo: float, hi: float, tol: float,
              relative: bool) -> tuple[float | None, float | None, float | None]:
    """Delta and bounds as shown: relative ones as fractions of the baseline."""
    if con.delta is not None or con.lower is not None or con.upper is not None:
        return con.delta, con.lower, con.upper
    if relative:
        eb = con.est_b
        scale = eb if eb is not None and eb > 0 else None
        delta = (con.est_c / scale - 1.0) if scale and con.est_c is not None else None
        return (delta, _num(lo / scale + tol) if scale else None,
                _num(hi / scale + tol) if scale else None)
    return _num(est), _num(lo), _num(hi)


def _needed(con: _Contrast, m: int, hib: bool) -> dict[str, object]:
    """Extra samples per cohort after which the slice would pass, if the current
    estimate and variance held (the CS recomputed at scaled counts; None when no
    amount of data would do, e.g. the estimate lies beyond the tolerance)."""
    if con.cs_at is None:
        return {}
    with np.errstate(all="ignore"):
        cs = con.cs_at(NEED_GRID)
    bound = np.broadcast_to(np.asarray(cs.lower if hib else cs.upper, float), NEED_GRID.shape)
    margin = (bound - con.threshold) if hib else (con.threshold - bound)
    safe = margin >= 0
    if not safe.any():
        return {"needed_canary": None, "needed_baseline": None}
    i = int(np.argmax(safe))
    f = float(NEED_GRID[i])
    if i > 0 and np.isfinite(margin[i - 1]) and margin[i] > margin[i - 1]:
        lo, hi = math.log(NEED_GRID[i - 1]), math.log(f)
        w = float(-margin[i - 1] / (margin[i] - margin[i - 1]))
        f = math.exp(lo + w * (hi - lo))

    def more(n: int) -> int:
        return max(math.ceil(f * n), m if con.min_n else 0) - n

    return {"needed_canary": max(more(con.n_c), 0),
            "needed_baseline": None if con.one_sample else max(more(con.n_b), 0)}


# ---- traffic mix ---------------------------------------------------------------------------

def traffic_checks(spec: CanaryRuleSpec, stats: RuleStatistics,
                   expected_share: float | None) -> list[GuardResult]:
    """Rows of the traffic-mix check (see :mod:`.mix`); a mismatch is INCONCLUSIVE
    ("held"), never FAIL."""
    mix = spec.analysis.traffic_mix
    if not mix.enabled:
        return []
    dims = [d for d in ("queue", "risk", "task") if d in mix.dimensions]
    share_on = expected_share is not None and 0.0 < expected_share < 1.0
    alpha = mix.alpha / ((len(dims) + int(share_on)) * len(spec.steps))
    rows = []
    for dim in dims:
        counts = stats.mix_counts(dim)
        if len(counts) < 2:
            continue
        res = mix_check(dim, counts, alpha)
        nb, nc = sum(b for b, _ in counts.values()), sum(c for _, c in counts.values())
        if res.mismatch:
            outcome, reason = Outcome.INCONCLUSIVE, f"mismatch: {res.worst()}"
        else:
            outcome = Outcome.PASS
            reason = f"no mismatch (log e {res.log_e:.2f} < {math.log(1 / alpha):.2f})"
        rows.append(GuardResult(name=f"{MIX}:{dim}", metric="trafficMix", check="mix",
                                outcome=outcome, n_baseline=nb, n_canary=nc, alpha=alpha,
                                test=TEST_NAMES["mix"], reason=reason))
    if share_on:
        assert expected_share is not None
        rows.extend(_share_row(spec, stats, expected_share, alpha))
    return rows


def _share_row(spec: CanaryRuleSpec, stats: RuleStatistics, expected: float,
               alpha: float) -> list[GuardResult]:
    b, c = stats.mix_total()
    if b + c == 0:
        return []
    band = spec.analysis.traffic_mix.share_band
    res = share_check(c, b, expected, band, alpha, spec.analysis.min_samples_per_cohort)
    where = (f"canary share {res.observed:.3f}, bounds [{res.lower:.3f}, {res.upper:.3f}], "
             f"expected {expected:.3f} ± {band:.0%}")
    if res.mismatch:
        outcome, reason = Outcome.INCONCLUSIVE, f"mismatch: {where}"
    elif res.off:
        outcome, reason = Outcome.PASS, f"off the expected share but within the band: {where}"
    else:
        outcome, reason = Outcome.PASS, where
    return [GuardResult(name=f"{MIX}:share", metric="trafficMix", check="share",
                        outcome=outcome, n_baseline=b, n_canary=c, baseline=expected,
                        canary=_num(res.observed), lower=_num(res.lower), upper=_num(res.upper),
                        tolerance=band, relative=True, alpha=alpha, test=TEST_NAMES["share"],
                        reason=reason)]


# ---- the decision --------------------------------------------------------------------------

def _needs(r: GuardResult) -> str:
    if r.outcome is not Outcome.INCONCLUSIVE or r.needed_canary is None:
        return ""
    parts = [f"{r.needed_canary} canary"]
    if r.needed_baseline is not None:
        parts.append(f"{r.needed_baseline} baseline")
    return f"; needs ~{' and '.join(parts)} more samples"


def _waiting(spec: CanaryRuleSpec, overall: dict[str, GuardResult],
             required: list[GuardResult]) -> list[str]:
    m = spec.analysis.min_samples_per_cohort
    waiting = []
    for r in overall.values():
        if r.outcome is Outcome.PASS:
            continue
        if r.outcome is Outcome.INCONCLUSIVE:
            waiting.append(f"{r.name} inconclusive (n canary {r.n_canary}/{m}, baseline "
                           f"{r.n_baseline}/{m}{_needs(r)})")
        elif r.outcome is Outcome.NO_DATA:
            waiting.append(f"{r.name} no data ({r.reason})")
        else:
            waiting.append(f"{r.name} error ({r.reason})")
    for r in required:
        if r.outcome is not Outcome.PASS:
            waiting.append(f"{r.name} {r.slice_label} must pass, is {r.outcome.value} "
                           f"(n canary {r.n_canary}, baseline {r.n_baseline}{_needs(r)})")
    return waiting


def _decide(
    spec: CanaryRuleSpec, overall: dict[str, GuardResult], required: list[GuardResult],
    checks: list[GuardResult], deadline_reached: bool,
) -> tuple[Action, str]:
    fails = [r for r in overall.values() if r.outcome is Outcome.FAIL]
    if fails:
        return Action.ROLLBACK, "; ".join(f"guard {r.name!r} failed: {r.reason}" for r in fails)
    waiting = _waiting(spec, overall, required)
    held = [f"{c.name.split(':', 1)[1]}: {c.reason}" for c in checks
            if c.outcome is not Outcome.PASS]
    if not waiting and not held:
        extra = f" and {len(required)} required slices" if required else ""
        return Action.PROMOTE, f"all {len(overall)} guards{extra} pass"
    parts = ([f"traffic mix mismatch: {'; '.join(held)}"] if held else []) + waiting
    missing = "; ".join(parts)
    if deadline_reached:
        if spec.analysis.on_inconclusive == "rollback" and waiting:
            return Action.ROLLBACK, (f"deadline reached without a decision "
                                     f"(onInconclusive: rollback): {missing}")
        return Action.CONTINUE, f"deadline reached, holding: {missing}"
    if not waiting:
        return Action.CONTINUE, f"holding: {missing}"
    return Action.CONTINUE, f"waiting: {missing}"
