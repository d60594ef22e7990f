"""Our engine's decision, vectorised over thousands of simulated rollouts.

The same tests ``controller.analysis.decide`` runs for a guard — the cumulative
all-traffic test, each queue slice where the guard groups by queue, and the change
detector (or, for the earlier variants, the per-step windows) — each at its share of
``alpha_budget``, a look every interval, FAIL with the burn-in and (for proportions) the
expected-events rule. The tests are the product's own functions
(:mod:`controller.analysis.strata`, :mod:`controller.analysis.changes`); only the
bookkeeping (which samples each test sees at each look) is re-done here with arrays.

Variants (each change measured on the same streams):

- ``previous``: the engine before this change: pooled comparisons (score test for
  rates, two-sided t-mixture for means), step windows at 1/5 of each guard's alpha;
- ``stratified``: comparisons stratified by step (normal mixture for means), windows;
- ``ours``: stratified, and the change detector instead of the windows (what
  ``decide.py`` runs now);
- ``no change tests``: stratified, neither windows nor detector (for the late rows).

Data (from ``decision_quality.simulate``): rates as per-interval counts ``xc, nc, xb, nb``
of shape (T, runs, queues); means as per-interval moments of the part of each
interval's samples that arrives at once (``*_a``) and of the part that arrives
``DELAY`` intervals late (``*_b``), shape (T, runs).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from controller.analysis.changes import (
    MAX_STARTS,
    detector_log_r,
    mean_log_e,
    proportion_log_e,
    slot_weight,
    step_start_weight,
    total_weight,
)
from controller.analysis.decide import BURN_IN, MEAN_BURN_IN, AlphaShare
from controller.analysis.sequential import diff_means_t, proportion_fail_ready
from controller.analysis.strata import proportions_log_e, stratified_means

Data = dict[str, Any]


@dataclass(frozen=True)
class Variant:
    name: str
    stratified: bool
    change: str  # "detector" | "windows" | "none"
    means: str  # "normal" | "t"


VARIANTS = {
    "ours": Variant("ours", True, "detector", "normal"),
    "stratified": Variant("stratified", True, "windows", "normal"),
    "previous": Variant("previous", False, "windows", "t"),
    "no change tests": Variant("no change tests", True, "none", "normal"),
}


@dataclass(frozen=True)
class Setup:
    """What the tests need to know about the rule and the streams."""

    steps: int
    step_intervals: int
    m: int  # minSamplesPerCohort
    target: float
    looks: int  # K: intervals in maxDuration
    delay: int


@dataclass(frozen=True)
class Guard:
    name: str
    kind: str  # "rate" | "mean"
    tolerance: float
    higher_is_better: bool
    relative: bool
    queues: bool  # grouped by queue


def first(mask: np.ndarray) -> np.ndarray:
    """Index of the first True along axis 0 per run (−1: never)."""
    return np.where(mask.any(axis=0), mask.argmax(axis=0), -1)


# -- which samples a test sees --------------------------------------------------------------

def arrived(a: np.ndarray, b: np.ndarray | None, lo: int, hi: int, t: int, delay: int
            ) -> np.ndarray:
    """Sum over intervals lo..hi (generation time) of what has arrived by look t."""
    hi_a = min(hi, t)
    out = a[lo:hi_a + 1].sum(axis=0) if hi_a >= lo else np.zeros(a.shape[1:])
    if b is not None:
        hi_b = min(hi, t - delay)
        if hi_b >= lo:
            out = out + b[lo:hi_b + 1].sum(axis=0)
    return np.asarray(out, float)


def per_look(setup: Setup, a: np.ndarray, b: np.ndarray | None, lo_of: Callable[[int], int],
             hi_of: Callable[[int], int]) -> np.ndarray:
    """(T, ...) sums of intervals lo_of(t)..hi_of(t) arrived by each look t."""
    t_max = a.shape[0]
    return np.stack([arrived(a, b, lo_of(t), hi_of(t), t, setup.delay) for t in range(t_max)])


def pooled(setup: Setup, a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    return per_look(setup, a, b, lambda t: 0, lambda t: t)[None]


def strata(setup: Setup, a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """(S, T, ...): per step, its own samples arrived by each look."""
    L = setup.step_intervals
    return np.stack([per_look(setup, a, b, lambda t, s=s: s * L, lambda t, s=s: (s + 1) * L - 1)
                     for s in range(setup.steps)])


# -- rates ----------------------------------------------------------------------------------

def _rate_counts(d: Data, q: int | None) -> list[np.ndarray]:
    return [d[k].sum(-1) if q is None else d[k][..., q] for k in ("xc", "nc", "xb", "nb")]


def rate_fail(setup: Setup, g: Guard, c: list[np.ndarray], alpha: float) -> np.ndarray:
    """FAIL per look of the (stratified) rate test on per-stratum counts (S, T, runs)."""
    xc, nc, xb, nb = c
    le = proportions_log_e(xc, nc, xb, nb, 1.0, g.tolerance, alpha, setup.target,
                           upper=not g.higher_is_better)
    tc, tb, txb = nc.sum(0), nb.sum(0), xb.sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ready = proportion_fail_ready(tc, tb, txb, 1.0, g.tolerance)
    burn = min(BURN_IN, setup.m)
    return np.asarray((le >= math.log(1.0 / alpha)) & ready & (tc >= burn) & (tb >= burn))


def rate_tests(setup: Setup, g: Guard, d: Data, v: Variant, share: AlphaShare) -> np.ndarray:
    group = strata if v.stratified else pooled
    fail = rate_fail(setup, g, [group(setup, x) for x in _rate_counts(d, None)], share.all)
    if g.queues:
        for q in range(d["xc"].shape[-1]):
            fail |= rate_fail(setup, g, [group(setup, x) for x in _rate_counts(d, q)],
                              share.slice)
    return fail | change_tests(setup, g, d, v, share)


def rate_pass(setup: Setup, g: Guard, d: Data, v: Variant, alpha: float) -> np.ndarray:
    group = strata if v.stratified else pooled
    xc, nc, xb, nb = (group(setup, x) for x in _rate_counts(d, None))
    le = proportions_log_e(xc, nc, xb, nb, 1.0, g.tolerance, alpha, setup.target,
                           upper=g.higher_is_better)
    return np.asarray((le >= math.log(1.0 / alpha)) & (nc.sum(0) >= setup.m)
                      & (nb.sum(0) >= setup.m))


# -- means ----------------------------------------------------------------------------------

MEAN_KEYS = ("nc", "sc", "qc", "nb", "sb", "qb")


def _moments(n: np.ndarray, s: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, ...]:
    with np.errstate(divide="ignore", invalid="ignore"):
        nn = np.maximum(n, 1.0)
        mu = s / nn
        var = np.maximum(q / nn - mu * mu, 0.0) * nn / np.maximum(nn - 1.0, 1.0)
    return mu, var, n


def _kt(g: Guard) -> tuple[float, float]:
    return (1.0 + g.tolerance, 0.0) if g.relative else (1.0, g.tolerance)


def mean_cs(setup: Setup, g: Guard, parts: list[np.ndarray], v: Variant, alpha: float) -> Any:
    """The comparison's CS per look from per-stratum sums (S, T, runs) of n, Σx, Σx²."""
    k, _ = _kt(g)
    mc, vc, nc = _moments(*parts[:3])
    mb, vb, nb = _moments(*parts[3:])
    with np.errstate(divide="ignore", invalid="ignore"):
        if v.means == "t":
            return diff_means_t(mc[0], vc[0], nc[0], mb[0], vb[0], nb[0], k, alpha,
                                setup.target)
        return stratified_means(mc, vc, nc, mb, vb, nb, k, alpha, setup.target)


def _mean_parts(setup: Setup, d: Data, group: Callable[..., np.ndarray]) -> list[np.ndarray]:
    return [group(setup, d[f"{k}_a"], d[f"{k}_b"]) for k in MEAN_KEYS]


def mean_tests(setup: Setup, g: Guard, d: Data, v: Variant, share: AlphaShare) -> np.ndarray:
    parts = _mean_parts(setup, d, strata if v.stratified else pooled)
    _, thr = _kt(g)
    cs = mean_cs(setup, g, parts, v, share.all)
    burn = MEAN_BURN_IN if v.means == "normal" else min(BURN_IN, setup.m)
    fail = (cs.lower > thr) & (parts[0].sum(0) >= burn) & (parts[3].sum(0) >= burn)
    return np.asarray(fail | change_tests(setup, g, d, v, share))


def mean_pass(setup: Setup, g: Guard, d: Data, v: Variant, alpha: float) -> np.ndarray:
    parts = _mean_parts(setup, d, strata if v.stratified else pooled)
    _, thr = _kt(g)
    cs = mean_cs(setup, g, parts, v, alpha)
    return np.asarray((cs.upper <= thr) & (parts[0].sum(0) >= setup.m)
                      & (parts[3].sum(0) >= setup.m))


# -- step windows and the change detector -----------------------------------------------------

def _sources(g: Guard, d: Data) -> list[tuple[np.ndarray, np.ndarray | None]]:
    if g.kind == "rate":
        return [(x, None) for x in _rate_counts(d, None)]
    return [(d[f"{k}_a"], d[f"{k}_b"]) for k in MEAN_KEYS]


def change_tests(setup: Setup, g: Guard, d: Data, v: Variant, share: AlphaShare
                 ) -> np.ndarray:
    t_max = d["n_canary"].shape[0]
    runs = d["n_canary"].shape[1]
    out = np.zeros((t_max, runs), dtype=bool)
    if v.change == "none" or share.change <= 0:
        return out
    if v.change == "windows":
        return windows(setup, g, d, v, share.change / max(setup.steps - 1, 1))
    for t in range(t_max):
        out[t] = detector_alarm(setup, g, d, t, share.change)
    return out


def windows(setup: Setup, g: Guard, d: Data, v: Variant, alpha: float) -> np.ndarray:
    """The previous engine's per-step window tests (steps 2..S, the step's own samples)."""
    srcs = _sources(g, d)
    t_max, runs = d["n_canary"].shape[:2]
    out = np.zeros((t_max, runs), dtype=bool)
    L = setup.step_intervals
    burn = min(BURN_IN, setup.m)
    for s in range(1, setup.steps):
        sl = slice(s * L, (s + 1) * L)
        parts = [per_look(setup, a, b, lambda t, s=s: s * L, lambda t: t)[None][:, sl]
                 for a, b in srcs]
        if g.kind == "rate":
            out[sl] |= rate_fail(setup, g, parts, alpha)
        else:
            _, thr = _kt(g)
            cs = mean_cs(setup, g, parts, v, alpha)
            mburn = MEAN_BURN_IN if v.means == "normal" else burn
            out[sl] |= (cs.lower > thr) & (parts[0][0] >= mburn) & (parts[3][0] >= mburn)
    return out


def detector_alarm(setup: Setup, g: Guard, d: Data, t: int, alpha: float) -> np.ndarray:
    """The e-detector at look t (see controller.analysis.changes): the step's start and
    each kept later bucket of the current step, weighted, against W/α."""
    L = setup.step_intervals
    s = min(t // L, setup.steps - 1)
    s0 = s * L
    total = total_weight(setup.looks, setup.steps)
    starts = [0, *range(max(1, t - s0 - MAX_STARTS + 1), t - s0 + 1)]
    weights = [step_start_weight(setup.looks, setup.steps) if s > 0 else 0.0]
    weights += [slot_weight(s0 + b, setup.looks) for b in starts[1:]]
    srcs = _sources(g, d)
    parts = [np.stack([arrived(a, b, s0 + j, t, t, setup.delay) for j in starts])
             for a, b in srcs]
    k, thr = _kt(g)
    tune = alpha / total
    burn = min(BURN_IN, setup.m)
    if g.kind == "rate":
        xc, nc, xb, nb = parts
        le = proportion_log_e(xc, nc, xb, nb, k, thr, tune, setup.target,
                              upper=not g.higher_is_better)
        with np.errstate(divide="ignore", invalid="ignore"):
            ready = proportion_fail_ready(nc, nb, xb, k, thr) & (nc >= burn) & (nb >= burn)
    else:
        mc, vc, nc = _moments(*parts[:3])
        mb, vb, nb = _moments(*parts[3:])
        le = mean_log_e(mc, vc, nc, mb, vb, nb, k, thr, tune, setup.target,
                        upper=not g.higher_is_better)
        ready = (nc >= MEAN_BURN_IN) & (nb >= MEAN_BURN_IN)
    w = np.asarray(weights)[:, None]
    return np.asarray(detector_log_r(le, w, ready) >= math.log(total / alpha))


# -- entry points -------------------------------------------------------------------------------

def rollback_times(setup: Setup, g: Guard, d: Data, v: Variant, share: AlphaShare
                   ) -> np.ndarray:
    tests = rate_tests if g.kind == "rate" else mean_tests
    return first(tests(setup, g, d, v, share))


def promote_times(setup: Setup, g: Guard, d: Data, v: Variant, share: AlphaShare
                  ) -> np.ndarray:
    test = rate_pass if g.kind == "rate" else mean_pass
    return first(test(setup, g, d, v, share.all))
