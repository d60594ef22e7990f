"""The traffic-mix check (sample ratio mismatch): are the cohorts comparable at all?

A canary comparison is only fair if both cohorts see the same traffic. Two checks, on
the samples counted since the current traffic step began (the caller resets them at
every step, :meth:`.accumulator.RuleStatistics.reset_mix`, because the canary's share
changes with the weight):

**Mix** over queue, risk and task (each dimension its own test). Conditionally on the
sequence of categories, each sample is a canary sample with probability ``s_j`` in
category j; under "same mix" ``s_j = s`` for every j, with s unknown. Per category the
alternative is a Beta(½, ½)-binomial mixture (the two-cell case of the
Dirichlet-multinomial mixture of Lindon & Malek 2022, "Anytime-valid inference for
multinomial count data"); the null's unknown s is removed by taking the infimum over
it, which is the likelihood at the pooled share ŝ (universal inference, Wasserman,
Ramdas & Balakrishnan 2020):

    log E = Σ_j [log B(C_j + ½, B_j + ½) − log B(½, ½)] − [C·log ŝ + B·log(1 − ŝ)]

For every fixed s the ratio of the mixture to the null likelihood is a nonnegative
martingale with mean one, and E is below it, so ``P(∃t: E_t ≥ 1/α) ≤ α`` (Ville):
looking every interval never inflates the false-alarm rate.

**Share** against the expected canary share (canary pods / all pods, passed by the
caller): the beta-binomial mixture CS for the canary's share of samples, prior centred
on the expected share. A share outside the CS is *reported*; the rollout is held only
when the CS lies entirely outside ``expected × (1 ± shareBand)`` (replica ratio does not
give an exact share: per-pod throughput and load balancing move it a little).

Both only ever **hold** promotion, never roll back: a false alarm costs time, not a
healthy canary. Their alpha (``analysis.trafficMix.alpha``, default 0.001) is separate
from the guards' false-rollback alpha and split evenly over the tests and the steps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import betaln

from .sequential import beta_binomial_prior, proportion_cs_beta_binomial
from .stats import FloatArray

HALF_BETA = float(betaln(0.5, 0.5))


def mix_log_e_array(canary: npt.ArrayLike, baseline: npt.ArrayLike) -> FloatArray:
    """log e-value against "the canary share is the same in every category", for counts
    per category on the last axis (vectorised over leading axes for simulations)."""
    c = np.asarray(canary, float)
    b = np.asarray(baseline, float)
    tc, tb = c.sum(axis=-1), b.sum(axis=-1)
    both = (tc > 0) & (tb > 0)
    s = np.where(both, tc / np.where(both, tc + tb, 1.0), 0.5)
    alt = np.sum(betaln(c + 0.5, b + 0.5) - HALF_BETA, axis=-1)
    null = tc * np.log(s) + tb * np.log1p(-s)
    return np.asarray(np.where(both, alt - null, 0.0))


def mix_log_e(canary: Sequence[float], baseline: Sequence[float]) -> float:
    """:func:`mix_log_e_array` for one set of counts."""
    return float(mix_log_e_array(canary, baseline))


@dataclass(frozen=True)
class MixResult:
    dimension: str
    log_e: float
    alpha: float
    canary: dict[str, int]
    baseline: dict[str, int]

    @property
    def mismatch(self) -> bool:
        return self.log_e >= math.log(1.0 / self.alpha)

    def worst(self) -> str:
        """The category whose canary share departs most from the pooled share."""
        tc, tb = sum(self.canary.values()), sum(self.baseline.values())
        pooled = tc / max(tc + tb, 1)
        best, gap = "", -1.0
        for cat in sorted(set(self.canary) | set(self.baseline)):
            n = self.canary.get(cat, 0) + self.baseline.get(cat, 0)
            if n == 0:
                continue
            share = self.canary.get(cat, 0) / n
            if abs(share - pooled) * math.sqrt(n) > gap:
                best, gap = (f"{self.dimension}={cat}: canary share {share:.3f} over {n} "
                             f"samples vs {pooled:.3f} overall"), abs(share - pooled) * math.sqrt(n)
        return best


def mix_check(dimension: str, counts: Mapping[str, tuple[int, int]], alpha: float) -> MixResult:
    """``counts``: category → (baseline, canary) samples since the step began."""
    cats = sorted(counts)
    canary = [counts[k][1] for k in cats]
    baseline = [counts[k][0] for k in cats]
    return MixResult(dimension, mix_log_e(canary, baseline), alpha,
                     {k: counts[k][1] for k in cats}, {k: counts[k][0] for k in cats})


@dataclass(frozen=True)
class ShareResult:
    expected: float
    observed: float
    lower: float
    upper: float
    band: float
    n: int

    @property
    def off(self) -> bool:
        """The CS excludes the expected share (reported, not held)."""
        return self.lower > self.expected or self.upper < self.expected

    @property
    def mismatch(self) -> bool:
        """The CS lies outside the tolerated band: hold."""
        return (self.lower > self.expected * (1.0 + self.band)
                or self.upper < self.expected * (1.0 - self.band))


def share_check(canary: int, baseline: int, expected: float, band: float, alpha: float,
                target_n: float) -> ShareResult:
    n = canary + baseline
    a, b = beta_binomial_prior(expected, target_n, alpha)
    cs = proportion_cs_beta_binomial(float(canary), float(n), a, b, alpha)
    return ShareResult(expected, canary / n if n else float("nan"), float(cs.lower),
                       float(cs.upper), band, n)
