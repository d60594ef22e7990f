"""Monte Carlo checks of the guarantees, looking at every interval.

- A/A at the tolerance boundary: the fraction of streams whose harmful-side bound EVER
  crosses the tolerance (after the burn-in decide.py applies) stays ≤ alpha, for every
  test family, including rare events and a 5% canary share.
- Family-wise: whole rollouts through RuleStatistics + evaluate with a multi-guard,
  multi-queue rule roll back a healthy canary at most alpha of the time.
- Power: large regressions are caught within a stated sample budget.

Streams are simulated thousands at a time with the vectorised functions; hypothesis
draws the scenario (rate, share, alpha) and the seed, derandomised so CI is repeatable.
The bound: observed rate ≤ alpha + 3 Monte Carlo standard errors.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.analysis import RuleStatistics, alpha_split, evaluate, guard_dimensions
from controller.analysis.changes import (
    MAX_STARTS,
    detector_log_r,
    slot_weight,
    step_start_weight,
    total_weight,
)
from controller.analysis.changes import proportion_log_e as change_log_e
from controller.analysis.decide import (
    BURN_IN,
    MEAN_BURN_IN,
    TARGET_FACTOR,
    alpha_budget,
    group_slots,
)
from controller.analysis.sequential import (
    diff_proportions,
    f1_difference,
    proportion_fail_ready,
    rate_ratio_cs,
)
from controller.analysis.strata import proportions_log_e, stratified_means
from controller.models import Action, CanaryRuleSpec, Cohort, RecordedVerdict, Risk, Sample
from controller.sources.manifests import load_rules

RUNS = 2000
LOOK_EVERY = 40  # samples over both cohorts between looks
LOOKS = 60
M = 200  # minSamplesPerCohort
TARGET = TARGET_FACTOR * M  # where decide.py tunes the mixture
SIM = settings(max_examples=6, deadline=None, derandomize=True)


def slack(alpha: float, runs: int = RUNS) -> float:
    return alpha + 3.0 * math.sqrt(alpha * (1.0 - alpha) / runs)


def cohort_counts(rng: np.random.Generator, share: float) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative (canary, baseline) sample counts per look: shape (LOOKS, RUNS)."""
    canary = rng.binomial(LOOK_EVERY, share, size=(LOOKS, RUNS)).cumsum(axis=0)
    return canary, LOOK_EVERY * np.arange(1, LOOKS + 1)[:, None] - canary


def ever(cross: np.ndarray, nc: np.ndarray, nb: np.ndarray, burn: int = BURN_IN) -> float:
    """Share of runs whose bound crossed at some look with both cohorts past burn-in."""
    ok = (nc >= min(burn, M)) & (nb >= min(burn, M))
    return float(np.any(cross & ok, axis=0).mean())


@SIM
@given(p=st.sampled_from([0.02, 0.1, 0.5, 0.9]), share=st.sampled_from([0.05, 0.2, 0.5]),
       alpha=st.sampled_from([0.05, 0.01]), seed=st.integers(0, 2**31 - 1))
def test_proportions_aa_at_the_tolerance_boundary(p: float, share: float, alpha: float,
                                                   seed: int) -> None:
    """Lower-is-better rate (fallback): true change exactly +tol; FAIL iff lower > tol."""
    rng = np.random.default_rng(seed)
    tol = min(0.02, 1 - p)
    nc, nb = cohort_counts(rng, share)
    inc_c = np.diff(np.vstack([np.zeros((1, RUNS)), nc]), axis=0).astype(int)
    inc_b = np.diff(np.vstack([np.zeros((1, RUNS)), nb]), axis=0).astype(int)
    xc = rng.binomial(inc_c, p + tol).cumsum(axis=0)
    xb = rng.binomial(inc_b, p).cumsum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        cs = diff_proportions(xc, nc, xb, nb, 1.0, alpha, TARGET)
        ready = proportion_fail_ready(nc, nb, xb, 1.0, tol)
    rate = ever((cs.lower > tol) & ready, nc, nb)
    assert rate <= slack(alpha), f"false rollback rate {rate:.4f} > alpha {alpha}"
    # and the mirror image (higher is better: success exactly -tol below the baseline)
    xc2 = rng.binomial(inc_c, 1 - p - tol).cumsum(axis=0)
    xb2 = rng.binomial(inc_b, 1 - p).cumsum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        cs = diff_proportions(xc2, nc, xb2, nb, 1.0, alpha, TARGET)
        ready = proportion_fail_ready(nc, nb, xb2, 1.0, -tol)
    rate = ever((cs.upper < -tol) & ready, nc, nb)
    assert rate <= slack(alpha), f"false rollback rate {rate:.4f} > alpha {alpha} (mirror)"


@SIM
@given(dist=st.sampled_from(["lognormal 0.3", "lognormal 1.0", "normal", "cache hits"]),
       relative=st.booleans(), alpha=st.sampled_from([0.05, 0.01]),
       seed=st.integers(0, 2**31 - 1))
def test_means_at_the_boundary_with_drift_and_changing_shares(dist: str, relative: bool,
                                                              alpha: float, seed: int) -> None:
    """The stratified mean comparison decide.py runs (burn-in MEAN_BURN_IN), a look every
    interval through 5% → 20% → 50% while the level drifts ±20% over the rollout in both
    cohorts, the canary exactly at the tolerance (+0.1 units, or ×1.1 with a relative
    tolerance): skewed both ways (lognormal; 10% cache hits at zero), and symmetric."""
    rng = np.random.default_rng(seed)
    per_step, per_look, runs = 15, 200, RUNS
    looks = 3 * per_step
    n_c = np.round(per_look * np.repeat([0.05, 0.2, 0.5], per_step)).astype(int)
    acc = np.zeros((6, 3, runs))  # n, Σx, Σx² of canary then baseline, per step
    k, thr = (1.1, 0.0) if relative else (1.0, 0.1)
    crossed = np.zeros(runs, dtype=bool)
    for t in range(looks):
        level = 1.0 + 0.2 * math.cos(math.pi * t / looks)
        for i, n in ((0, int(n_c[t])), (1, per_look - int(n_c[t]))):
            x = level * _draw_metric(rng, dist, (runs, n))
            if i == 0:
                x = x * k if relative else x + thr
            s = t // per_step
            acc[3 * i, s] += n
            acc[3 * i + 1, s] += x.sum(axis=1)
            acc[3 * i + 2, s] += (x * x).sum(axis=1)
        n1, s1, q1, n2, s2, q2 = acc
        with np.errstate(divide="ignore", invalid="ignore"):
            m1, m2 = s1 / np.maximum(n1, 1), s2 / np.maximum(n2, 1)
            v1 = np.maximum(q1 / np.maximum(n1, 1) - m1 * m1, 0) * n1 / np.maximum(n1 - 1, 1)
            v2 = np.maximum(q2 / np.maximum(n2, 1) - m2 * m2, 0) * n2 / np.maximum(n2 - 1, 1)
            cs = stratified_means(m1, v1, n1, m2, v2, n2, k, alpha, TARGET)
        ok = (n1.sum(0) >= MEAN_BURN_IN) & (n2.sum(0) >= MEAN_BURN_IN)
        crossed |= ok & (cs.lower > thr)
    rate = float(crossed.mean())
    assert rate <= slack(alpha), f"false rollback rate {rate:.4f} > alpha {alpha}"


def _draw_metric(rng: np.random.Generator, dist: str, shape: tuple[int, int]) -> np.ndarray:
    """Positive values with mean about 1."""
    if dist.startswith("lognormal"):
        sigma = float(dist.split()[1])
        return rng.lognormal(-sigma * sigma / 2, sigma, size=shape)
    if dist == "normal":
        return rng.normal(1.0, 0.3, size=shape)
    return np.where(rng.random(shape) < 0.1, 0.0, rng.normal(1.1, 0.1, size=shape))


@SIM
@given(accuracy=st.sampled_from([0.7, 0.9]), share=st.sampled_from([0.1, 0.5]),
       seed=st.integers(0, 2**31 - 1))
def test_f1_aa(accuracy: float, share: float, seed: int) -> None:
    """Identical classifiers (3 classes); FAIL iff the upper bound < tolerance 0 ... i.e.
    the canary is confidently worse at all: the strictest boundary."""
    alpha = 0.05
    rng = np.random.default_rng(seed)
    runs, looks, every = 1000, 30, 80
    k_cls = 3
    truth = np.full((k_cls, k_cls), (1 - accuracy) / (k_cls - 1) / k_cls)
    np.fill_diagonal(truth, accuracy / k_cls)
    flat = truth.ravel()
    cc = np.zeros((runs, k_cls * k_cls))
    cb = np.zeros((runs, k_cls * k_cls))
    crossed = np.zeros(runs, dtype=bool)
    for _ in range(looks):
        n_c = rng.binomial(every, share, size=runs)
        cc += np.array([rng.multinomial(n, flat) for n in n_c])
        cb += np.array([rng.multinomial(every - n, flat) for n in n_c])
        with np.errstate(divide="ignore", invalid="ignore"):  # runs with an empty cohort
            cs = f1_difference(cc.reshape(runs, k_cls, k_cls),
                               cb.reshape(runs, k_cls, k_cls), 1.0, alpha, M)
        ok = (cc.sum(axis=1) >= BURN_IN) & (cb.sum(axis=1) >= BURN_IN)
        crossed |= ok & (cs.upper < 0.0)
    rate = float(crossed.mean())
    assert rate <= slack(alpha, runs), f"false rollback rate {rate:.4f} > alpha {alpha}"


@SIM
@given(share=st.sampled_from([0.05, 0.25, 0.5]), rate_b=st.sampled_from([0.005, 0.05]),
       seed=st.integers(0, 2**31 - 1))
def test_event_count_ratio_aa(share: float, rate_b: float, seed: int) -> None:
    """Prometheus-style counts with a known share; the canary's event rate is exactly
    (1 + tol) times the baseline's; FAIL iff the lower bound on the ratio > 1 + tol."""
    alpha, tol = 0.05, 0.2
    rng = np.random.default_rng(seed)
    requests_per_look = 400
    xc = np.zeros(RUNS)
    xb = np.zeros(RUNS)
    crossed = np.zeros(RUNS, dtype=bool)
    for _ in range(LOOKS):
        xc += rng.poisson(requests_per_look * share * rate_b * (1 + tol), size=RUNS)
        xb += rng.poisson(requests_per_look * (1 - share) * rate_b, size=RUNS)
        cs = rate_ratio_cs(xc, xb, share, alpha, M)
        crossed |= cs.lower > 1 + tol
    rate = float(crossed.mean())
    assert rate <= slack(alpha), f"false rollback rate {rate:.4f} > alpha {alpha}"


# -- family-wise, end to end --------------------------------------------------------------

SUPPORT_RULE: CanaryRuleSpec = load_rules(["rules/support-assistant.yaml"])[0][0].rule.spec
QUEUES = ("general", "billing", "technical", "refunds")


def _samples(rng: np.random.Generator, n: int, cohort: Cohort, start: int,
             weights: tuple[float, float] = (1.0, 1.0)) -> list[Sample]:
    """Healthy traffic; ``weights``: judge sampling weights of (high risk, the rest)."""
    queue = rng.choice(len(QUEUES), size=n, p=[0.47, 0.25, 0.2, 0.08])
    risk = rng.choice(3, size=n, p=[0.6, 0.3, 0.1])
    success = rng.random(n) < 0.9
    tasks = rng.choice(len(TASKS), size=n, p=[0.6, 0.3, 0.1])
    label = rng.integers(0, 3, size=n)
    decision = np.where(rng.random(n) < 0.88, label, rng.integers(0, 3, size=n))
    labels = ("approve", "review", "reject")
    out = []
    for i in range(n):
        out.append(Sample.model_construct(
            id=f"{cohort.value}-{start + i}", rule="r", cohort=cohort, ts=None,
            queue=QUEUES[queue[i]], risk=list(Risk)[risk[i]], input="q", output="a",
            latency_ms=float(1500 * rng.lognormal(0, 0.35)),
            cost_usd=float(0.004 * rng.lognormal(0, 0.25)),
            fallback=bool(rng.random() < 0.03), policy_violation=bool(rng.random() < 0.01),
            decision=labels[decision[i]], label=labels[label[i]],
            task=TASKS[tasks[i]],
            correction_minutes=float(rng.exponential(1.0)) if rng.random() < 0.4 else None,
            feedback_closed=True,  # in the past of the feedback window
            judge=RecordedVerdict(score=float(success[i]), sampling_weight=weights[
                0 if risk[i] == 2 else 1]),
        ))
    return out


TASKS = ("question", "refund_request", "complaint")


def _family_rule() -> CanaryRuleSpec:
    """The support rule plus what the newer statistics add to the family: a floor on
    trusted completion just under its true rate (0.862), a required slice, a p95
    ceiling, and the traffic-mix check (on by default)."""
    raw = SUPPORT_RULE.model_dump(mode="json", by_alias=True, exclude_none=True)
    guards = raw["analysis"]["guards"]
    next(g for g in guards if g["name"] == "trusted-completion")["minimum"] = 0.85
    next(g for g in guards if g["name"] == "fallback")["mustPass"] = ["risk=high"]
    next(g for g in guards if g["name"] == "latency")["maximum"] = 4000.0
    return CanaryRuleSpec.model_validate(raw)


FAMILY_RULE = _family_rule()


def _rollout(seed: int, per_look: int, looks: int, spec: CanaryRuleSpec = SUPPORT_RULE,
             weights: tuple[float, float] = (1.0, 1.0)) -> Action:
    rng = np.random.default_rng(seed)
    stats = RuleStatistics(spec)
    for look in range(looks):
        stats.enter_step(min(look // 4, len(spec.steps) - 1))  # windows at steps 2, 3
        for cohort in (Cohort.BASELINE, Cohort.CANARY):
            for s in _samples(rng, per_look, cohort, look * per_look, weights):
                stats.add(s)
        decision = evaluate(spec, stats, estimate_needed=False)
        if decision.action is not Action.CONTINUE:
            return decision.action
    return Action.CONTINUE


def test_family_wise_false_rollback_over_all_guards_and_queues() -> None:
    """Healthy canaries through every guard of rules/support-assistant.yaml (7 guards,
    queue and risk slices, per-task F1, p95 latency, burden per output, step windows) plus
    a floor, a ceiling, a required slice, the traffic-mix check and judge weights that
    oversample high risk 2:1, looking every 60 samples per cohort."""
    runs = 40
    actions = [_rollout(seed, 60, 10, FAMILY_RULE, (1.0, 2.0)) for seed in range(runs)]
    rollbacks = actions.count(Action.ROLLBACK)
    # alpha = 0.05: P(Binomial(40, 0.05) > 7) < 0.002
    assert rollbacks <= 7, f"{rollbacks}/{runs} healthy rollouts rolled back"


@settings(max_examples=40, deadline=None, derandomize=True)
@given(n_guards=st.integers(1, 8), max_groups=st.integers(1, 64),
       dims=st.lists(st.sampled_from([[], ["queue"], ["risk"], ["queue", "risk"]]),
                     min_size=8, max_size=8),
       alpha=st.floats(0.001, 0.2))
def test_alpha_split_never_exceeds_the_rules_alpha(n_guards: int, max_groups: int,
                                                  dims: list[list[str]], alpha: float) -> None:
    metrics = ["fallbackRate", "taskSuccess", "latency", "f1", "policyFailureRate", "cost",
               "correctionBurden", "trustedCompletion"]
    guards = [{"name": f"g{i}", "metric": metrics[i],
               "tolerance": -0.1 if metrics[i] in ("taskSuccess", "f1", "trustedCompletion")
               else 0.1, "groupBy": dims[i]} for i in range(n_guards)]
    spec = CanaryRuleSpec.model_validate({
        "targetRef": {"name": "x"}, "canary": {"image": "x:2"}, "steps": [{"weight": 10}],
        "analysis": {"alpha": alpha, "maxGroups": max_groups, "guards": guards}})
    split = alpha_split(spec)
    total = 0.0
    for g in spec.analysis.guards:
        head, per_slice = split[g.name]
        slots = sum(min(len(Risk), max_groups + 1) if d == "risk" else max_groups + 1
                    for d in guard_dimensions(g))
        total += head + per_slice * slots
    assert total <= alpha * (1 + 1e-9)


def _per_step(x: np.ndarray, per_step: int, steps: int) -> np.ndarray:
    """(S, T, ...) cumulative counts of each step's own samples at each look."""
    out = np.zeros((steps, *x.shape))
    for s in range(steps):
        part = np.zeros(x.shape)
        part[s * per_step:(s + 1) * per_step] = x[s * per_step:(s + 1) * per_step]
        out[s] = part.cumsum(axis=0)
    return out


def test_grouped_guard_with_its_change_detector_at_the_boundary_under_fast_drift() -> None:
    """Every test the trusted-completion guard of the support rule runs — all traffic
    (stratified by step), each of 4 unequal queues (stratified), the change detector
    over every interval of every step — with the canary exactly at the tolerance in
    every queue while the base rate falls from 0.93 to 0.87 during the rollout (as fast
    as the rollout itself), a look every interval through 5% → 20% → 50%: the guard's
    false-rollback rate stays within its alpha. The pooled comparison the engine made
    before rolls back most of these canaries (Simpson's paradox)."""
    guard = next(g for g in SUPPORT_RULE.analysis.guards if g.name == "trusted-completion")
    share = alpha_budget(SUPPORT_RULE)[guard.name]
    spent = share.all + share.slice * group_slots(SUPPORT_RULE, guard) + share.change
    runs, per_step, requests, tol, steps = 2000, 15, 400, -0.02, 3
    looks = per_step * steps
    rng = np.random.default_rng(7)
    weights = np.repeat([0.05, 0.2, 0.5], per_step)
    base = 0.90 + 0.03 * np.cos(np.pi * np.arange(looks) / looks)
    q_share = np.array([0.47, 0.25, 0.2, 0.08])
    n_can = np.round(requests * weights).astype(int)
    nc = np.stack([rng.multinomial(n, q_share, size=runs) for n in n_can])
    nb = np.stack([rng.multinomial(requests - n, q_share, size=runs) for n in n_can])
    xc = rng.binomial(nc, (base + tol)[:, None, None])
    xb = rng.binomial(nb, base[:, None, None])
    target = TARGET_FACTOR * SUPPORT_RULE.analysis.min_samples_per_cohort
    burn = min(BURN_IN, SUPPORT_RULE.analysis.min_samples_per_cohort)

    def fails(c: np.ndarray, n_c: np.ndarray, b: np.ndarray, n_b: np.ndarray,
              alpha: float) -> np.ndarray:
        """Per-stratum counts (S, T, runs): FAIL per look and run."""
        le = proportions_log_e(c, n_c, b, n_b, 1.0, tol, alpha, target, upper=False)
        with np.errstate(divide="ignore", invalid="ignore"):
            ready = proportion_fail_ready(n_c.sum(0), n_b.sum(0), b.sum(0), 1.0, tol)
        return np.asarray((le >= math.log(1 / alpha)) & ready & (n_c.sum(0) >= burn)
                          & (n_b.sum(0) >= burn))

    totals = [a.sum(-1) for a in (xc, nc, xb, nb)]
    pooled = fails(*(a.cumsum(axis=0)[None] for a in totals), share.all)
    assert pooled.any(axis=0).mean() > 10 * share.all  # the problem this test is about
    crossed = fails(*(_per_step(a, per_step, steps) for a in totals), share.all)
    for q in range(len(q_share)):
        crossed |= fails(*(_per_step(a[..., q], per_step, steps) for a in (xc, nc, xb, nb)),
                         share.slice)
    crossed |= _detector_alarms(totals, per_step, steps, tol, share.change, target, burn)
    rate = float(crossed.any(axis=0).mean())
    assert rate <= slack(spent, runs), f"{rate:.4f} > the guard's alpha {spent:.4f}"


def _detector_alarms(totals: list[np.ndarray], per_step: int, steps: int, tol: float,
                     alpha: float, target: float, burn: int) -> np.ndarray:
    """The change detector as decide.py runs it, per look (a start per interval)."""
    looks = per_step * steps
    total = total_weight(looks, steps)
    out = np.zeros(totals[0].shape, dtype=bool)
    for t in range(looks):
        s0 = (t // per_step) * per_step
        starts = [0, *range(max(1, t - s0 - MAX_STARTS + 1), t - s0 + 1)]
        w = [step_start_weight(looks, steps) if s0 else 0.0]
        w += [slot_weight(s0 + b, looks) for b in starts[1:]]
        xc, nc, xb, nb = (np.stack([a[s0 + j:t + 1].sum(0) for j in starts]) for a in totals)
        le = change_log_e(xc, nc, xb, nb, 1.0, tol, alpha / total, target, upper=False)
        ready = proportion_fail_ready(nc, nb, xb, 1.0, tol) & (nc >= burn) & (nb >= burn)
        out[t] = detector_log_r(le, np.asarray(w)[:, None], ready) >= math.log(total / alpha)
    return out


# -- power ---------------------------------------------------------------------------------

def test_large_regressions_are_caught_quickly() -> None:
    alpha, runs = 0.05, 2000
    rng = np.random.default_rng(11)
    n = np.arange(20, 1001, 20)[:, None]  # per cohort, equal shares
    # task success 0.90 -> 0.70, tolerance -0.02: FAIL when upper < -0.02
    xc = rng.binomial(20, 0.70, size=(len(n), runs)).cumsum(axis=0)
    xb = rng.binomial(20, 0.90, size=(len(n), runs)).cumsum(axis=0)
    cs = diff_proportions(xc, n, xb, n, 1.0, alpha / 7, M)
    caught = np.any(cs.upper < -0.02, axis=0).mean()
    assert caught >= 0.99
    first = np.argmax(cs.upper < -0.02, axis=0)
    assert np.median(n[first, 0]) <= 200
    # fallback 3% -> 20% in one queue holding 8% of traffic: per-queue alpha share
    per_queue_alpha = alpha / 7 / 2 / 9
    nq = np.arange(10, 401, 10)[:, None]
    fc = rng.binomial(10, 0.20, size=(len(nq), runs)).cumsum(axis=0)
    fb = rng.binomial(10, 0.03, size=(len(nq), runs)).cumsum(axis=0)
    cs = diff_proportions(fc, nq, fb, nq, 1.0, per_queue_alpha, M)
    assert np.any(cs.lower > 0.02, axis=0).mean() >= 0.95
