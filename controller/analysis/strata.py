"""Stratified comparisons: one anytime-valid test per guard that drift cannot bias.

Why. The canary's share changes between steps (5% → 20% → 50%) while the baseline's
rate may drift over the day. Pooled over the rollout, the canary's samples are
concentrated later than the baseline's, so ``mean(canary) − k·mean(baseline)``
compares different times: Simpson's paradox. With the base rate falling 3 points
over a 45-minute rollout, a canary exactly at the tolerance was rolled back in 59% of
runs by the pooled test (benchmarks/README.md).

What. Within one step the share is constant, so the cohorts sample the same times in a
fixed ratio and the step's own difference ``θ̂_s = x̄_c,s − k·x̄_b,s`` is unbiased for
the step's (time-averaged) contrast, whatever the drift. The strata are the steps
(:meth:`.accumulator.RuleStatistics.enter_step`; a sample's stratum is the step its
timestamp falls in). They are combined with weights ``w_s``:

    θ̂_w = Σ_s w_s·θ̂_s / Σ_s w_s,      V_w = Σ_s w_s²·V_s / (Σ_s w_s)²

with ``V_s`` the stratum's variance. Under the null (``θ_s ≤ θ`` in every stratum, in
particular a canary exactly at the tolerance all along), ``E θ̂_w ≤ θ``.

Validity (the mixture over a fixed scale). Write ``S = Σ_s w_s·(θ̂_s − θ)`` and
``⟨S⟩ = Σ_s w_s²·V_s``. Within a step the share is fixed, so with the counts growing in
that ratio ``w_s·θ̂_s`` is (to first order) a sum with a fixed weight per sample: ``S``
is a martingale in sample time under ``θ_s = θ``, with predictable variance ``⟨S⟩``,
and the strata follow each other in time (the steps). By the time-uniform central
limit theorem (Waudby-Smith et al. 2021, Thm. 2; Howard et al. 2021) the half-normal
mixture ``∫ exp(λS − λ²⟨S⟩/2) dF(λ)`` over a FIXED ``λ ~ N⁺(0, ρ²)`` is an asymptotic
nonnegative supermartingale, and Ville's inequality bounds the probability that it
ever reaches ``1/α``. In θ units this is the normal-mixture boundary of
:mod:`.sequential` with variance ``V_w`` and ``τ² = ρ²·(Σw_s)²·V_w²`` (so that
``τ²/V_w = ρ²·⟨S⟩``); with ``w_s = 1/V_s`` this is the familiar fixed ``τ² = ρ²`` on
``V_w = 1/Σ 1/V_s``. ``ρ²`` is tuned as before: ``τ²/V = η`` at ``target_n`` samples in
both cohorts of one stratum.

- **Proportions** (score form, as :func:`.sequential.diff_proportions`): each tested
  value θ gets the variance the data would have if θ were the truth,
  ``V_s(θ) = p_c,s(θ)(1−p_c,s(θ))/n_c,s + k²·p̃_b,s(1−p̃_b,s)/n_b,s``, and inverse-variance
  weights ``w_s = 1/V_s(θ)`` (the score test of a common θ; the baseline rate of each
  stratum is its own nuisance, so a drifting base rate costs nothing). The bounds are
  found by bisection on θ. With one stratum this is exactly the unstratified test.
- **Means**: weights from the cohorts' pooled within-stratum variances,
  ``w_s = 1/(σ̂²_c/n_c,s + k²·σ̂²_b/n_b,s)``, so a small new stratum whose few values
  happen to be large does not get a small weight because of them (for right-skewed data
  an estimate and its own variance move together); ``V_s`` is the stratum's own plug-in
  variance, so ``V_w`` is the variance of ``θ̂_w`` whatever the variances of the strata.

Price. A stratified comparison uses only same-step baselines: the baseline of the 5%
step cannot stand in for the 50% step's. For a constant effect this costs information
(17% at the end of a 5/20/50% rollout with equal variances); it is the price of a
comparison that stays valid when the base rate moves (measured in
benchmarks/README.md, with the detection and promotion times it changes).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from scipy.special import log_ndtr

from .sequential import CS, ArrayLike, FloatArray, _arr, mixture_eta, normal_mixture_radius

ROOT_ITERS = 40
ROOT_TOL = 1e-10
"""A proportion bound is found to within 1e-10 (or after 40 Illinois steps)."""


BoolArray = npt.NDArray[np.bool_]


def _prop_parts(
    xc: FloatArray, nc: FloatArray, xb: FloatArray, nb: FloatArray, k: float
) -> tuple[BoolArray, FloatArray, FloatArray, FloatArray]:
    """Per stratum: present, θ̂_s, p̃_b (Agresti–Caffo) and the baseline's unit variance."""
    have = (nc > 0) & (nb > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        est = np.where(have, xc / np.where(have, nc, 1.0) - k * xb / np.where(have, nb, 1.0), 0.0)
    pb = (xb + 1.0) / (nb + 2.0)
    return have, est, pb, k * k * pb * (1.0 - pb)


def _prop_at(
    theta: FloatArray, nc: FloatArray, nb: FloatArray, have: BoolArray, est: FloatArray,
    pb: FloatArray, ub: FloatArray, k: float, alpha: float, target_n: float,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(θ̂_w, V_w, τ²) of the score test of θ (shape without the strata axis)."""
    eps = 0.5 / (nc + 1.0)
    q = np.clip(k * pb + theta, eps, 1.0 - eps)
    uc = q * (1.0 - q)
    with np.errstate(divide="ignore", invalid="ignore"):
        v = uc / np.where(have, nc, 1.0) + ub / np.where(have, nb, 1.0)
        info = np.where(have & (v > 0), 1.0 / np.where(v > 0, v, 1.0), 0.0)
        total = info.sum(axis=0)
        pos = total > 0
        safe = np.where(pos, total, 1.0)
        est_w = (info * est).sum(axis=0) / safe
        unit = (info * (uc + ub)).sum(axis=0) / safe
        var = np.where(pos, 1.0 / safe, np.inf)
    return est_w, var, mixture_eta(alpha) * unit / float(target_n)


def stratified_proportions(
    x_canary: ArrayLike, n_canary: ArrayLike, x_baseline: ArrayLike, n_baseline: ArrayLike,
    k: float, alpha: float, target_n: float,
) -> CS:
    """CS for ``p_c − k·p_b`` from per-stratum counts (axis 0 = strata; the rest are
    broadcast, e.g. many streams at once). One stratum: the unstratified score test."""
    xc, nc, xb, nb = np.broadcast_arrays(_arr(x_canary), _arr(n_canary), _arr(x_baseline),
                                         _arr(n_baseline))
    shape = xc.shape[1:]
    strata = xc.shape[0]
    xc, nc, xb, nb = (a.reshape(strata, -1) for a in (xc, nc, xb, nb))
    have, est, pb, ub = _prop_parts(xc, nc, xb, nb, k)

    def at(theta: FloatArray, idx: npt.NDArray[np.intp] | slice = slice(None)
           ) -> tuple[FloatArray, FloatArray]:
        """(θ̂_w, radius) at θ for the streams ``idx``."""
        e, v, t2 = _prop_at(theta, nc[:, idx], nb[:, idx], have[:, idx], est[:, idx],
                            pb[:, idx], ub[:, idx], k, alpha, target_n)
        return e, normal_mixture_radius(v, t2, alpha)

    # the estimate: θ̂_w with the weights at θ = the estimate (two fixed-point steps);
    # e1 and r0 are θ̂_w and the radius at θ = e0, so f(e0) = side·(e1 − e0) + r0
    if strata == 1:  # the weights do not matter: θ̂_w is the stratum's estimate
        e0 = np.where(have[0], est[0], 0.0)
        e1, r0 = at(e0)
    else:
        e0, _ = at(np.zeros(xc.shape[1]))
        e0, _ = at(e0)
        e1, r0 = at(e0)
    bounds = _edges(at, e0, e1, r0, k)
    nan = np.full(e0.shape, np.nan)
    any_have = have.any(axis=0)
    return CS(*(np.where(any_have, v, nan).reshape(shape) for v in (e0, *bounds)))


Evaluator = Callable[[FloatArray, "npt.NDArray[np.intp] | slice"], tuple[FloatArray, FloatArray]]


def _edges(at: Evaluator, e0: FloatArray, e1: FloatArray, r0: FloatArray, k: float
           ) -> tuple[FloatArray, FloatArray]:
    """The lower and upper edges of ``{θ: |θ̂_w(θ) − θ| < radius(V_w(θ))}``: on each
    side the root of ``f(θ) = side·(θ̂_w(θ) + side·radius(θ) − θ)`` (positive towards the
    estimate), bracketed between the estimate and a point beyond, found by regula falsi.
    Both sides of every stream are searched together (one evaluation per step for all:
    a controller's look is one stream per slice, where the per-call cost dominates)."""
    n = e0.shape[0]
    side = np.repeat([-1.0, 1.0], n)
    stream = np.tile(np.arange(n), 2)
    e0s, e1s, r0s = (np.tile(a, 2) for a in (e0, e1, r0))

    def f(theta: FloatArray, idx: npt.NDArray[np.intp]) -> FloatArray:
        e, r = at(theta, stream[idx])
        sd = side[idx]
        return np.asarray(sd * (e + sd * r - theta))

    lo, hi = -k - 1.0, 2.0
    step = np.where(np.isfinite(r0s) & (r0s > 0), 2.0 * r0s, 4.0)
    far = np.clip(e0s + side * step, lo, hi)
    f_far = f(far, np.arange(2 * n))
    for _ in range(6):  # widen until the edge is bracketed (f(far) ≤ 0)
        out = np.nonzero((f_far > 0) & (far < hi) & (far > lo))[0]
        if not out.size:
            break
        step[out] *= 2.0
        far[out] = np.clip(e0s[out] + side[out] * step[out], lo, hi)
        f_far[out] = f(far[out], out)
    got = np.clip(_root(f, e0s.copy(), far, side * (e1s - e0s) + r0s, f_far), -k, 1.0)
    return got[:n], got[n:]


def _root(f: Callable[[FloatArray, npt.NDArray[np.intp]], FloatArray], a: FloatArray,
          b: FloatArray, fa: FloatArray, fb: FloatArray) -> FloatArray:
    """Illinois regula falsi for f(a) ≥ 0 ≥ f(b) (values given) on 1-d arrays of
    streams: the crossing between; f is evaluated only for the streams not yet done."""
    a, b, fa, fb = (np.array(x, dtype=float) for x in (a, b, fa, fb))
    # no crossing in [a, b] (the CS reaches the end of the range, or no data): b stays
    unbracketed = ~(fb <= 0) | ~(fa >= 0)
    a[unbracketed] = b[unbracketed]
    last = np.zeros(a.shape)  # +1: the previous step replaced b, −1: it replaced a
    for _ in range(ROOT_ITERS):
        idx = np.nonzero(~((np.abs(b - a) <= ROOT_TOL) | (fa == 0) | (fb == 0)
                           | unbracketed))[0]
        if not idx.size:
            break
        ai, bi, fai, fbi = a[idx], b[idx], fa[idx], fb[idx]
        denom = fbi - fai
        c = np.where(denom != 0, bi - fbi * (bi - ai) / np.where(denom != 0, denom, 1.0),
                     0.5 * (ai + bi))
        c = np.where((c - ai) * (c - bi) < 0, c, 0.5 * (ai + bi))  # strictly inside
        fc = f(c, idx)
        hit = np.abs(fc) <= ROOT_TOL * 1e-2  # c is the crossing to well within ROOT_TOL
        fc = np.where(hit, 0.0, fc)
        right = fc < 0  # the crossing lies between a and c: c replaces b
        # Illinois: an end kept twice in a row has its value halved
        fai = np.where(right & (last[idx] > 0), 0.5 * fai, fai)
        fbi = np.where(~right & (last[idx] < 0), 0.5 * fbi, fbi)
        a[idx], fa[idx] = np.where(right, ai, c), np.where(right, fai, fc)
        b[idx], fb[idx] = np.where(right, c, bi), np.where(right, fc, fbi)
        last[idx] = np.where(right, 1.0, -1.0)
    return np.where(fa == 0, a, np.where(fb == 0, b, 0.5 * (a + b)))


def proportions_log_e(
    x_canary: ArrayLike, n_canary: ArrayLike, x_baseline: ArrayLike, n_baseline: ArrayLike,
    k: float, theta: float, alpha: float, target_n: float, upper: bool,
) -> FloatArray:
    """log of the one-sided mixture e-value against ``p_c − k·p_b = θ`` (evidence that
    the contrast is above θ when ``upper``, below it otherwise); the CS of
    :func:`stratified_proportions` excludes θ on that side iff it reaches ``log(1/α)``
    (simulations decide with this, without the bisection)."""
    xc, nc, xb, nb = np.broadcast_arrays(_arr(x_canary), _arr(n_canary), _arr(x_baseline),
                                         _arr(n_baseline))
    have, est, pb, ub = _prop_parts(xc, nc, xb, nb, k)
    e, v, t2 = _prop_at(np.full(xc.shape[1:], float(theta)), nc, nb, have, est, pb, ub, k,
                        alpha, target_n)
    z = (e - theta) / np.sqrt(v) if upper else (theta - e) / np.sqrt(v)
    return one_sided_log_e(z, v, t2)


def one_sided_log_e(z: ArrayLike, variance: ArrayLike, tau2: ArrayLike) -> FloatArray:
    """log of the half-normal mixture e-value ``2·sqrt(V/(V+τ²))·exp(u²/2)·Φ(u)``,
    ``u = z·sqrt(τ²/(V+τ²))`` for a standardised statistic z (see :mod:`.sequential`);
    −inf where there is no information."""
    za, v, t2 = np.broadcast_arrays(_arr(z), _arr(variance), _arr(tau2))
    ok = np.isfinite(za) & np.isfinite(v) & (v > 0) & (t2 > 0)
    vs, ts, zs = np.where(ok, v, 1.0), np.where(ok, t2, 1.0), np.where(ok, za, 0.0)
    u = zs * np.sqrt(ts / (vs + ts))
    out = np.log(2.0) + 0.5 * np.log(vs / (vs + ts)) + 0.5 * u * u + log_ndtr(u)
    return np.asarray(np.where(ok, out, -np.inf))


def stratified_means(
    mean_canary: ArrayLike, var_canary: ArrayLike, n_canary: ArrayLike,
    mean_baseline: ArrayLike, var_baseline: ArrayLike, n_baseline: ArrayLike,
    k: float, alpha: float, target_n: float,
) -> CS:
    """CS for ``μ_c − k·μ_b`` from per-stratum moments (axis 0 = strata): fixed-scale
    half-normal mixture on the weighted sum (see the module docstring). ``n`` may be
    effective sample sizes (judge weights); a stratum missing a cohort is skipped."""
    mc, vc, nc, mb, vb, nb = np.broadcast_arrays(
        _arr(mean_canary), _arr(var_canary), _arr(n_canary), _arr(mean_baseline),
        _arr(var_baseline), _arr(n_baseline))
    vb = k * k * vb
    have = (nc > 0) & (nb > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ncs, nbs = np.where(have, nc, 1.0), np.where(have, nb, 1.0)
        # pooled within-stratum variances per cohort (for the weights and the scale)
        dfc, dfb = np.maximum(nc - 1.0, 0.0) * have, np.maximum(nb - 1.0, 0.0) * have
        pc = (dfc * vc).sum(axis=0) / np.maximum(dfc.sum(axis=0), 1.0)
        pbv = (dfb * vb).sum(axis=0) / np.maximum(dfb.sum(axis=0), 1.0)
        wv = pc / ncs + pbv / nbs
        w = np.where(have & (wv > 0), 1.0 / np.where(wv > 0, wv, 1.0), 0.0)
        big_w = w.sum(axis=0)
        pos = big_w > 0
        safe = np.where(pos, big_w, 1.0)
        est = (w * (mc - k * mb)).sum(axis=0) / safe
        s_var = (w * w * (vc / ncs + vb / nbs)).sum(axis=0)  # ⟨S⟩
        var = np.where(pos, s_var / (safe * safe), np.inf)
        # fixed ρ² = η·u/target (u the pooled unit variance); τ² = ρ²·(Σw)²·V_w². With one
        # stratum and w = 1/V this is τ² = η·(σ²_c + k²σ²_b)/target, the unstratified test
        unit = pc + pbv
        tau2 = mixture_eta(alpha) * unit / float(target_n) * big_w * big_w * var * var
        rad = normal_mixture_radius(np.where(pos, var, 1.0), np.where(pos, tau2, 1.0), alpha)
    nan = np.full(est.shape, np.nan)
    est = np.where(pos, est, nan)
    rad = np.where(pos & (s_var > 0), rad, np.where(pos, 0.0, np.nan))
    return CS(np.asarray(est), np.asarray(est - rad), np.asarray(est + rad))
