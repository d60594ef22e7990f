"""Anytime-valid confidence sequences for quantiles, read from log-spaced histograms.

Howard & Ramdas (2022), "Sequential estimation of quantiles with applications to
A/B-testing and best-arm identification" (Bernoulli 28(3)), bound a quantile between two
order statistics whose ranks come from a time-uniform boundary for a Bernoulli sum. For
the p-quantile ``Q = Q(p)`` of a stream X₁, X₂, …:

- ``L_t = #{i ≤ t: X_i < Q}`` is a sum of Bernoulli(r) with ``r = P(X < Q) ≤ p``. Let
  ``M_t(S)`` be a mixture martingale for "rate ≤ p" (below) and
  ``j⁺_t = min{j: M_t(j) ≥ 1/α}``. If ``Q > X_(j⁺)`` then at least ``j⁺`` values lie
  below Q, so ``L_t ≥ j⁺`` and ``M_t(L_t) ≥ 1/α`` (M increases in S). By Ville's
  inequality ``P(∃t: Q > X_(j⁺_t)) ≤ α``: the upper bound is ``X_(j⁺_t)``.
- Symmetrically ``G_t = #{X_i > Q}`` has rate ``1 − F(Q) ≤ 1 − p``; with ``j⁻_t`` the
  same rank for ``1 − p``, ``Q ≥ X_(t − j⁻_t + 1)`` for all t with probability 1 − α.

The mixture is the beta-binomial e-value of :mod:`.sequential` with its Beta prior
truncated to ``q ≥ p`` (each component ``Π (q/p)^Y ((1−q)/(1−p))^(1−Y)`` with ``q ≥ p``
is a supermartingale whenever the true rate is ≤ p, so the bound also holds with ties
and discrete data):

    log M_t(S) = log B(a+S, b+t−S) + log I_{1−p}(b+t−S, a+S)
                 − log B(a, b) − log I_{1−p}(b, a) − S·log p − (t−S)·log(1−p)

with ``Beta(a, b)`` centred on p and tuned, like every mixture here, to be tightest at the
rule's ``minSamplesPerCohort`` (:func:`.sequential.beta_binomial_prior`).

Histograms. Values are kept in fixed log-spaced bins (:class:`.stats.Histogram`), so an
order statistic is known only up to its bin: an upper bound takes the upper edge of the
bin holding ``X_(j⁺)`` and a lower bound the lower edge of the bin holding
``X_(t−j⁻+1)``. The bounds are therefore conservative by at most one bin (0.5%), and
the guarantee above carries over unchanged. The point estimate is the geometric middle of the
bin holding ``X_(⌈p·t⌉)``.

Two cohorts. For ``θ = Q_c − k·Q_b`` (``k = 1 + r`` for a relative tolerance r) the
one-sided bounds combine one-sided bounds of each cohort at ``α/2`` each:
``lower(θ) = L_c − k·U_b`` and ``upper(θ) = U_c − k·L_b``; a bound of θ is wrong only if
one of its two parts is, so each side of θ holds at α (union bound).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from scipy.special import betainc, betaln

from .sequential import CS, beta_binomial_prior
from .stats import FloatArray, Histogram, bin_edges


def log_e_at_most(s: FloatArray, t: FloatArray, p: float, a: float, b: float) -> FloatArray:
    """log of the truncated beta-binomial mixture e-value against "rate ≤ p"."""
    s, t = np.asarray(s, float), np.asarray(t, float)
    with np.errstate(divide="ignore"):
        num = betaln(a + s, b + t - s) + np.log(betainc(b + t - s, a + s, 1.0 - p))
        den = betaln(a, b) + math.log(float(betainc(b, a, 1.0 - p)))
    return np.asarray(num - den - s * math.log(p) - (t - s) * math.log1p(-p))


def rank_bound(t: FloatArray, p: float, alpha: float, target_n: float) -> FloatArray:
    """``j_t = min{j: log M_t(j) ≥ log(1/α)}`` for "rate ≤ p" (t + 1 when no j ≤ t does):
    the rank whose order statistic bounds the p-quantile from above."""
    t = np.asarray(t, float)
    a, b = beta_binomial_prior(p, target_n, alpha)
    thresh = math.log(1.0 / alpha)
    lo = np.floor(p * t)  # M < 1 at or below the null mean: never rejected there
    hi = t + 1.0
    # a first guess a few standard deviations above the mean narrows the bracket (the
    # answer is the same, found in fewer steps)
    sd = np.sqrt(np.maximum(t * p * (1.0 - p), 1.0))
    for z in (2.0 * math.sqrt(thresh), 4.0 * math.sqrt(thresh)):
        guess = np.minimum(np.floor(p * t + z * sd), t)
        inside = (guess > lo) & (guess < hi)
        ok = log_e_at_most(guess, t, p, a, b) >= thresh
        hi = np.where(inside & ok, guess, hi)
        lo = np.where(inside & ~ok, guess, lo)
    # invariant: log M(lo) < thresh, and hi is either t+1 or has log M(hi) >= thresh
    for _ in range(64):
        if not np.any(hi - lo > 1):
            break
        mid = np.floor(0.5 * (lo + hi))
        ok = log_e_at_most(mid, t, p, a, b) >= thresh
        move = hi - lo > 1
        hi = np.where(move & ok, mid, hi)
        lo = np.where(move & ~ok, mid, lo)
    return np.asarray(hi)


def quantile_ranks(
    t: FloatArray, p: float, alpha: float, target_n: float
) -> tuple[FloatArray, FloatArray]:
    """(rank of the lower bound, rank of the upper bound), each valid at ``alpha``; a rank
    below 1 means no lower bound yet, above t no upper bound yet."""
    t = np.asarray(t, float)
    if t.size == 1:  # one stream (the controller): a count seen before is free
        lo1, hi1 = _ranks_one(float(t.reshape(-1)[0]), p, alpha, target_n)
        return np.full(t.shape, lo1), np.full(t.shape, hi1)
    uniq, inverse = np.unique(t, return_inverse=True)  # many streams share a count
    upper = rank_bound(uniq, p, alpha, target_n)
    lower = uniq + 1.0 - rank_bound(uniq, 1.0 - p, alpha, target_n)
    return lower[inverse].reshape(t.shape), upper[inverse].reshape(t.shape)


@lru_cache(maxsize=8192)
def _ranks_one(t: float, p: float, alpha: float, target_n: float) -> tuple[float, float]:
    upper = float(rank_bound(np.asarray(t), p, alpha, target_n))
    lower = t + 1.0 - float(rank_bound(np.asarray(t), 1.0 - p, alpha, target_n))
    return lower, upper


@lru_cache(maxsize=64)
def _rank_table(p: float, alpha: float, target_n: float) -> tuple[FloatArray, FloatArray,
                                                                   FloatArray]:
    """Rank fractions (lower/t, upper/t) on a log grid of t, computed once per
    (p, alpha, target): the "samples needed" estimate interpolates in it instead of
    solving for each scaled count."""
    t = np.unique(np.round(np.geomspace(1.0, 1e10, 241)))
    lo, hi = quantile_ranks(t, p, alpha, target_n)
    return np.log(t), lo / t, hi / t


def approx_quantile_ranks(
    t: FloatArray, p: float, alpha: float, target_n: float
) -> tuple[FloatArray, FloatArray]:
    """:func:`quantile_ranks` interpolated from a cached table (for estimates only;
    decisions use the exact ranks)."""
    log_t, lo, hi = _rank_table(p, alpha, target_n)
    x = np.log(np.maximum(np.asarray(t, float), 1.0))
    return np.interp(x, log_t, lo) * np.exp(x), np.interp(x, log_t, hi) * np.exp(x)


def _bin_at_rank(cum: FloatArray, rank: FloatArray) -> npt.NDArray[np.intp]:
    """Position (in the occupied-bin arrays) of the bin holding the order statistic of
    ``rank`` (1-based), from cumulative counts; vectorised over leading axes of rank."""
    return np.asarray(np.searchsorted(cum, rank, side="left"))


def histogram_quantile_cs(
    hist: Histogram, p: float, alpha: float, target_n: float, scale: FloatArray | float = 1.0
) -> CS:
    """Estimate and one-sided bounds (each at ``alpha``) for the p-quantile.

    ``scale`` multiplies every count (the "how many more samples" estimate asks what the
    bounds would be with ``scale`` times the data, in the same proportions)."""
    keys, counts = hist.dense()
    f = np.asarray(scale, float)
    n = float(counts.sum())
    if n == 0:
        nan = np.full(f.shape, np.nan)
        return CS(nan, np.full(f.shape, 0.0), np.full(f.shape, np.inf))
    lo_edge, hi_edge = bin_edges(keys)
    cum = np.cumsum(counts) / n  # CDF at each occupied bin's upper end
    t = np.maximum(np.round(n * f), 1.0)
    exact = t.size == 1
    ranks = quantile_ranks if exact else approx_quantile_ranks
    r_lo, r_hi = ranks(t, p, alpha, target_n)
    # rank fractions looked up in the empirical CDF (exact for scale 1: rank/t against
    # cumulative counts/n)
    eps = 1e-12
    i_hi = np.minimum(_bin_at_rank(cum, r_hi / t - eps), len(keys) - 1)
    i_lo = np.minimum(_bin_at_rank(cum, np.maximum(r_lo, 1.0) / t - eps), len(keys) - 1)
    i_est = np.minimum(_bin_at_rank(cum, np.ceil(p * t) / t - eps), len(keys) - 1)
    upper = np.where(r_hi <= t, hi_edge[i_hi], np.inf)
    lower = np.where(r_lo >= 1, lo_edge[i_lo], 0.0)
    est = np.sqrt(lo_edge[i_est] * hi_edge[i_est])
    return CS(np.asarray(est), np.asarray(lower), np.asarray(upper))


def quantile_difference(
    canary: Histogram, baseline: Histogram, p: float, k: float, alpha: float,
    target_n: float, scale: FloatArray | float = 1.0,
) -> CS:
    """CS for ``Q_c − k·Q_b`` (each side at ``alpha``: α/2 per cohort, union bound)."""
    c = histogram_quantile_cs(canary, p, alpha / 2.0, target_n, scale)
    b = histogram_quantile_cs(baseline, p, alpha / 2.0, target_n, scale)
    return combine_quantile_bounds(c, b, k)


def combine_quantile_bounds(c: CS, b: CS, k: float) -> CS:
    """``Q_c − k·Q_b`` from each cohort's bounds (already at α/2 each)."""
    with np.errstate(invalid="ignore"):
        lower = c.lower - k * b.upper
        upper = c.upper - k * b.lower
    return CS(np.asarray(c.estimate - k * b.estimate), np.asarray(lower), np.asarray(upper))


def dense_quantile_cs(
    counts: FloatArray, lo_edge: FloatArray, hi_edge: FloatArray, p: float, alpha: float,
    target_n: float,
) -> CS:
    """The same bounds for many streams at once (Monte Carlo tests): ``counts`` has shape
    (..., B) over a shared bin grid with the given edges."""
    counts = np.asarray(counts, float)
    n = counts.sum(axis=-1)
    cum = np.cumsum(counts, axis=-1)
    r_lo, r_hi = quantile_ranks(np.maximum(n, 1.0), p, alpha, target_n)
    nb = counts.shape[-1]
    # one searchsorted over all rows: offset each row's (sorted) cumulative counts
    offset = (np.arange(cum[..., 0].size).reshape(cum.shape[:-1]) * (n.max() + 2.0))
    flat = (cum + offset[..., None]).ravel()

    def at(rank: FloatArray) -> npt.NDArray[np.intp]:
        pos = np.searchsorted(flat, (rank + offset).ravel(), side="left").reshape(rank.shape)
        return np.minimum(pos - np.arange(rank.size).reshape(rank.shape) * nb, nb - 1)

    i_hi, i_lo = at(r_hi), at(np.maximum(r_lo, 1.0))
    i_est = at(np.ceil(p * np.maximum(n, 1.0)))
    upper = np.where((r_hi <= n) & (n > 0), hi_edge[i_hi], np.inf)
    lower = np.where((r_lo >= 1) & (n > 0), lo_edge[i_lo], 0.0)
    est = np.where(n > 0, np.sqrt(lo_edge[i_est] * hi_edge[i_est]), np.nan)
    return CS(np.asarray(est), np.asarray(lower), np.asarray(upper))
