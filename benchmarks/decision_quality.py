"""Decision quality: our engine against calibrated gates, at equal error rates.

    python benchmarks/decision_quality.py            # full run (2000 rollouts a scenario)
    python benchmarks/decision_quality.py --quick    # under a minute, for CI smoke runs

Streams (the same for every method; realistic rather than flattering):

- the support rule's steps 5% → 20% → 50%, ``STEP_INTERVALS`` one-minute intervals
  each (45 intervals: the benchmark's maxDuration), ``REQUESTS`` samples per interval;
- four unequal queues (50/30/15/5%: one tiny), each sample's queue drawn at random;
- task success drifts over the day identically in both cohorts (0.90 ± 0.03, a sine
  with a one-day period; each rollout starts at a random time of day);
- heavy tails: latency lognormal (σ = 0.6, mean 1.5 s), correction minutes lognormal
  (σ = 1.0, mean 2 min);
- delayed feedback: half of each interval's correction minutes arrive 5 intervals late
  (the statistics at a look include only what has arrived).

Scenarios: A/A and "exactly at the tolerance" for every metric (the calibration
streams), task-success drops of 3, 5, 10, 20 points (tolerance 2), policy failures
1% → 3% (tolerance 0.5 points), a fallback spike 3% → 20% in the ``technical`` queue
(15% of traffic; tolerance 2 points), correction burden +50% (tolerance +0.5 min),
latency +30% (tolerance +10%); task success with a drift as fast as the rollout (A/A,
at the tolerance, −5 points; our engine variants only); and late regressions: a change
that starts with a step or in the middle of one (samples after onset to rollback).

Methods:

- **ours**: the guard's tests exactly as ``controller.analysis.decide`` runs them — the
  cumulative all-traffic test stratified by step, each queue slice (stratified) where
  the guard groups by queue, and the change detector over the current step's start
  times — each at its share of ``alpha_budget`` of the support rule, a look every
  interval, FAIL with the burn-in and (for proportions) the expected-events rule
  (``benchmarks/ours.py``). Beside it, on the same streams: "ours (stratified)" with
  per-step window tests instead of the detector, "ours (previous)" the engine before
  stratification (pooled comparisons, t-mixture for means, windows), and for the late
  rows "no change tests" (neither windows nor detector). "Promote" is the first look at
  which the guard's all-traffic test passes with both cohorts at minSamplesPerCohort.
- **threshold** (Argo Rollouts / Flagger): each interval the canary's own rate (or
  mean) over that interval is compared with a threshold; rollback when more than
  ``failureLimit`` intervals failed.
- **mann-whitney** (Kayenta): each interval a one-sided Mann-Whitney U test of the
  canary's samples against the baseline's of that interval; an interval fails when
  p < 1 − confidence; rollback when more than ``failureLimit`` intervals failed.

Calibration (per metric, per gate, on the same streams): for each failureLimit in
0..3 the least strict threshold (or confidence) whose rollback rate on the calibration
scenario is at most the rule's alpha is found exactly (the rollback event is "the
(f+1)-th worst interval beyond the threshold", so the threshold is a quantile of that
order statistic over runs); the failureLimit that then misses the fewest of the
metric's reference regression (ties: faster median) is kept. Two calibrations: "A/A"
(healthy canaries roll back at most alpha) and "tolerance" (a change exactly at the
tolerance, which the rule accepts, rolls back at most alpha — what the rule itself
promises). The gates get the whole alpha of the rule for each metric; ours spends a
share of it per guard. Uncalibrated gates (as they are usually configured) are a
separate table.

Wald's bound: ``log(1/α_spent)/KL`` canary samples, where α_spent is the alpha of the
test that decides (the all-traffic test; the queue slice for the queue spike) and KL is
the divergence per canary sample of the canary's distribution from the TOLERANCE
BOUNDARY (the closest distribution the rule must accept): Bernoulli KL for rates
(times the queue's share for the spike), Gaussian ``(Δ−tol)²/(2σ²)`` with the
canary's variance for means. The ratio ours/Wald uses our median.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import mannwhitneyu

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import ours as engine  # noqa: E402
from controller.analysis import RuleStatistics, evaluate  # noqa: E402
from controller.analysis.changes import horizon  # noqa: E402
from controller.analysis.decide import alpha_budget, mixture_target  # noqa: E402
from controller.models import (  # noqa: E402
    Action,
    Cohort,
    RecordedVerdict,
    Risk,
    Sample,
    parse_duration,
)
from controller.sources.manifests import load_rules  # noqa: E402

RULE = load_rules([str(ROOT / "rules" / "support-assistant.yaml")])[0][0].rule.spec
STEP_INTERVALS = 15
# the benchmark's maxDuration: 45 one-minute intervals (the change detector's K)
RULE = RULE.model_copy(update={"analysis": RULE.analysis.model_copy(
    update={"max_duration": f"{3 * STEP_INTERVALS}m"})})
ALPHA = RULE.analysis.alpha
M = RULE.analysis.min_samples_per_cohort
TARGET = mixture_target(RULE)
BUDGET = alpha_budget(RULE)
WEIGHTS = [s.weight for s in RULE.steps]
REQUESTS = 400
QUEUES = {"general": 0.50, "billing": 0.30, "technical": 0.15, "refunds": 0.05}
FAILURE_LIMITS = (0, 1, 2, 3)
DRIFT = 0.03
DAY = 1440  # intervals (minutes) per day
DELAY = 5  # intervals, for half of the correction minutes
LAT_SIGMA, LAT_MEAN = 0.6, 1500.0
COR_SIGMA, COR_MEAN = 1.0, 2.0
SETUP = engine.Setup(
    steps=len(WEIGHTS), step_intervals=STEP_INTERVALS, m=M, target=TARGET,
    looks=horizon(parse_duration(RULE.analysis.max_duration),
                  parse_duration(RULE.analysis.interval)), delay=DELAY)


@dataclass(frozen=True)
class Metric:
    guard: str
    kind: str  # "rate" | "mean"
    base: float
    tolerance: float  # signed in the harmful direction (relative for latency)
    higher_is_better: bool
    relative: bool = False
    reference: str = ""  # the regression used to choose a gate's failureLimit


METRICS = {
    "success": Metric("trusted-completion", "rate", 0.90, -0.02, True,
                      reference="success -5 pts"),
    "fallback": Metric("fallback", "rate", 0.03, 0.02, False,
                       reference="fallback 3% -> 20% in one queue (15%)"),
    "policy": Metric("policy", "rate", 0.01, 0.005, False, reference="policy 1% -> 3%"),
    "burden": Metric("correction-burden", "mean", COR_MEAN, 0.5, False,
                     reference="correction burden +50%"),
    "latency": Metric("latency", "mean", LAT_MEAN, 0.10, False, relative=True,
                      reference="latency +30%"),
}


@dataclass(frozen=True)
class Scenario:
    name: str
    metric: str
    change: float  # canary minus baseline (relative for latency)
    spike_queue: str | None = None
    onset: int = 0  # interval at which the change starts
    calibration: str | None = None  # "aa" | "tol"
    fast_drift: bool = False  # the base rate falls 2·DRIFT over the rollout (not a day)

    @property
    def spec(self) -> Metric:
        return METRICS[self.metric]

    @property
    def harmful(self) -> bool:
        m = self.spec
        d = round(self.change, 9)
        return d < m.tolerance if m.higher_is_better else d > m.tolerance


def _calib(metric: str) -> list[Scenario]:
    m = METRICS[metric]
    return [Scenario(f"A/A {metric}", metric, 0.0, calibration="aa"),
            Scenario(f"{metric} at tolerance", metric, m.tolerance, calibration="tol")]


SCENARIOS = [
    *_calib("success"),
    Scenario("success -3 pts", "success", -0.03),
    Scenario("success -5 pts", "success", -0.05),
    Scenario("success -10 pts", "success", -0.10),
    Scenario("success -20 pts", "success", -0.20),
    *_calib("policy"),
    Scenario("policy 1% -> 3%", "policy", 0.02),
    *_calib("fallback"),
    Scenario("fallback 3% -> 20% in one queue (15%)", "fallback", 0.17, spike_queue="technical"),
    *_calib("burden"),
    Scenario("correction burden +50%", "burden", 0.5 * COR_MEAN),
    *_calib("latency"),
    Scenario("latency +30%", "latency", 0.30),
]
DRIFTING = [
    Scenario("A/A success, fast drift", "success", 0.0, fast_drift=True),
    Scenario("success at tolerance, fast drift", "success", -0.02, fast_drift=True),
    Scenario("success -5 pts, fast drift", "success", -0.05, fast_drift=True),
]
LATE = [
    Scenario("fallback 3% -> 15% from the start", "fallback", 0.12),
    Scenario("fallback 3% -> 15% from step 2", "fallback", 0.12, onset=STEP_INTERVALS),
    Scenario("fallback 3% -> 15% from the middle of step 2", "fallback", 0.12,
             onset=STEP_INTERVALS + 7),
    Scenario("success -10 pts from the start", "success", -0.10),
    Scenario("success -10 pts from step 3", "success", -0.10, onset=2 * STEP_INTERVALS),
    Scenario("success -10 pts from the middle of step 3", "success", -0.10,
             onset=2 * STEP_INTERVALS + 7),
]
LATE_REFERENCE = {"fallback": LATE[0].name, "success": LATE[3].name}


def schedule() -> np.ndarray:
    """Canary share per interval."""
    return np.repeat(np.array(WEIGHTS) / 100.0, STEP_INTERVALS)


# -- streams ------------------------------------------------------------------------------

Data = dict[str, np.ndarray]


def simulate(sc: Scenario, runs: int, seed: int, raw: bool) -> Data:
    """Per interval and run: counts (T, runs, Q) for rates; n, Σx, Σx² (T, runs) of what
    has arrived for means; per-interval gate statistics; raw samples only for MWU."""
    rng = np.random.default_rng(seed)
    w = schedule()
    t_max = len(w)
    n_c = np.round(REQUESTS * w).astype(int)
    q = np.array(list(QUEUES.values()))
    on = np.arange(t_max) >= sc.onset
    out: Data = {"n_canary": np.broadcast_to(n_c[:, None], (t_max, runs)).copy(),
                 "on": on}
    m = sc.spec
    if m.kind == "rate":
        _rates(sc, rng, n_c, q, on, runs, out, raw)
    else:
        _means(sc, rng, n_c, on, runs, out, raw)
    return out


def _rates(sc: Scenario, rng: np.random.Generator, n_c: np.ndarray, q: np.ndarray,
           on: np.ndarray, runs: int, out: Data, raw: bool) -> None:
    m = sc.spec
    t_max = len(n_c)
    if sc.fast_drift:  # falls from +DRIFT to −DRIFT over the rollout, as the share grows
        wave = np.cos(np.pi * np.arange(t_max) / t_max)[:, None] * np.ones((1, runs))
    else:
        start = rng.uniform(0, DAY, size=runs)  # each rollout starts at its own time of day
        wave = np.sin(2 * np.pi * (start[None, :] + np.arange(t_max)[:, None]) / DAY)
    base = m.base + (DRIFT * wave if sc.metric == "success" else 0.0 * wave)
    shape = (t_max, runs, len(q))
    nc, nb, xc, xb = (np.zeros(shape, dtype=np.int64) for _ in range(4))
    spike = np.array([name == sc.spike_queue for name in QUEUES])
    for t in range(t_max):
        nc[t] = rng.multinomial(n_c[t], q, size=runs)
        nb[t] = rng.multinomial(REQUESTS - n_c[t], q, size=runs)
        change = sc.change if on[t] else 0.0
        bt = base[t][:, None]
        pc = np.where(spike | (sc.spike_queue is None), bt + change, bt)
        xc[t] = rng.binomial(nc[t], np.clip(pc, 0, 1))
        xb[t] = rng.binomial(nb[t], np.broadcast_to(bt, nb[t].shape))
    out.update(nc=nc, nb=nb, xc=xc, xb=xb)
    if raw:
        out["mwu_p"] = _mwu_rates(xc.sum(-1), nc.sum(-1), xb.sum(-1), nb.sum(-1),
                                  m.higher_is_better)


def _mwu_rates(xc: np.ndarray, nc: np.ndarray, xb: np.ndarray, nb: np.ndarray,
               hib: bool) -> np.ndarray:
    """Per-interval one-sided Mann-Whitney p-values on the 0/1 samples."""
    t_max, runs = xc.shape
    p = np.ones((t_max, runs))
    alternative = "less" if hib else "greater"
    for t in range(t_max):
        a, b = int(nc[t].max()), int(nb[t].max())
        cj = (np.arange(a)[None, :] < xc[t][:, None]).astype(float)
        bj = (np.arange(b)[None, :] < xb[t][:, None]).astype(float)
        cj[np.arange(a)[None, :] >= nc[t][:, None]] = np.nan
        bj[np.arange(b)[None, :] >= nb[t][:, None]] = np.nan
        with np.errstate(invalid="ignore", divide="ignore"):
            p[t] = np.nan_to_num(mannwhitneyu(cj, bj, alternative=alternative, axis=1,
                                              method="asymptotic", nan_policy="omit").pvalue,
                                 nan=1.0)
    return p


def _draw(rng: np.random.Generator, size: tuple[int, int], mean: float, sigma: float
          ) -> np.ndarray:
    return mean * rng.lognormal(-sigma * sigma / 2, sigma, size=size)


def _means(sc: Scenario, rng: np.random.Generator, n_c: np.ndarray, on: np.ndarray,
           runs: int, out: Data, raw: bool) -> None:
    m = sc.spec
    t_max = len(n_c)
    sigma = LAT_SIGMA if sc.metric == "latency" else COR_SIGMA
    parts = {f"{k}_{p}": np.zeros((t_max, runs)) for k in engine.MEAN_KEYS for p in "ab"}
    gate = np.zeros((t_max, runs))
    p = np.ones((t_max, runs))
    for t in range(t_max):
        factor = (1 + sc.change) if m.relative else 1.0
        shift = 0.0 if m.relative else sc.change
        mean_c = (m.base * factor + shift) if on[t] else m.base
        c = _draw(rng, (runs, int(n_c[t])), mean_c, sigma)
        b = _draw(rng, (runs, REQUESTS - int(n_c[t])), m.base, sigma)
        gate[t] = c.mean(axis=1)
        if raw:
            p[t] = mannwhitneyu(c, b, alternative="greater", axis=1, method="asymptotic").pvalue
        for x, cohort in ((c, "c"), (b, "b")):
            # half of the correction minutes arrive DELAY intervals late (part b)
            half = x.shape[1] // 2 if sc.metric == "burden" else x.shape[1]
            for part, key in ((x[:, :half], "a"), (x[:, half:], "b")):
                parts[f"n{cohort}_{key}"][t] = part.shape[1]
                parts[f"s{cohort}_{key}"][t] = part.sum(axis=1)
                parts[f"q{cohort}_{key}"][t] = (part * part).sum(axis=1)
    out.update(parts)
    out["gate"] = gate
    out["mwu_p"] = p


# -- ours ---------------------------------------------------------------------------------

def guard_of(m: Metric) -> engine.Guard:
    g = next(x for x in RULE.analysis.guards if x.name == m.guard)
    return engine.Guard(m.guard, m.kind, m.tolerance, m.higher_is_better, m.relative,
                        "queue" in g.group_by)


def ours(sc: Scenario, d: Data, variant: str = "ours") -> np.ndarray:
    """First look at which the guard rolls back, per run (−1: never)."""
    return engine.rollback_times(SETUP, guard_of(sc.spec), d, engine.VARIANTS[variant],
                                 BUDGET[sc.spec.guard])


def ours_promote(sc: Scenario, d: Data, variant: str = "ours") -> np.ndarray:
    return engine.promote_times(SETUP, guard_of(sc.spec), d, engine.VARIANTS[variant],
                                BUDGET[sc.spec.guard])


# -- gates --------------------------------------------------------------------------------

def gate_stat(sc: Scenario, d: Data, gate: str) -> tuple[np.ndarray, bool]:
    """Per-interval statistic and whether LARGE values are bad."""
    if gate == "mann-whitney":
        return -d["mwu_p"], True  # small p is bad
    if sc.spec.kind == "rate":
        rate = d["xc"].sum(-1) / np.maximum(d["nc"].sum(-1), 1)
        return (-rate, True) if sc.spec.higher_is_better else (rate, True)
    return d["gate"], True


def gate_rollback(stat: np.ndarray, thr: float, limit: int) -> np.ndarray:
    return engine.first(np.cumsum(stat > thr, axis=0) > limit)


def calibrate(stat: np.ndarray, limit: int, alpha: float) -> float:
    """Least strict threshold with rollback rate ≤ alpha: rollback iff the (limit+1)-th
    largest interval statistic exceeds it, so take that order statistic's quantile."""
    order = -np.sort(-stat, axis=0)[limit]
    return float(np.quantile(order, 1.0 - alpha, method="higher"))


def describe(sc: Scenario, gate: str, thr: float, limit: int) -> str:
    if gate == "mann-whitney":
        return f"confidence {1 + thr:.4f}, failureLimit {limit}"
    m = sc.spec
    if m.kind == "rate":
        value = -thr if m.higher_is_better else thr
        op = "≥" if m.higher_is_better else "≤"
        return f"rate {op} {value:.4f}, failureLimit {limit}"
    return f"mean ≤ {thr:.4g}, failureLimit {limit}"


def uncalibrated(sc: Scenario, gate: str) -> tuple[float, int]:
    """Gates as usually configured: threshold at baseline ± twice the tolerance, failure
    limit 2; Kayenta-style confidence 0.98 at the first failing interval."""
    if gate == "mann-whitney":
        return -0.02, 0
    m = sc.spec
    if m.kind == "rate":
        limit = m.base + 2 * m.tolerance
        return (-limit if m.higher_is_better else limit), 2
    base = m.base * (1 + 2 * m.tolerance) if m.relative else m.base + 2 * m.tolerance
    return base, 2


# -- summaries ----------------------------------------------------------------------------

def summarise(sc: Scenario, d: Data, rollback: np.ndarray) -> dict[str, Any]:
    canary = d["n_canary"].cumsum(axis=0)
    hit = rollback >= 0
    idx = np.nonzero(hit)[0]
    before = canary[sc.onset - 1, 0] if sc.onset > 0 else 0
    samples = canary[rollback[hit], idx] - before if hit.any() else np.array([])
    times = rollback[hit] + 1 - sc.onset
    q = (lambda a, p: float(np.percentile(a, p)) if a.size else None)  # noqa: E731
    return {"rollback_rate": float(hit.mean()),
            "median_intervals": q(times, 50), "p90_intervals": q(times, 90),
            "median_canary_samples": q(samples, 50), "p90_canary_samples": q(samples, 90),
            "missed": float((~hit).mean()) if sc.harmful else None}


def kl_bern(p: float, q: float) -> float:
    return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))


def wald(sc: Scenario) -> dict[str, Any] | None:
    """Wald's bound at the alpha the deciding test spends, against the tolerance boundary."""
    if not sc.harmful:
        return None
    m = sc.spec
    share = BUDGET[m.guard]
    if m.kind == "rate":
        pc, p0 = m.base + sc.change, m.base + m.tolerance
        kl = kl_bern(pc, p0)
        alpha = share.all
        if sc.spike_queue:
            kl *= QUEUES[sc.spike_queue]
            alpha = share.slice
        what = f"Bernoulli KL({pc:.3f} ‖ {p0:.3f})"
    else:
        sigma = LAT_SIGMA if sc.metric == "latency" else COR_SIGMA
        mean_c = m.base * (1 + sc.change) if m.relative else m.base + sc.change
        bound = m.base * (1 + m.tolerance) if m.relative else m.base + m.tolerance
        var = (mean_c ** 2) * (math.exp(sigma ** 2) - 1)
        kl = (mean_c - bound) ** 2 / (2 * var)
        alpha = share.all
        what = f"Gaussian ({mean_c:.4g} − {bound:.4g})²/(2·{var:.4g})"
    return {"alpha": alpha, "kl": kl, "kl_formula": what, "samples": math.log(1 / alpha) / kl}


ENGINES = ("ours", "stratified", "previous")
"""Variants of our engine reported beside each other (see benchmarks/ours.py)."""


def run(runs: int, seed: int, quick: bool) -> dict[str, Any]:
    results: dict[str, Any] = {
        "runs": runs, "alpha": ALPHA, "requests_per_interval": REQUESTS, "weights": WEIGHTS,
        "step_intervals": STEP_INTERVALS, "queues": QUEUES, "looks": SETUP.looks,
        "budget": {k: vars(v) for k, v in BUDGET.items()}, "scenarios": [], "drift": [],
        "late": [], "calibration": {}}
    data: dict[str, Data] = {}
    for i, sc in enumerate(SCENARIOS + DRIFTING + LATE):
        data[sc.name] = simulate(sc, runs, seed + i, raw=sc in SCENARIOS)
    calib = calibrate_gates(data, results)
    for sc in SCENARIOS:
        results["scenarios"].append(scenario_row(sc, data[sc.name], calib))
    for sc in DRIFTING:
        d = data[sc.name]
        results["drift"].append({"scenario": sc.name, "harmful": sc.harmful, "methods": {
            e: summarise(sc, d, ours(sc, d, e)) for e in ENGINES}})
    for sc in LATE:
        d = data[sc.name]
        results["late"].append({
            "scenario": sc.name, "metric": sc.metric, "onset_interval": sc.onset,
            "healthy_canary_samples_before": int(d["n_canary"][:sc.onset, 0].sum()),
            "methods": {e: summarise(sc, d, ours(sc, d, e))
                        for e in (*ENGINES, "no change tests")}})
    late_ratios(results)
    results["one_batch"] = one_batch()
    results["family_at_tolerance"] = {e: family_at_tolerance(results, e) for e in ENGINES}
    return results


GATES = ("threshold", "mann-whitney")


def calibrate_gates(data: dict[str, Data], results: dict[str, Any]
                    ) -> dict[tuple[str, str, str], tuple[float, int]]:
    """Per metric and gate, twice (A/A and at the tolerance): the least strict setting
    at the rule's alpha, failureLimit chosen on the metric's reference regression."""
    calib: dict[tuple[str, str, str], tuple[float, int]] = {}
    for metric in METRICS:
        cal = {s.calibration: s for s in SCENARIOS if s.metric == metric and s.calibration}
        ref = next(s for s in SCENARIOS if s.name == METRICS[metric].reference)
        for gate in GATES:
            for kind in ("aa", "tol"):
                stat, _ = gate_stat(cal[kind], data[cal[kind].name], gate)
                ref_stat, _ = gate_stat(ref, data[ref.name], gate)
                best: tuple[Any, ...] | None = None
                for limit in FAILURE_LIMITS:
                    thr = calibrate(stat, limit, ALPHA)
                    s = summarise(ref, data[ref.name], gate_rollback(ref_stat, thr, limit))
                    key = (s["missed"], s["median_canary_samples"] or 1e12)
                    if best is None or key < best[0]:
                        best = (key, thr, limit)
                assert best is not None
                calib[(metric, gate, kind)] = (best[1], best[2])
                results["calibration"][f"{metric}/{gate}/{kind}"] = describe(
                    cal[kind], gate, best[1], best[2])
    return calib


def scenario_row(sc: Scenario, d: Data, calib: dict[tuple[str, str, str], tuple[float, int]]
                 ) -> dict[str, Any]:
    row: dict[str, Any] = {"scenario": sc.name, "metric": sc.metric,
                           "harmful": sc.harmful, "methods": {}}
    for e in ENGINES:
        row["methods"][e if e == "ours" else f"ours ({e})"] = summarise(sc, d, ours(sc, d, e))
    for gate in GATES:
        stat, _ = gate_stat(sc, d, gate)
        for kind in ("aa", "tol"):
            thr, limit = calib[(sc.metric, gate, kind)]
            row["methods"][f"{gate} ({kind})"] = summarise(
                sc, d, gate_rollback(stat, thr, limit))
        thr, limit = uncalibrated(sc, gate)
        row["methods"][f"{gate} (uncalibrated)"] = summarise(
            sc, d, gate_rollback(stat, thr, limit))
    if sc.calibration == "aa":
        row["promote"] = {e: promote_summary(d, ours_promote(sc, d, e)) for e in ENGINES}
    row["wald"] = wald(sc)
    med = row["methods"]["ours"]["median_canary_samples"]
    row["ours_vs_wald"] = med / row["wald"]["samples"] if row["wald"] and med else None
    print(f"{sc.name:42s} ours {row['methods']['ours']['rollback_rate']:.4f} "
          f"median {med}  wald {row['ours_vs_wald']}", flush=True)
    return row


def promote_summary(d: Data, promote: np.ndarray) -> dict[str, Any]:
    """Share of healthy runs whose all-traffic test passed, and when (intervals and
    canary samples, median)."""
    ok = promote >= 0
    canary = d["n_canary"].cumsum(axis=0)
    cols = np.nonzero(ok)[0]
    return {"rate": float(ok.mean()),
            "median_intervals": float(np.median(promote[ok] + 1)) if ok.any() else None,
            "median_canary_samples": float(np.median(canary[promote[ok], cols]))
            if ok.any() else None}


def late_ratios(results: dict[str, Any]) -> None:
    """Samples after onset to rollback, as a multiple of the same change from the start."""
    by_name = {r["scenario"]: r for r in results["late"]}
    for row in results["late"]:
        ref = by_name[LATE_REFERENCE[row["metric"]]]
        row["vs_from_start"] = {}
        for e, summ in row["methods"].items():
            a, b = summ["median_canary_samples"], ref["methods"][e]["median_canary_samples"]
            row["vs_from_start"][e] = a / b if a and b else None


def family_at_tolerance(results: dict[str, Any], engine_name: str = "ours") -> dict[str, Any]:
    """Every guard exactly at its tolerance (independent streams): the rule's rate, and
    the alpha these guards were given."""
    key = "ours" if engine_name == "ours" else f"ours ({engine_name})"
    rates = {r["metric"]: r["methods"][key]["rollback_rate"] for r in results["scenarios"]
             if r["scenario"].endswith("at tolerance")}
    combined = 1.0 - float(np.prod([1.0 - r for r in rates.values()]))
    given = {m: guard_alpha(METRICS[m].guard) for m in rates}
    return {"per_guard": rates, "alpha_per_guard": given, "combined": combined,
            "alpha_given": float(sum(given.values())), "alpha": ALPHA, "guards": len(rates)}


def guard_alpha(name: str) -> float:
    """All the alpha a guard spends (every test), from the budget."""
    g = next(x for x in RULE.analysis.guards if x.name == name)
    from controller.analysis.decide import group_slots

    share = BUDGET[name]
    windows = len(WEIGHTS) - 1
    return (share.all + share.slice * group_slots(RULE, g) + share.window * windows
            + share.change)


def one_batch() -> dict[str, Any]:
    """Real evaluate: one batch of 400 clean pairs at the first step of a 4-step rule
    (10/25/50/75%, minSamplesPerCohort 50, a policy guard with a 5-point tolerance that
    the batch passes); then advance on every PROMOTE with no new samples."""
    spec = RULE.model_copy(deep=True)
    spec.analysis.min_samples_per_cohort = 50
    spec.analysis.guards = [g.model_copy(update={"tolerance": 0.05})
                            for g in spec.analysis.guards if g.name == "policy"]
    spec.steps = [s.model_copy(update={"weight": w, "pause": None}) for w in (10, 25, 50, 75)
                  for s in spec.steps[:1]]
    out = {}
    for with_steps in (False, True):
        stats = RuleStatistics(spec)
        if with_steps:
            stats.enter_step(0)
        for i in range(400):
            for cohort in (Cohort.BASELINE, Cohort.CANARY):
                stats.add(Sample.model_construct(
                    id=f"{cohort.value}-{i}", rule="r", cohort=cohort, ts=None, queue="general",
                    risk=Risk.LOW, input="q", output="a", latency_ms=1000.0, cost_usd=0.01,
                    fallback=False, policy_violation=False, judge=RecordedVerdict(score=1.0)))
        step, promoted = 0, False
        for _ in range(len(spec.steps)):
            if evaluate(spec, stats).action is not Action.PROMOTE:
                break
            if step + 1 == len(spec.steps):
                promoted = True
                break
            step += 1
            if with_steps:
                stats.enter_step(step, None)
        key = "with step windows" if with_steps else "without (stats not told the step)"
        out[key] = {"steps_reached": step + 1, "of": len(spec.steps), "promoted": promoted}
    return out


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results["scenarios"] if r["harmful"]]
    names = [r["scenario"] for r in rows]
    methods = ["ours", "threshold (tol)", "mann-whitney (tol)", "threshold (aa)",
               "mann-whitney (aa)"]
    fig, axes = plt.subplots(1, 2, figsize=(14, 5))
    width = 0.16
    for j, method in enumerate(methods):
        med = [r["methods"][method]["median_canary_samples"] or 0 for r in rows]
        miss = [r["methods"][method]["missed"] or 0 for r in rows]
        xs = np.arange(len(names)) + (j - 2) * width
        axes[0].bar(xs, med, width, label=method)
        axes[1].bar(xs, miss, width, label=method)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("median canary samples to rollback")
    axes[1].set_ylabel("missed within maxDuration")
    for ax in axes:
        ax.set_xticks(np.arange(len(names)))
        ax.set_xticklabels(names, rotation=35, ha="right", fontsize=8)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{results['runs']} rollouts per scenario; gates calibrated to alpha "
                 f"{results['alpha']} (aa: healthy, tol: at the tolerance)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer runs (under a minute)")
    p.add_argument("--runs", type=int, default=None)
    p.add_argument("--seed", type=int, default=20261130)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args(argv)
    runs = args.runs or (150 if args.quick else 2000)
    started = time.perf_counter()
    results = run(runs, args.seed, args.quick)
    results["seconds"] = round(time.perf_counter() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "decision_quality.json").write_text(json.dumps(results, indent=2))
    plot(results, args.out / "decision_quality.png")
    print(f"wrote {args.out / 'decision_quality.json'} and .png in {results['seconds']}s")


if __name__ == "__main__":
    main()
