"""Change detection: a regression that starts in the middle of a step, caught fast.

The cumulative test weighs every sample since the rollout began, so a change that
starts after many healthy samples is diluted by them; the step window (the current
step's own samples) helps only when the change starts with a step. A change can start
at any time, so we test every start time at once with an e-detector (Shin, Ramdas &
Rinaldo 2023, "E-detectors: a nonparametric framework for sequential change detection").

Starts. Samples are bucketed by timestamp into the rollout's analysis intervals,
aligned to the current step's start (:meth:`.accumulator.RuleStatistics.enter_step`).
A *start* is the beginning of a bucket; for start j, ``Λ_j(t)`` is the one-sided
normal-mixture e-value of the guard's comparison (at the tolerance boundary) computed
on the samples from bucket j to now. Because a start lies inside one step, the
canary's share is constant over its samples and the comparison is unbiased under
drift, like the stratified cumulative test (:mod:`.strata`).

The Shiryaev–Roberts e-detector. With a weight ``w_j ≥ 0`` per start,
``R(t) = Σ_{j started by t} w_j·Λ_j(t)`` and the guard FAILS when ``R(t) ≥ W/α_d``,
``W`` the total weight of every start the rollout can have.

*Proof.* Under the null (the canary at most at the tolerance throughout), each
``Λ_j`` is a nonnegative supermartingale in sample time that equals 1 when start j
begins and 0 before it. Hence ``R(t) − Σ_{j started by t} w_j`` is a supermartingale
(at a start the sum gains ``w_j·1`` and so does the compensator), and
``R(t) + (W − Σ_{j started by t} w_j)`` is a nonnegative supermartingale starting at
W (each term of the second sum is at most W in total). Ville's inequality gives
``P(∃t: R(t) ≥ W/α_d) ≤ P(∃t: R(t) + W − Σ w_j ≥ W/α_d) ≤ α_d``. Dropping terms only
lowers R, so a start may be forgotten (we keep the last ``MAX_STARTS`` buckets of the
step and the step's own start) without losing the guarantee. With K the number of
analysis intervals in ``maxDuration`` and unit weights, ``W = K`` is the familiar
``K/α`` threshold of a Shiryaev–Roberts statistic with K looks (``R_k − k`` is a
supermartingale).

Weights. Bucket starts carry weight 1 while they begin within ``maxDuration`` of the
rollout's start (slot g < K, at most one bucket start per slot: buckets are one interval
apart and a step's first bucket is counted separately) and ``K/(g(g+1))`` after it (a
total of at most 1 for all later slots, so a rollout held past its deadline keeps its
guarantee). The first bucket of each step from the second on (the step's own start:
load-dependent regressions start there) carries ``STEP_WEIGHT·K/(S−1)``: the step
starts together weigh as much as all other starts. The first step's start is the
cumulative test itself and carries nothing. So ``W = K + 1 + STEP_WEIGHT·K`` for a rule
of two or more steps, ``K + 1`` for one step.

Per-start e-values, valid under the composite null. The null is the tolerance
boundary with the baseline's level a nuisance.

- Proportions: the statistic is the signed root of the profile likelihood ratio,
  ``r = sign(θ̂ − θ)·sqrt(2·(ℓ(p̂_c, p̂_b) − max_{p_c = k·p_b + θ} ℓ))``, with the
  information ``I = 1/V`` at the constrained maximum. The score statistic the cumulative
  test uses is accurate at its thresholds (≈ log(1/α)), but an e-detector's threshold
  ``log(W/α_d)`` lies deeper in the tail, where the binomial's skew makes the score
  statistic anti-conservative for rare outcomes (a 3% fallback rate: 4× the alpha in
  simulation); ``r`` follows the binomial's large-deviation rate (``r²/2 = n·KL``) and is
  standard normal to second order in the tail (Barndorff-Nielsen & Cox 1994).
- Means: the standardised difference with plug-in variances, as the cumulative test.

Each goes into the half-normal mixture of :func:`.strata.one_sided_log_e`, tuned like
the other mixtures; validity is asymptotic like theirs, and the Monte Carlo tests
(``tests/unit/test_analysis_changes.py``) check the false-alarm rate at the boundary with
a look every interval, for rare rates and skewed means, with drift.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import xlogy

from .sequential import ArrayLike, FloatArray, _arr, mixture_eta
from .strata import one_sided_log_e

MAX_STARTS = 12
"""Buckets kept per step (the most recent ones): starts older than this are forgotten."""
STEP_WEIGHT = 1.0
"""All step starts together weigh this many times K (the other starts weigh K)."""
PROFILE_ITERS = 30
"""Safeguarded Newton steps at most (machine precision within about ten)."""


def horizon(max_duration_s: float, interval_s: float) -> int:
    """K: analysis intervals within maxDuration."""
    return max(1, math.ceil(max_duration_s / max(interval_s, 1e-9) - 1e-9))


def step_start_weight(k_looks: int, n_steps: int) -> float:
    return STEP_WEIGHT * k_looks / (n_steps - 1) if n_steps > 1 else 0.0


def total_weight(k_looks: int, n_steps: int) -> float:
    """W: the weight of every start a rollout can have (see the module docstring)."""
    return k_looks + 1.0 + step_start_weight(k_looks, n_steps) * max(n_steps - 1, 0)


def slot_weight(slot: int, k_looks: int) -> float:
    """Weight of a (non-step) bucket start in slot g = intervals since the rollout began."""
    if slot < k_looks:
        return 1.0
    return k_looks / (slot * (slot + 1.0))


def _ll(x: FloatArray, n: FloatArray, p: FloatArray) -> FloatArray:
    return np.asarray(xlogy(x, p) + xlogy(n - x, 1.0 - p))


def profile_baseline(
    xc: FloatArray, nc: FloatArray, xb: FloatArray, nb: FloatArray, k: float, theta: float
) -> FloatArray:
    """The baseline rate maximising the likelihood under ``p_c = k·p_b + θ`` (the
    restricted estimate of Miettinen & Nurminen 1985). The log-likelihood is concave in
    p_b; its derivative times ``p(1−p)·q(1−q)`` (``q = k·p + θ``, positive inside the
    range) is a cubic H with the same root: safeguarded Newton steps on H (a bisection
    step whenever Newton would leave the bracket)."""
    fc, fb = nc - xc, nb - xb

    def cubic(p: FloatArray) -> tuple[FloatArray, FloatArray]:
        q = k * p + theta
        a, b = p * (1.0 - p), q * (1.0 - q)
        h = (k * xc * a * (1.0 - q) - k * fc * a * q + xb * b * (1.0 - p) - fb * b * p)
        dh = (k * xc * ((1.0 - 2.0 * p) * (1.0 - q) - k * a)
              - k * fc * ((1.0 - 2.0 * p) * q + k * a)
              + xb * (k * (1.0 - 2.0 * q) * (1.0 - p) - b)
              - fb * (k * (1.0 - 2.0 * q) * p + b))
        return np.asarray(h), np.asarray(dh)

    edge_lo, edge_hi = max(0.0, -theta / k), min(1.0, (1.0 - theta) / k)
    lo, hi = np.full(np.shape(xc), edge_lo), np.full(np.shape(xc), edge_hi)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.clip((xb + np.maximum(xc - theta * nc, 0.0) / k) / (nb + nc), lo, hi)
    p = np.where(np.isfinite(p), p, 0.5 * (lo + hi))
    for _ in range(PROFILE_ITERS):
        h, dh = cubic(p)
        lo, hi = np.where(h >= 0, p, lo), np.where(h <= 0, p, hi)
        with np.errstate(divide="ignore", invalid="ignore"):
            newton = np.where(h == 0, p, p - h / dh)
        inside = (newton >= lo) & (newton <= hi) & np.isfinite(newton)
        new = np.where(inside, newton, 0.5 * (lo + hi))
        if np.all(np.abs(new - p) <= 1e-14 + 1e-12 * p):
            p = new
            break
        p = new
    return np.asarray(np.clip(p, edge_lo + 1e-12, edge_hi - 1e-12))


def proportion_log_e(
    x_canary: ArrayLike, n_canary: ArrayLike, x_baseline: ArrayLike, n_baseline: ArrayLike,
    k: float, theta: float, alpha: float, target_n: float, upper: bool,
) -> FloatArray:
    """log Λ for the evidence that ``p_c − k·p_b`` is above θ (``upper``) or below it:
    the signed-root statistic in the half-normal mixture (−inf without both cohorts)."""
    xc, nc, xb, nb = np.broadcast_arrays(_arr(x_canary), _arr(n_canary), _arr(x_baseline),
                                         _arr(n_baseline))
    have = (nc > 0) & (nb > 0)
    ncs, nbs = np.where(have, nc, 1.0), np.where(have, nb, 1.0)
    xcs, xbs = np.minimum(np.where(have, xc, 0.0), ncs), np.minimum(np.where(have, xb, 0.0), nbs)
    p0 = profile_baseline(xcs, ncs, xbs, nbs, k, theta)
    q0 = np.clip(k * p0 + theta, 1e-12, 1.0 - 1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        full = _ll(xcs, ncs, xcs / ncs) + _ll(xbs, nbs, xbs / nbs)
        null = _ll(xcs, ncs, q0) + _ll(xbs, nbs, p0)
        diff = xcs / ncs - k * xbs / nbs - theta
        r = np.sign(diff) * np.sqrt(np.maximum(2.0 * (full - null), 0.0))
        uc, ub = q0 * (1.0 - q0), k * k * p0 * (1.0 - p0)
        var = uc / ncs + ub / nbs
    tau2 = mixture_eta(alpha) * (uc + ub) / float(target_n)
    out = one_sided_log_e(r if upper else -r, var, tau2)
    return np.asarray(np.where(have, out, -np.inf))


def mean_log_e(
    mean_canary: ArrayLike, var_canary: ArrayLike, n_canary: ArrayLike,
    mean_baseline: ArrayLike, var_baseline: ArrayLike, n_baseline: ArrayLike,
    k: float, theta: float, alpha: float, target_n: float, upper: bool,
) -> FloatArray:
    """log Λ for ``μ_c − k·μ_b`` above (``upper``) or below θ, plug-in variances."""
    mc, vc, nc, mb, vb, nb = np.broadcast_arrays(
        _arr(mean_canary), _arr(var_canary), _arr(n_canary), _arr(mean_baseline),
        _arr(var_baseline), _arr(n_baseline))
    have = (nc >= 2) & (nb >= 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        var = vc / np.where(have, nc, 1.0) + k * k * vb / np.where(have, nb, 1.0)
        z = (mc - k * mb - theta) / np.sqrt(var)
    tau2 = mixture_eta(alpha) * (vc + k * k * vb) / float(target_n)
    out = one_sided_log_e(z if upper else -z, var, tau2)
    return np.asarray(np.where(have, out, -np.inf))


def detector_log_r(log_e: ArrayLike, weights: ArrayLike, ready: ArrayLike) -> FloatArray:
    """log R = log Σ_j w_j·Λ_j over the starts (axis 0) that are ready (past their
    burn-in); a start that is not ready contributes nothing (dropping terms is safe)."""
    le, w, ok = np.broadcast_arrays(_arr(log_e), _arr(weights), np.asarray(ready, bool))
    if not le.shape[0]:
        return np.asarray(-np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(ok & (w > 0), le + np.log(np.where(w > 0, w, 1.0)), -np.inf)
        top = terms.max(axis=0)
        safe = np.where(np.isfinite(top), top, 0.0)
        total = np.exp(terms - safe).sum(axis=0)
        return np.asarray(np.where(np.isfinite(top), safe + np.log(total), top))
