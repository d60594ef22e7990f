"""Monte Carlo checks of the guarantees for the newer statistics, looking every interval.

- Quantiles: A/A at the tolerance boundary on heavy-tailed latencies (lognormal, Pareto
  with infinite variance) never crosses more than alpha; a real +30% p95 shift is caught.
- Floors: a canary exactly at its floor (rate, mean, quantile) is falsely failed at most
  alpha of the time; the other side (a false PASS of a required slice at the boundary)
  likewise.
- Judge weights: oversampling one stratum keeps the weighted (Hájek) comparison valid,
  while the unweighted one would roll back a healthy canary far more often than alpha.
- Per-task F1, precision and per-class recall: A/A never crosses more than alpha.
- Traffic mix: with the same mix (drifting over time) and a share that changes every
  step, the mix check's false alarms stay below its alpha.

Same conventions as ``test_analysis_simulation``: thousands of streams at once through
the vectorised functions the guards use, derandomised, bound alpha + 3 Monte Carlo SE.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.analysis.classification import task_mean
from controller.analysis.decide import BURN_IN
from controller.analysis.mix import mix_log_e_array
from controller.analysis.quantiles import dense_quantile_cs
from controller.analysis.sequential import (
    beta_binomial_prior,
    diff_proportions,
    normal_mixture_cs,
    proportion_cs_beta_binomial,
)
from controller.analysis.stats import (
    bin_edges,
    ratio_form,
    ratio_metric,
    ratio_metric_unit_variance,
)

from .test_analysis_simulation import slack

RUNS = 1000
LOOK_EVERY = 60
LOOKS = 40
M = 200
SIM = settings(max_examples=4, deadline=None, derandomize=True)


# -- quantiles --------------------------------------------------------------------------

def _binned(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bin indices (0..B-1) on a shared log-spaced grid, and the grid's edges."""
    from controller.analysis.stats import LOG_GAMMA

    b = np.floor(np.log(x) / LOG_GAMMA).astype(np.int64)
    lo = int(b.min())
    lo_e, hi_e = bin_edges(np.arange(lo, int(b.max()) + 1))
    return b - lo, lo_e, hi_e


def _quantile_crossings(base: np.ndarray, canary: np.ndarray, share: float, p: float,
                        k: float, alpha: float, seed: int, side: str) -> np.ndarray:
    """Per run, whether the FAIL side (lower > 0) or PASS side (upper <= 0) of the
    contrast ``Q_c − k·Q_b`` was crossed at some look."""
    rng = np.random.default_rng(seed)
    nc = rng.binomial(LOOK_EVERY, share, size=(LOOKS, RUNS)).cumsum(axis=0)
    nb = LOOK_EVERY * np.arange(1, LOOKS + 1)[:, None] - nc
    bins, lo_e, hi_e = _binned(np.concatenate([base, canary], axis=0))
    nbins = len(lo_e)
    bb, bc = bins[: len(base)], bins[len(base):]
    cols = np.arange(RUNS)
    hist_b = np.zeros((RUNS, nbins))
    hist_c = np.zeros((RUNS, nbins))
    done_b = np.zeros(RUNS, dtype=int)
    done_c = np.zeros(RUNS, dtype=int)
    crossed = np.zeros(RUNS, dtype=bool)
    for look in range(LOOKS):
        for hist, done, target, src in ((hist_b, done_b, nb[look], bb),
                                        (hist_c, done_c, nc[look], bc)):
            step = np.arange(int((target - done).max()))[:, None]  # new samples this look
            idx = done[None, :] + step
            new = idx < target[None, :]
            rows = np.broadcast_to(cols, idx.shape)[new]
            np.add.at(hist, (rows, src[idx[new], rows]), 1.0)
            done[:] = target
        c = dense_quantile_cs(hist_c, lo_e, hi_e, p, alpha / 2, M)
        b = dense_quantile_cs(hist_b, lo_e, hi_e, p, alpha / 2, M)
        if side == "fail":
            crossed |= (c.lower - k * b.upper) > 0
        else:
            crossed |= ((c.upper - k * b.lower) <= 0) & (nc[look] >= M) & (nb[look] >= M)
    return crossed


@SIM
@given(dist=st.sampled_from(["lognormal", "pareto"]), p=st.sampled_from([0.5, 0.95, 0.99]),
       share=st.sampled_from([0.05, 0.5]), seed=st.integers(0, 2**31 - 1))
def test_quantile_aa_at_the_tolerance_boundary_on_heavy_tails(dist: str, p: float,
                                                              share: float, seed: int) -> None:
    """The canary is the baseline scaled by exactly 1 + r (its p-quantile sits on the
    tolerance); FAIL iff L_c − (1+r)·U_b > 0."""
    alpha, r = 0.05, 0.1
    rng = np.random.default_rng(seed)
    n = LOOK_EVERY * LOOKS
    if dist == "lognormal":
        base = rng.lognormal(7.0, 1.0, size=(n, RUNS))
        canary = rng.lognormal(7.0, 1.0, size=(n, RUNS)) * (1 + r)
    else:  # Pareto tail index 1.5: infinite variance, a mean test's nightmare
        base = 100.0 * (1.0 + rng.pareto(1.5, size=(n, RUNS)))
        canary = 100.0 * (1.0 + rng.pareto(1.5, size=(n, RUNS))) * (1 + r)
    rate = float(_quantile_crossings(base, canary, share, p, 1 + r, alpha, seed, "fail").mean())
    assert rate <= slack(alpha, RUNS), f"false rollback rate {rate:.4f} > alpha {alpha}"


def test_quantile_false_pass_at_the_boundary_is_bounded() -> None:
    """The PASS side (what a required slice relies on) at the boundary: a canary exactly
    10% slower must not pass "at most 10% slower" more than alpha of the time."""
    alpha, r = 0.05, 0.1
    rng = np.random.default_rng(17)
    n = LOOK_EVERY * LOOKS
    base = rng.lognormal(7.0, 0.5, size=(n, RUNS))
    canary = rng.lognormal(7.0, 0.5, size=(n, RUNS)) * (1 + r)
    rate = float(_quantile_crossings(base, canary, 0.5, 0.95, 1 + r, alpha, 17, "pass").mean())
    assert rate <= slack(alpha, RUNS)


def test_quantile_power_for_a_real_30_percent_p95_shift() -> None:
    """p95 latency +30% against a +10% tolerance, equal shares, alpha of one guard among
    seven: caught in almost every run within 4,000 samples per cohort, half of them
    within 2,400. (A tail quantile carries less information than a mean: this is the
    price of a statistic one absurd value cannot move.)"""
    alpha, r, runs = 0.05 / 7, 0.1, 300
    rng = np.random.default_rng(23)
    n = 4000
    base = rng.lognormal(7.3, 0.35, size=(runs, n))
    canary = rng.lognormal(7.3, 0.35, size=(runs, n)) * 1.3
    bins, lo_e, hi_e = _binned(np.concatenate([base, canary], axis=1))
    caught_at = np.full(runs, np.inf)
    for t in range(200, n + 1, 200):
        hb = np.zeros((runs, len(lo_e)))
        hc = np.zeros((runs, len(lo_e)))
        rows = np.repeat(np.arange(runs), t)
        np.add.at(hb, (rows, bins[:, :t].ravel()), 1.0)
        np.add.at(hc, (rows, bins[:, n:n + t].ravel()), 1.0)
        c = dense_quantile_cs(hc, lo_e, hi_e, 0.95, alpha / 2, M)
        b = dense_quantile_cs(hb, lo_e, hi_e, 0.95, alpha / 2, M)
        fail = (c.lower - (1 + r) * b.upper) > 0
        caught_at = np.where(fail & np.isinf(caught_at), t, caught_at)
    assert np.isfinite(caught_at).mean() >= 0.99
    assert np.median(caught_at) <= 2400


# -- floors ---------------------------------------------------------------------------------

def test_rate_floor_aa_at_the_floor() -> None:
    """Canary completion exactly 0.85 with ``minimum: 0.85``: FAIL iff upper < 0.85."""
    alpha, floor = 0.05, 0.85
    rng = np.random.default_rng(29)
    n = LOOK_EVERY * np.arange(1, LOOKS + 1)[:, None]
    x = rng.binomial(LOOK_EVERY, floor, size=(LOOKS, RUNS)).cumsum(axis=0)
    a, b = beta_binomial_prior(floor, M, alpha)
    cs = proportion_cs_beta_binomial(x, np.broadcast_to(n, x.shape), a, b, alpha)
    fail = float(np.any(cs.upper < floor, axis=0).mean())
    false_pass = float(np.any((cs.lower >= floor) & (n >= M), axis=0).mean())
    assert fail <= slack(alpha, RUNS) and false_pass <= slack(alpha, RUNS)


@settings(max_examples=2, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**31 - 1), p=st.sampled_from([0.5, 0.95]))
def test_quantile_ceiling_aa_at_the_ceiling(seed: int, p: float) -> None:
    """``maximum`` on the canary's own quantile: the true quantile equals the ceiling;
    FAIL iff lower > ceiling."""
    alpha = 0.05
    rng = np.random.default_rng(seed)
    n = LOOK_EVERY * LOOKS
    x = rng.lognormal(7.0, 1.0, size=(RUNS, n))
    ceiling = math.exp(7.0 + 1.0 * float(_norm_ppf(p)))
    bins, lo_e, hi_e = _binned(x)
    hist = np.zeros((RUNS, len(lo_e)))
    crossed = np.zeros(RUNS, dtype=bool)
    for look in range(LOOKS):
        sl = bins[:, look * LOOK_EVERY:(look + 1) * LOOK_EVERY]
        np.add.at(hist, (np.repeat(np.arange(RUNS), LOOK_EVERY), sl.ravel()), 1.0)
        cs = dense_quantile_cs(hist, lo_e, hi_e, p, alpha, M)
        crossed |= cs.lower > ceiling
    assert float(crossed.mean()) <= slack(alpha, RUNS)


def _norm_ppf(p: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(p))


# -- judge sampling weights ----------------------------------------------------------------

def _weighted_stream(rng: np.random.Generator, n: int, keep: tuple[float, float],
                     rates: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Judged samples of one cohort: (successes, weights) per sample slot, zero weight for
    samples the judge did not pick. Stratum 0 (high risk, 20%) is judged with
    probability keep[0], stratum 1 with keep[1]; weights are 1/keep."""
    high = rng.random((n, RUNS)) < 0.2
    success = rng.random((n, RUNS)) < np.where(high, rates[0], rates[1])
    prob = np.where(high, keep[0], keep[1])
    judged = rng.random((n, RUNS)) < prob
    return success.astype(float), np.where(judged, 1.0 / prob, 0.0)


def _hajek(sw: np.ndarray, swx: np.ndarray, sw2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(effective successes, effective n) as Moments.total / Moments.n_eff compute them,
    from Σw, Σwx and Σw²."""
    mean = swx / np.maximum(sw, 1e-12)
    n_eff = sw * sw / np.maximum(sw2, 1e-12)
    return mean * n_eff, n_eff


def test_weighted_task_success_aa_under_oversampling() -> None:
    """Canary judged with high risk oversampled (all of it, a quarter of the rest), the
    baseline judged uniformly; the canary's success is exactly 2 points lower (the
    tolerance). Weighted: false rollback <= alpha. Unweighted, the oversampled
    hard stratum drags the canary down and rolls it back most of the time."""
    alpha, tol = 0.05, -0.02
    rng = np.random.default_rng(31)
    n_total = 2400
    rates_b = (0.60, 0.95)
    rates_c = (0.60 + tol, 0.95 + tol)  # population difference exactly tol
    xb, wb = _weighted_stream(rng, n_total, (0.4, 0.4), rates_b)
    xc, wc = _weighted_stream(rng, n_total, (1.0, 0.25), rates_c)
    sums = {c: [a.cumsum(axis=0) for a in (w, w * x, w * w, (w > 0) * 1.0, (w > 0) * x)]
            for c, x, w in (("c", xc, wc), ("b", xb, wb))}
    crossed_w = np.zeros(RUNS, dtype=bool)
    crossed_u = np.zeros(RUNS, dtype=bool)
    for look in range(1, LOOKS + 1):
        t = look * LOOK_EVERY - 1
        c, b = ([a[t] for a in sums[k]] for k in ("c", "b"))
        ec, nc = _hajek(c[0], c[1], c[2])
        eb, nb = _hajek(b[0], b[1], b[2])
        cs = diff_proportions(ec, nc, eb, nb, 1.0, alpha, M)
        crossed_w |= (cs.upper < tol) & (nc >= BURN_IN) & (nb >= BURN_IN)
        cu = diff_proportions(c[4], c[3], b[4], b[3], 1.0, alpha, M)
        crossed_u |= cu.upper < tol
    assert float(crossed_w.mean()) <= slack(alpha, RUNS)
    assert float(crossed_u.mean()) > 0.5


# -- per-task F1, precision, per-class recall -----------------------------------------------------

@SIM
@given(kind=st.sampled_from(["f1", "precision", "recall-0"]), seed=st.integers(0, 2**31 - 1))
def test_per_task_classification_metrics_aa(kind: str, seed: int) -> None:
    """Identical classifiers over three tasks of different sizes and accuracies; the
    deciding statistic is the mean of per-task values; FAIL iff upper < 0 (the canary
    confidently worse at all: the strictest boundary)."""
    alpha, runs, looks, every = 0.05, 600, 25, 120
    rng = np.random.default_rng(seed)
    tasks = [(0.6, 0.9), (0.3, 0.8), (0.1, 0.7)]  # (traffic share, accuracy)
    name, _, cls = kind.partition("-")
    form = ratio_form(name)
    only = int(cls) if cls else None
    k_cls = 3
    counts = {c: [np.zeros((runs, k_cls, k_cls)) for _ in tasks] for c in ("c", "b")}
    crossed = np.zeros(runs, dtype=bool)
    for _ in range(looks):
        n_c = rng.binomial(every, 0.5, size=runs)
        for cohort, n in (("c", n_c), ("b", every - n_c)):
            per_task = np.stack([rng.multinomial(x, [t[0] for t in tasks]) for x in n])
            for j, (_, acc) in enumerate(tasks):
                truth = np.full((k_cls, k_cls), (1 - acc) / (k_cls - 1) / k_cls)
                np.fill_diagonal(truth, acc / k_cls)
                draws = np.stack([rng.multinomial(x, truth.ravel()) for x in per_task[:, j]])
                counts[cohort][j] += draws.reshape(runs, k_cls, k_cls)
        est, var, unit, enough = {}, {}, {}, np.ones(runs, dtype=bool)
        for cohort in ("c", "b"):
            vals, v1s, ns = [], [], []
            for m in counts[cohort]:
                n_t = m.sum(axis=(1, 2))
                vals.append(ratio_metric(m, None, form, only)[0])
                v1s.append(ratio_metric_unit_variance(m + 0.5, None, form, only))
                ns.append(n_t)
                enough &= n_t >= 1
            mean, v = task_mean(np.stack(vals, -1), np.stack(v1s, -1), np.stack(ns, -1))
            est[cohort], var[cohort] = mean, v
            unit[cohort] = v * np.stack(ns, -1).sum(-1)
            enough &= np.stack(ns, -1).sum(-1) >= BURN_IN
        with np.errstate(divide="ignore", invalid="ignore"):
            cs = normal_mixture_cs(est["c"] - est["b"], var["c"] + var["b"],
                                   unit["c"] + unit["b"], alpha, M)
        crossed |= enough & (cs.upper < 0.0)
    rate = float(crossed.mean())
    assert rate <= slack(alpha, runs), f"{kind}: false rollback rate {rate:.4f}"


# -- traffic mix -----------------------------------------------------------------------------

def test_traffic_mix_false_alarms_stay_below_alpha_with_drift_and_step_changes() -> None:
    """Same mix in both cohorts, but the mix drifts every look and the canary's share
    changes at every step (5%, 20%, 50%; counts restart per step). The check's alpha
    is split over the steps as the controller does."""
    alpha_mix, steps, runs = 0.05, (0.05, 0.2, 0.5), 4000
    alpha = alpha_mix / len(steps)
    rng = np.random.default_rng(37)
    alarmed = np.zeros(runs, dtype=bool)
    for share in steps:
        c = np.zeros((runs, 4))
        b = np.zeros((runs, 4))
        for look in range(20):
            mix = np.array([0.5, 0.25, 0.2, 0.05]) + 0.1 * math.sin(look / 3) * np.array(
                [1, -1, 0, 0])
            cats = rng.multinomial(100, mix, size=runs)
            can = rng.binomial(cats, share)
            c += can
            b += cats - can
            alarmed |= mix_log_e_array(c, b) >= math.log(1 / alpha)
    assert float(alarmed.mean()) <= slack(alpha_mix, runs)


def test_traffic_mix_catches_a_skewed_canary() -> None:
    """The canary gets twice its share of one queue (a routing bug): caught."""
    rng = np.random.default_rng(41)
    runs, alpha = 500, 0.001 / 3
    c = np.zeros((runs, 4))
    b = np.zeros((runs, 4))
    caught = np.zeros(runs, dtype=bool)
    for _ in range(60):
        cats = rng.multinomial(200, [0.5, 0.25, 0.2, 0.05], size=runs)
        p = np.array([0.1, 0.2, 0.1, 0.1])
        can = rng.binomial(cats, p)
        c += can
        b += cats - can
        caught |= mix_log_e_array(c, b) >= math.log(1 / alpha)
    assert caught.mean() >= 0.99
