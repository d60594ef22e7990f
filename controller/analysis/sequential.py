"""Anytime-valid inference: confidence sequences that survive continuous peeking.

Every function returns a :class:`CS` — the estimate of a contrast and ONE-SIDED bounds,
each valid at level ``alpha`` uniformly over time (``P(∃t: θ < lower_t) ≤ alpha`` and
likewise for ``upper``). All functions are vectorised over numpy arrays so that the
Monte Carlo tests can run thousands of streams at once; scalars go in and 0-d arrays
come out (``float(cs.lower)``). Infinite bounds mean "no information yet".

The contrast is always ``θ = μ_canary − k·μ_baseline``: ``k = 1`` for an absolute
tolerance, ``k = 1 + r`` for a relative tolerance ``r`` (``"latency may rise 10%"``
tests ``μ_c − 1.1·μ_b ≤ 0``), so one linear contrast covers both cases.

Normal mixture (mSPRT; Robbins 1970, Johari–Pekelis–Walsh 2017, Howard et al. 2021,
Waudby-Smith et al. 2021 "Time-uniform central limit theory")
    With ``V = s_c²/n_c + k²·s_b²/n_b`` the plug-in variance of ``θ̂`` and a N(0, τ²)
    mixture over the effect, the two-sided mixture likelihood ratio (Johari et al.) is
    ``Λ = sqrt(V/(V+τ²))·exp(τ²(θ̂−θ)²/(2V(V+τ²)))`` and ``{θ: Λ < 1/α}`` is the
    two-sided CS. For one-sided bounds we use the half-normal mixture, which is ``Λ⁺ =
    2·sqrt(V/(V+τ²))·exp(u²/2)·Φ(u)`` with ``u = τ(θ̂−θ)/sqrt(V(V+τ²))``; the bound is
    ``θ̂ ∓ u*·sqrt(V)·sqrt(1 + V/τ²)`` where ``u*`` solves
    ``u²/2 + log Φ(u) = log(1/α) + ½·log(1+τ²/V) − log 2`` (Newton's method; the
    left side is convex and increasing for u ≥ 0). Validity is asymptotic because
    ``V`` is estimated (Waudby-Smith et al., Thm. 2); the A/A simulations in
    ``tests/test_analysis_simulation.py`` check it at the sample sizes we use.

    Choice of τ²: the boundary width at information ``1/V*`` is minimised (Howard
    et al. 2021, eq. 14; Waudby-Smith et al. §3) by ``τ² = η·V*`` with
    ``η = L + log(1 + L)``, ``L = 2·log(1/α)``. We take ``V*`` as the variance at the
    rule's ``minSamplesPerCohort`` m in both cohorts: ``V* = (s_c² + k²·s_b²)/m``, so the
    CS is tightest when the minimum sample count is reached (when a PASS first
    becomes possible).

Difference of proportions (score form)
    The same normal mixture, but each value ``θ`` is tested with the variance the
    data would have IF ``θ`` were the truth (a score test, as in Wilson's interval):
    ``V(θ) = p_c(θ)(1−p_c(θ))/n_c + k²·p̃_b(1−p̃_b)/n_b`` with ``p_c(θ) = k·p̃_b + θ``
    and ``p̃_b = (x_b+1)/(n_b+2)`` (Agresti–Caffo pseudo-counts keep it inside (0, 1)),
    and the CS is ``{θ: |θ̂ − θ| < radius(V(θ))}``, its edges found by regula falsi.
    A decision only ever asks "is θ beyond the tolerance?", i.e. tests the point
    ``θ = tolerance``, so the variance that matters is the one at the tolerance
    boundary. The plug-in (Wald) form used the canary's own variance, which under a
    regression is larger than at the boundary (0.16 at a success rate of 0.80 against
    0.106 at the boundary 0.88; 0.029 at a failure rate of 3% against 0.015 at 1.5%),
    which made detection 1.5–2× slower than the Bernoulli SPRT bound; the score form
    removes that gap. Validity is asymptotic like the rest of the normal-mixture
    family (a consistent variance under the null tested). The normal approximation is
    poor in the long tail of a rare outcome (few expected events: a 1.5% rate over 80
    samples expects 1.2 events), so a FAIL additionally needs
    ``n_c·min(p, 1−p) ≥ MIN_EXPECTED_EVENTS`` (5) for the canary at the boundary
    (:func:`proportion_fail_ready`), the classical rule for the binomial's normal
    approximation; the A/A simulations at the tolerance boundary check rare rates at a
    5% canary share.

Anytime-valid t-test (Lindon, Ham, Tingley, Bojinov 2022, "Anytime-valid linear models
and regression adjusted causal inference"; cross-checked against ``savvi``)
    For a coefficient with t-statistic ``t``, ``ν`` residual degrees of freedom,
    ``z² = σ²/se²`` and a N(0, σ²/φ) prior on the effect, the Bayes factor is
    ``BF = sqrt(r)·((1 + t²/ν)/(1 + r·t²/ν))^((ν+1)/2)`` with ``r = φ/(φ + z²)``.
    Inverting ``BF < 1/α`` gives the radius ``se·sqrt(ν·(1−c)/(c−r))`` with
    ``c = (r·α²)^(1/(ν+1))`` (infinite while ``c ≤ r``). The CS is two-sided at α, so
    each side is a (slightly conservative) one-sided bound at α. For two cohorts we
    use the Welch standard error ``se² = s_c²/n_c + k²s_b²/n_b`` with
    Welch–Satterthwaite ``ν`` and ``z² = s_p²/se²`` (``s_p²`` pooled), which equals
    the regression form exactly when the variances are pooled (``pooled=True``)
    and is robust to unequal variances with unequal traffic shares. ``φ = m/(2η)``
    puts ``τ²/V = η`` at ``n_c = n_b = m``, the same tuning as the normal mixture.

Beta-binomial mixture for event counts with a known traffic share ``s``
    With event rates per request ``λ_c``, ``λ_b`` and canary share ``s``, each event is
    a canary event with probability ``p = s·ρ/(s·ρ + 1 − s)`` for the rate ratio
    ``ρ = λ_c/λ_b``, independently given the merged event stream. For any ``p``
    ``M(p) = B(a + x, b + E − x) / (B(a, b)·p^x·(1−p)^(E−x))`` (x canary events out
    of E) is a nonnegative martingale with mean 1, so ``1/M(p₀)`` is an always-valid
    p-value for ``p = p₀`` and ``{p: M(p) < 1/α}`` is a CS, mapped to ``ρ`` by the
    monotone ``ρ = p(1−s)/(s(1−p))``. The prior Beta(c·s, c·(1−s)) is centred on "no
    change" with ``c + 1 = E*/η`` (prior variance η times the binomial variance at
    ``E*`` target events). The share must be constant: the caller resets the counts
    at every traffic step (counts restart per stage).

F1 difference
    Macro-F1 is a smooth function of the multinomial cell probabilities; its
    per-observation variance comes from the delta method (see
    :func:`controller.analysis.stats.macro_f1_unit_variance`), computed on counts
    with half a pseudo-count per cell so a perfect classifier does not get zero
    variance. ``θ = F1_c − k·F1_b`` then uses the asymptotic normal-mixture CS.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from scipy.special import betaln, log_ndtr

from .stats import macro_f1, macro_f1_unit_variance

FloatArray = npt.NDArray[np.float64]
ArrayLike = npt.ArrayLike


class CS(NamedTuple):
    """Estimate and one-sided anytime-valid bounds (each at the requested alpha)."""

    estimate: FloatArray
    lower: FloatArray
    upper: FloatArray


def _arr(x: ArrayLike) -> FloatArray:
    return np.asarray(x, dtype=float)


def mixture_eta(alpha: float) -> float:
    """τ²/V at the target sample size: ``L + log(1+L)``, ``L = 2·log(1/α)``."""
    big_l = 2.0 * np.log(1.0 / alpha)
    return float(big_l + np.log1p(big_l))


def mixture_tau2(unit_variance: ArrayLike, target_n: float, alpha: float) -> FloatArray:
    """Mixture variance tightest at ``target_n`` per cohort (see module docstring)."""
    return mixture_eta(alpha) * _arr(unit_variance) / float(target_n)


def msprt_log_lr(
    estimate: ArrayLike, null: ArrayLike, variance: ArrayLike, tau2: ArrayLike
) -> FloatArray:
    """log Λ of the two-sided normal-mixture SPRT (Johari et al. 2017, eq. 11)."""
    v, t2 = _arr(variance), _arr(tau2)
    d = _arr(estimate) - _arr(null)
    return np.asarray(0.5 * np.log(v / (v + t2)) + t2 * d * d / (2.0 * v * (v + t2)))


def normal_mixture_radius_two_sided(
    variance: ArrayLike, tau2: ArrayLike, alpha: float
) -> FloatArray:
    """Half-width of the two-sided normal-mixture CS: ``{θ: Λ < 1/α}``."""
    v, t2 = _arr(variance), _arr(tau2)
    return np.asarray(np.sqrt(v * (v + t2) / t2 * 2.0 * np.log(np.sqrt((v + t2) / v) / alpha)))


def normal_mixture_radius(variance: ArrayLike, tau2: ArrayLike, alpha: float) -> FloatArray:
    """Distance from the estimate to a one-sided bound valid at ``alpha`` (half-normal
    mixture). Zero variance gives zero radius (deterministic data)."""
    v, t2 = np.broadcast_arrays(_arr(variance), _arr(tau2))
    pos = (v > 0) & (t2 > 0)
    vs = np.where(pos, v, 1.0)
    ts = np.where(pos, t2, 1.0)
    c = np.log(1.0 / alpha) + 0.5 * np.log1p(ts / vs) - np.log(2.0)
    u = np.sqrt(2.0 * np.maximum(c, 0.0))
    for _ in range(12):  # Newton on g(u) = u²/2 + log Φ(u) − c, convex and increasing
        lphi = log_ndtr(u)
        g = 0.5 * u * u + lphi - c
        dg = u + np.exp(-0.5 * u * u - 0.5 * np.log(2.0 * np.pi) - lphi)
        step = g / dg
        u = np.maximum(u - step, 0.0)
        if not np.any(np.abs(step) > 1e-13 * np.maximum(u, 1.0)):
            break  # converged (quadratically, in about five steps)
    return np.asarray(np.where(pos, u * np.sqrt(vs) * np.sqrt(1.0 + vs / ts), 0.0))


def normal_mixture_cs(
    estimate: ArrayLike,
    variance: ArrayLike,
    unit_variance: ArrayLike,
    alpha: float,
    target_n: float,
) -> CS:
    """Normal-mixture CS for a contrast with estimated variance ``variance`` and
    per-observation variance ``unit_variance`` (used to set τ²)."""
    est = _arr(estimate)
    rad = normal_mixture_radius(variance, mixture_tau2(unit_variance, target_n, alpha), alpha)
    return CS(est, est - rad, est + rad)


MIN_EXPECTED_EVENTS = 5.0


def diff_proportions(
    x_canary: ArrayLike,
    n_canary: ArrayLike,
    x_baseline: ArrayLike,
    n_baseline: ArrayLike,
    k: float,
    alpha: float,
    target_n: float,
) -> CS:
    """CS for ``p_c − k·p_b`` from success counts: normal mixture, score variance
    (the variance at each tested value of θ; see the module docstring). One stratum of
    :func:`.strata.stratified_proportions`, which finds each bound as the edge of
    ``{θ: |θ̂ − θ| < radius(V(θ))}`` by regula falsi."""
    from .strata import stratified_proportions  # strata builds on this module

    xc, nc, xb, nb = np.broadcast_arrays(
        _arr(x_canary), _arr(n_canary), _arr(x_baseline), _arr(n_baseline))
    cs = stratified_proportions(xc[None], nc[None], xb[None], nb[None], k, alpha, target_n)
    return CS(*(np.asarray(v).reshape(xc.shape) for v in cs))


def proportion_fail_ready(
    n_canary: ArrayLike, n_baseline: ArrayLike, x_baseline: ArrayLike, k: float, threshold: float,
    min_events: float = MIN_EXPECTED_EVENTS,
) -> npt.NDArray[np.bool_]:
    """Enough expected events for the normal approximation at the boundary θ = threshold:
    ``n_c·min(p, 1−p) ≥ min_events`` for the canary's rate p at the boundary (from the
    smoothed baseline rate). Only the canary's side: its tail is what the test reads
    (a perfect baseline has no failures to expect and must not block a rollback)."""
    nc, nb, xb = _arr(n_canary), _arr(n_baseline), _arr(x_baseline)
    pb = (xb + 1.0) / (nb + 2.0)
    pc = np.clip(k * pb + threshold, 0.0, 1.0)
    return np.asarray(nc * np.minimum(pc, 1.0 - pc) >= min_events)


def diff_means_normal(
    mean_canary: ArrayLike,
    var_canary: ArrayLike,
    n_canary: ArrayLike,
    mean_baseline: ArrayLike,
    var_baseline: ArrayLike,
    n_baseline: ArrayLike,
    k: float,
    alpha: float,
    target_n: float,
) -> CS:
    """CS for ``μ_c − k·μ_b`` with plug-in variances (asymptotic normal mixture)."""
    vc, vb = _arr(var_canary), k * k * _arr(var_baseline)
    est = _arr(mean_canary) - k * _arr(mean_baseline)
    return normal_mixture_cs(est, vc / _arr(n_canary) + vb / _arr(n_baseline), vc + vb, alpha,
                             target_n)


def t_mixture_phi(target_n: float, alpha: float) -> float:
    """Prior precision φ (in units of σ²) that puts τ²/V = η at n_c = n_b = target_n."""
    return float(target_n) / (2.0 * mixture_eta(alpha))


def t_mixture_log_bf(t2: ArrayLike, nu: ArrayLike, z2: ArrayLike, phi: float) -> FloatArray:
    """log Bayes factor of the anytime-valid t-test (Lindon et al. 2022)."""
    t2a, nua, z2a = _arr(t2), _arr(nu), _arr(z2)
    r = phi / (phi + z2a)
    return np.asarray(
        0.5 * np.log(r) + 0.5 * (nua + 1.0) * (np.log1p(t2a / nua) - np.log1p(r * t2a / nua))
    )


def t_mixture_radius(
    se: ArrayLike, nu: ArrayLike, z2: ArrayLike, phi: float, alpha: float
) -> FloatArray:
    """Half-width of the t-mixture CS ``{δ: BF(δ) < 1/α}``; inf while uninformative."""
    se_a, nua, z2a = _arr(se), _arr(nu), _arr(z2)
    r = phi / (phi + z2a)
    c = np.exp((np.log(r) + 2.0 * np.log(alpha)) / (nua + 1.0))
    ok = (c > r) & (nua > 0)
    ratio = np.where(ok, nua * (1.0 - c) / np.where(ok, c - r, 1.0), np.inf)
    with np.errstate(invalid="ignore"):  # 0·inf in the branch np.where discards
        radius = se_a * np.sqrt(ratio)
    return np.asarray(np.where(se_a > 0, radius, np.where(ok, 0.0, np.inf)))


def diff_means_t(
    mean_canary: ArrayLike,
    var_canary: ArrayLike,
    n_canary: ArrayLike,
    mean_baseline: ArrayLike,
    var_baseline: ArrayLike,
    n_baseline: ArrayLike,
    k: float,
    alpha: float,
    target_n: float,
    *,
    pooled: bool = False,
    nu: ArrayLike | None = None,
    phi: float | None = None,
) -> CS:
    """Anytime-valid t-test CS for ``μ_c − k·μ_b`` with unknown variances.

    ``pooled=True`` with ``nu`` given reproduces the regression ``y ~ 1 + canary`` of
    Lindon et al. (and savvi's ``LinearRegression``) on baseline values scaled by k.
    """
    nc, nb = _arr(n_canary), _arr(n_baseline)
    vc, vb = _arr(var_canary), k * k * _arr(var_baseline)
    est = _arr(mean_canary) - k * _arr(mean_baseline)
    df = nc + nb - 2.0
    sp2 = ((nc - 1.0) * vc + (nb - 1.0) * vb) / np.maximum(df, 1.0)
    if pooled:
        se2 = sp2 * (1.0 / nc + 1.0 / nb)
        nu_a = df if nu is None else _arr(nu)
    else:
        a, b = vc / nc, vb / nb
        se2 = a + b
        den = a * a / np.maximum(nc - 1.0, 1.0) + b * b / np.maximum(nb - 1.0, 1.0)
        welch = np.where(den > 0, se2 * se2 / np.where(den > 0, den, 1.0), df)
        nu_a = np.clip(welch, 1.0, np.maximum(df, 1.0)) if nu is None else _arr(nu)
    balanced = nc * nb / (nc + nb)
    z2 = np.where(se2 > 0, sp2 / np.where(se2 > 0, se2, 1.0), balanced)
    phi_v = t_mixture_phi(target_n, alpha) if phi is None else phi
    rad = t_mixture_radius(np.sqrt(se2), nu_a, z2, phi_v, alpha)
    rad = np.where((nc >= 2) & (nb >= 2), rad, np.inf)
    return CS(est, est - rad, est + rad)


def beta_binomial_prior(share: float, target_events: float, alpha: float) -> tuple[float, float]:
    """Beta(a, b) centred on the share, concentration ``c = max(E*/η − 1, 2)``."""
    c = max(float(target_events) / mixture_eta(alpha) - 1.0, 2.0)
    return c * share, c * (1.0 - share)


def beta_binomial_log_e(
    x: ArrayLike, events: ArrayLike, p0: ArrayLike, a: float, b: float
) -> FloatArray:
    """log of the beta-binomial mixture e-value ``M(p₀)`` (always-valid p = 1/M)."""
    xa, ea, pa = _arr(x), _arr(events), _arr(p0)
    return np.asarray(
        betaln(a + xa, b + ea - xa) - betaln(a, b) - xa * np.log(pa) - (ea - xa) * np.log1p(-pa)
    )


def _bisect(
    f: Callable[[FloatArray], FloatArray], lo: FloatArray, hi: FloatArray, iters: int = 70
) -> FloatArray:
    """Vectorised bisection for a sign change; ``f(lo) > 0 ≥ f(hi)`` is assumed."""
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        pos = f(mid) > 0
        lo, hi = np.where(pos, mid, lo), np.where(pos, hi, mid)
    return 0.5 * (lo + hi)


def proportion_cs_beta_binomial(
    x: ArrayLike, events: ArrayLike, a: float, b: float, alpha: float
) -> CS:
    """CS for the canary probability p of each event: ``{p: M(p) < 1/α}``."""
    xa, ea = np.broadcast_arrays(_arr(x), _arr(events))
    xa = np.minimum(xa, ea)
    thresh = np.log(1.0 / alpha)
    phat = np.where(ea > 0, xa / np.where(ea > 0, ea, 1.0), 0.5)
    lo_lim, hi_lim = -60.0, 60.0  # logit range searched
    centre = np.log(np.clip(phat, 1e-300, None)) - np.log(np.clip(1.0 - phat, 1e-300, None))
    centre = np.clip(centre, lo_lim, hi_lim)

    def f(z: FloatArray) -> FloatArray:
        p = 1.0 / (1.0 + np.exp(-z))
        p = np.clip(p, 1e-300, 1.0 - 1e-16)
        return beta_binomial_log_e(xa, ea, p, a, b) - thresh

    lo_z = _bisect(f, np.full_like(centre, lo_lim), centre.copy())
    hi_z = -_bisect(lambda z: f(-z), np.full_like(centre, -hi_lim), -centre)
    lower = np.where(xa > 0, 1.0 / (1.0 + np.exp(-lo_z)), 0.0)
    upper = np.where(xa < ea, 1.0 / (1.0 + np.exp(-hi_z)), 1.0)
    return CS(phat, lower, upper)


def rate_ratio_cs(
    canary_events: ArrayLike,
    baseline_events: ArrayLike,
    share: float,
    alpha: float,
    target_events: float,
) -> CS:
    """CS for the event-rate ratio ρ = λ_c/λ_b from counts and the canary share s."""
    if not 0.0 < share < 1.0:
        raise ValueError(f"traffic share must be in (0, 1), got {share}")
    xc, xb = _arr(canary_events), _arr(baseline_events)
    a, b = beta_binomial_prior(share, target_events, alpha)
    p = proportion_cs_beta_binomial(xc, xc + xb, a, b, alpha)
    odds = (1.0 - share) / share
    with np.errstate(divide="ignore", invalid="ignore"):
        to_rho = lambda q: np.where(q < 1.0, q / (1.0 - q) * odds, np.inf)  # noqa: E731
        est = np.where(xc + xb > 0, to_rho(p.estimate), np.nan)
        return CS(np.asarray(est), np.asarray(to_rho(p.lower)), np.asarray(to_rho(p.upper)))


def ratio_to_p(rho: float, share: float) -> float:
    """Canary probability of an event under rate ratio ρ: ``sρ/(sρ + 1 − s)``."""
    return share * rho / (share * rho + 1.0 - share)


def f1_difference(
    counts_canary: ArrayLike,
    counts_baseline: ArrayLike,
    k: float,
    alpha: float,
    target_n: float,
    miss_canary: ArrayLike | None = None,
    miss_baseline: ArrayLike | None = None,
) -> CS:
    """CS for ``F1_c − k·F1_b`` (macro-F1, delta-method variance, normal mixture)."""
    cc, cb = _arr(counts_canary), _arr(counts_baseline)
    mc = None if miss_canary is None else _arr(miss_canary)
    mb = None if miss_baseline is None else _arr(miss_baseline)
    nc = cc.sum(axis=(-2, -1)) + (0.0 if mc is None else mc.sum(axis=-1))
    nb = cb.sum(axis=(-2, -1)) + (0.0 if mb is None else mb.sum(axis=-1))
    est = macro_f1(cc, mc) - k * macro_f1(cb, mb)
    # half a pseudo-count per observed cell for the variance only (no zero variance)
    vc = macro_f1_unit_variance(cc + 0.5 * _support(cc), mc)
    vb = k * k * macro_f1_unit_variance(cb + 0.5 * _support(cb), mb)
    return normal_mixture_cs(est, vc / nc + vb / nb, vc + vb, alpha, target_n)


def _support(counts: FloatArray) -> FloatArray:
    """Cells whose row or column class occurs: where pseudo-counts may go."""
    rows = counts.sum(axis=-1) > 0
    cols = counts.sum(axis=-2) > 0
    present = rows | cols
    return np.asarray(present[..., :, None] & present[..., None, :], dtype=float)
