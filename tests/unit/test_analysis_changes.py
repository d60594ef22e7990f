"""The change detector (controller.analysis.changes): its accounting and its guarantee.

- Accounting: every bucket start a rollout can have, weighted as ``decide.py`` weighs
  it, sums to at most W, whatever the step durations and however long the rollout is
  held past maxDuration (hypothesis) — the premise of the Ville argument.
- The statistic: the signed root of the profile likelihood ratio matches a direct
  numerical maximisation (scipy), and its sign follows the estimate.
- Monte Carlo, a look every interval through 5% → 20% → 50% with the canary exactly at
  the tolerance all along: the detector's false-alarm rate stays within its alpha for a
  rare rate (where the score statistic does not: shown), a common one with the base
  rate drifting, and a skewed mean; a change in the middle of a step is caught within a
  few intervals of its onset.

Streams are simulated thousands at a time; bound: alpha + 3 Monte Carlo standard errors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize_scalar
from scipy.stats import binom

from controller.analysis.changes import (
    MAX_STARTS,
    detector_log_r,
    mean_log_e,
    profile_baseline,
    proportion_log_e,
    slot_weight,
    step_start_weight,
    total_weight,
)
from controller.analysis.decide import BURN_IN, MEAN_BURN_IN
from controller.analysis.sequential import proportion_fail_ready
from controller.analysis.strata import proportions_log_e

from .test_analysis_simulation import slack

L, SHARES, PER_LOOK = 15, (0.05, 0.2, 0.5), 400
K = 3 * L
TARGET = 800.0


@settings(max_examples=60, deadline=None, derandomize=True)
@given(looks=st.integers(1, 200), steps=st.integers(1, 6),
       lengths=st.lists(st.floats(0.3, 80.0), min_size=6, max_size=6),
       extra=st.integers(0, 400))
def test_every_start_a_rollout_can_have_weighs_at_most_w(looks: int, steps: int,
                                                         lengths: list[float],
                                                         extra: int) -> None:
    """Steps of any duration (in intervals, not aligned to them), the rollout held
    ``extra`` intervals past its horizon: buckets are aligned to each step's start."""
    start, total = 0.0, 0.0
    end = looks + extra
    for s in range(steps):
        stop = end if s == steps - 1 else min(start + lengths[s], end)
        total += step_start_weight(looks, steps) if s > 0 else 0.0
        b = 1
        while start + b < stop:  # later buckets of this step
            total += slot_weight(math.floor(start + b + 1e-9), looks)
            b += 1
        start = stop
        if start >= end:
            break
    assert total <= total_weight(looks, steps) + 1e-9


def test_signed_root_matches_a_direct_maximisation() -> None:
    rng = np.random.default_rng(5)
    theta, k = 0.02, 1.0
    for _ in range(20):
        nc, nb = int(rng.integers(20, 400)), int(rng.integers(20, 2000))
        xc, xb = int(rng.binomial(nc, 0.07)), int(rng.binomial(nb, 0.03))

        def neg(p: float, xc: int = xc, xb: int = xb, nc: int = nc, nb: int = nb) -> float:
            return -float(binom.logpmf(xc, nc, k * p + theta) + binom.logpmf(xb, nb, p))

        ref = minimize_scalar(neg, bounds=(1e-9, 1 - theta - 1e-9), method="bounded",
                              options={"xatol": 1e-12})
        got = float(profile_baseline(np.asarray(xc, float), np.asarray(nc, float),
                                     np.asarray(xb, float), np.asarray(nb, float), k, theta))
        assert got == pytest.approx(ref.x, abs=1e-6)
    # more evidence above θ gives a larger e-value on the upper side, none on the lower
    le = [float(proportion_log_e(x, 200, 6, 200, 1.0, 0.02, 0.01, TARGET, upper=True))
          for x in (10, 20, 30)]
    assert le[0] < le[1] < le[2]
    assert float(proportion_log_e(30, 200, 6, 200, 1.0, 0.02, 0.01, TARGET, upper=False)) < 0


def _rate_streams(rng: np.random.Generator, runs: int, base: np.ndarray, change: float,
                  onset: int = 0) -> list[np.ndarray]:
    """Per-interval counts (T, runs): base rate per interval (drift), canary base+change
    from ``onset``."""
    n_c = np.repeat([round(PER_LOOK * s) for s in SHARES], L)
    nc = np.broadcast_to(n_c[:, None], (K, runs)).astype(float)
    nb = PER_LOOK - nc
    on = (np.arange(K) >= onset)[:, None]
    xc = rng.binomial(nc.astype(int), np.clip(base[:, None] + change * on, 0, 1))
    xb = rng.binomial(nb.astype(int), np.broadcast_to(base[:, None], (K, runs)))
    return [xc.astype(float), nc, xb.astype(float), nb]


def _detector(counts: list[np.ndarray], tol: float, alpha: float, upper: bool,
              statistic: str = "root") -> np.ndarray:
    """Alarm per look and run: the detector exactly as decide.py weighs its starts."""
    total = total_weight(K, len(SHARES))
    alarms = np.zeros(counts[0].shape, dtype=bool)
    for t in range(K):
        s = t // L
        s0 = s * L
        starts = [0, *range(max(1, t - s0 - MAX_STARTS + 1), t - s0 + 1)]
        w = [step_start_weight(K, len(SHARES)) if s else 0.0]
        w += [slot_weight(s0 + b, K) for b in starts[1:]]
        xc, nc, xb, nb = (np.stack([a[s0 + j:t + 1].sum(0) for j in starts]) for a in counts)
        if statistic == "root":
            le = proportion_log_e(xc, nc, xb, nb, 1.0, tol, alpha / total, TARGET, upper)
        else:  # the score statistic of the cumulative test, for contrast
            le = proportions_log_e(xc[None], nc[None], xb[None], nb[None], 1.0, tol,
                                   alpha / total, TARGET, upper)
        ready = proportion_fail_ready(nc, nb, xb, 1.0, tol) & (nc >= BURN_IN) & (nb >= BURN_IN)
        alarms[t] = detector_log_r(le, np.asarray(w)[:, None], ready) >= math.log(total / alpha)
    return alarms


def test_rare_rate_at_the_boundary_stays_within_alpha() -> None:
    """Fallback 3% in the baseline, 5% in the canary (tolerance +2 points), alpha 0.01:
    the signed root keeps the alpha; the score statistic, at this depth of the tail,
    does not (why the detector does not use it)."""
    runs, alpha = 4000, 0.01
    counts = _rate_streams(np.random.default_rng(11), runs, np.full(K, 0.03), 0.02)
    rate = float(_detector(counts, 0.02, alpha, upper=True).any(axis=0).mean())
    assert rate <= slack(alpha, runs), f"{rate:.4f} > {alpha}"
    score = float(_detector(counts, 0.02, alpha, upper=True, statistic="score").any(axis=0).mean())
    assert score > rate


def test_common_rate_with_drift_at_the_boundary_stays_within_alpha() -> None:
    """Task success falling from 0.93 to 0.87 over the rollout in both cohorts, the
    canary always 2 points lower (the tolerance): within alpha."""
    runs, alpha = 4000, 0.01
    base = 0.90 + 0.03 * np.cos(np.pi * np.arange(K) / K)
    counts = _rate_streams(np.random.default_rng(12), runs, base, -0.02)
    rate = float(_detector(counts, -0.02, alpha, upper=False).any(axis=0).mean())
    assert rate <= slack(alpha, runs), f"{rate:.4f} > {alpha}"


@pytest.mark.parametrize("dist", ["lognormal", "cache hits"])
def test_skewed_mean_at_the_boundary_stays_within_alpha(dist: str) -> None:
    """The canary exactly +0.5 on average, alpha 0.01: lognormal (σ = 1) minutes
    (right-skewed), and latencies with 10% cache hits at zero (left-skewed)."""
    runs, alpha, tol = 3000, 0.01, 0.5
    rng = np.random.default_rng(13)
    total = total_weight(K, len(SHARES))
    n_c = np.repeat([round(PER_LOOK * s) for s in SHARES], L)
    moments = np.zeros((6, K, runs))  # n, Σx, Σx² for canary then baseline
    for t in range(K):
        for i, (n, shift) in enumerate(((int(n_c[t]), tol), (PER_LOOK - int(n_c[t]), 0.0))):
            if dist == "lognormal":
                x = 2.0 * rng.lognormal(-0.5, 1.0, size=(runs, n)) + shift
            else:
                hit = rng.random((runs, n)) < 0.1
                x = np.where(hit, 0.0, rng.normal(3.0, 0.3, size=(runs, n))) + shift
            moments[3 * i, t], moments[3 * i + 1, t] = n, x.sum(1)
            moments[3 * i + 2, t] = (x * x).sum(1)
    alarms = np.zeros((K, runs), dtype=bool)
    for t in range(K):
        s0 = (t // L) * L
        starts = [0, *range(max(1, t - s0 - MAX_STARTS + 1), t - s0 + 1)]
        w = [step_start_weight(K, len(SHARES)) if t >= L else 0.0]
        w += [slot_weight(s0 + b, K) for b in starts[1:]]
        n1, s1, q1, n2, s2, q2 = (np.stack([m[s0 + j:t + 1].sum(0) for j in starts])
                                  for m in moments)
        m1, m2 = s1 / n1, s2 / n2
        v1 = (q1 / n1 - m1 * m1) * n1 / (n1 - 1)
        v2 = (q2 / n2 - m2 * m2) * n2 / (n2 - 1)
        le = mean_log_e(m1, v1, n1, m2, v2, n2, 1.0, tol, alpha / total, TARGET, upper=True)
        ready = (n1 >= MEAN_BURN_IN) & (n2 >= MEAN_BURN_IN)
        alarms[t] = detector_log_r(le, np.asarray(w)[:, None], ready) >= math.log(total / alpha)
    rate = float(alarms.any(axis=0).mean())
    assert rate <= slack(alpha, runs), f"{rate:.4f} > {alpha}"


def test_a_change_in_the_middle_of_a_step_is_caught_within_a_few_intervals() -> None:
    """Fallback 3% → 15% from the 8th interval of step 2 (860 healthy canary samples
    before it), at the alpha the support rule gives the detector: caught in every run,
    half of them within 3 intervals (240 canary samples) of the onset."""
    runs, alpha = 1000, 0.0011
    onset = L + 7
    counts = _rate_streams(np.random.default_rng(14), runs, np.full(K, 0.03), 0.12, onset)
    alarms = _detector(counts, 0.02, alpha, upper=True)
    caught = alarms.any(axis=0)
    assert caught.mean() >= 0.99
    after = alarms.argmax(axis=0)[caught] - onset + 1
    assert np.median(after) <= 3
