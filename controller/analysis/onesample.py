"""One-sample confidence sequences: absolute floors and ceilings on the canary alone.

A guard's ``minimum`` / ``maximum`` ("canary completion never below 0.85", "canary p95
latency never above 3000 ms") is decided on the canary's own samples with the same
anytime-valid machinery as the comparisons, so looking every interval costs nothing:

- proportions: the beta-binomial mixture CS of :func:`.sequential.proportion_cs_beta_binomial`
  (exact, not asymptotic), its prior centred on the bound being tested and tuned at
  ``minSamplesPerCohort``; with judge weights the effective successes and n (Kish);
- means: the one-sample anytime-valid t-test (Lindon et al. 2022) with
  ``z² = σ²/se² = n`` and prior precision ``φ = m/η`` (so ``z²/φ = η`` at n = m, the
  same tuning as the two-sample test);
- quantiles: :func:`.quantiles.histogram_quantile_cs`;
- F1 and its kin: :func:`.classification.one_sample_cs`.

Each bound is one-sided at the alpha the floor is allotted (:func:`.decide.alpha_split`
counts every floor and ceiling as one more slot of the family-wise alpha).
"""

from __future__ import annotations

import numpy as np

from .sequential import (
    CS,
    beta_binomial_prior,
    mixture_eta,
    normal_mixture_cs,
    proportion_cs_beta_binomial,
    t_mixture_radius,
)
from .stats import FloatArray


def proportion_cs(
    successes: float, n: float, alpha: float, target_n: float, centre: float,
    scale: FloatArray | float = 1.0,
) -> CS:
    """CS for a rate from (effective) successes out of (effective) n."""
    f = np.asarray(scale, float)
    a, b = beta_binomial_prior(min(max(centre, 0.01), 0.99), target_n, alpha)
    return proportion_cs_beta_binomial(successes * f, n * f, a, b, alpha)


def proportion_normal_cs(
    successes: float, n: float, alpha: float, target_n: float,
    scale: FloatArray | float = 1.0,
) -> CS:
    """The normal-mixture approximation of :func:`proportion_cs` (Agresti–Caffo variance);
    used only to estimate how many more samples a floor needs, where it is cheap to
    evaluate at many scaled counts."""
    f = np.asarray(scale, float)
    p_hat = successes / n if n > 0 else 0.5
    p_t = (successes + 1.0) / (n + 2.0)
    unit = p_t * (1.0 - p_t)
    est = np.full(f.shape, p_hat)
    return normal_mixture_cs(est, unit / (n * f), unit, alpha, target_n)


def mean_cs(
    mean: float, variance: float, n: float, alpha: float, target_n: float,
    scale: FloatArray | float = 1.0,
) -> CS:
    """One-sample anytime-valid t CS for a mean (two-sided at alpha; each side ≤ alpha)."""
    nn = n * np.asarray(scale, float)
    est = np.full(nn.shape, float(mean))
    if not (np.isfinite(mean) and np.isfinite(variance)):
        return CS(est, np.full(nn.shape, -np.inf), np.full(nn.shape, np.inf))
    se = np.sqrt(variance / np.maximum(nn, 1.0))
    phi = float(target_n) / mixture_eta(alpha)
    rad = t_mixture_radius(se, np.maximum(nn - 1.0, 0.0), nn, phi, alpha)
    rad = np.where(nn >= 2, rad, np.inf)
    return CS(est, est - rad, est + rad)
