"""Decision quality: our engine against today's gates on the same simulated rollouts.

    python benchmarks/decision_quality.py            # full run (a few minutes)
    python benchmarks/decision_quality.py --quick    # under a minute, for CI smoke runs

Simulation (the same streams for every method):

- The rule's steps and interval come from ``rules/support-assistant.yaml`` (5% → 20% →
  50%, one look per minute); each step lasts ``STEP_INTERVALS`` intervals, so traffic
  follows the steps on a fixed schedule for every method, up to ``maxDuration``.
- ``REQUESTS`` judged samples arrive per interval; the canary gets its step's share.
- Scenarios (truth known): A/A; task-success drops of 2, 5, 10, 20 points from 0.90
  (tolerance: 2 points); a fallback spike from 3% to 20% in one of four queues (the
  ``refunds`` queue, 8% of traffic; tolerance 2 points) while the overall rate moves by
  about one point; a policy-failure increase from 1% to 4% (tolerance 0.5 points).

Methods:

- **ours**: the confidence sequences of ``controller.analysis`` with the alpha the rule
  gives each slice (``alpha_split`` of the 7-guard support rule), a look every interval,
  FAIL as in ``decide.py`` (harmful bound beyond tolerance, after the burn-in); queues
  tested as their own slices where the guard groups by queue.
- **threshold** (Argo Rollouts / Flagger): every interval the canary's own rate over that
  interval is compared with a fixed threshold; rollback when more than ``failureLimit``
  = 2 intervals failed, as Argo counts them. Overall traffic only. The threshold is the
  baseline's true rate moved by twice the tolerance (success ≥ 0.86, fallback ≤ 7%,
  policy ≤ 2%): the gate is told the baseline's truth, and the doubled margin is what an
  operator sets so that a healthy canary does not trip it every hour (with the margin
  at exactly the tolerance it rolls back every A/A run at a 5% step).
- **mann-whitney** (Kayenta): every interval, a one-sided Mann-Whitney U test of canary
  vs baseline samples of that interval at confidence 0.98; rollback at the first
  interval where the canary is significantly worse. Only overall traffic.
- **fixed-horizon**: one one-sided two-proportion z-test (alpha 0.05, tolerance-shifted)
  at the maximum duration.

Reported per method and scenario: rollback rate (false rollbacks for A/A and for the
2-point drop, which sits at the tolerance), median and p90 intervals and canary samples
to rollback, missed regressions (harmful, never rolled back), false promotions (harmful,
promoted: reached the end without rollback for the gates, guard PASS for ours). Our
median samples to rollback is divided by Wald's lower bound ``log(1/alpha)/KL`` with KL
the Bernoulli divergence of the canary's per-sample distribution from the baseline's,
per canary sample (the baseline treated as known, which only makes the bound lower).
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
from scipy.stats import mannwhitneyu, norm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from controller.analysis import alpha_split  # noqa: E402
from controller.analysis.decide import BURN_IN  # noqa: E402
from controller.analysis.sequential import diff_proportions  # noqa: E402
from controller.sources.manifests import load_rules  # noqa: E402

RULE = load_rules([str(ROOT / "rules" / "support-assistant.yaml")])[0][0].rule.spec
ALPHA = RULE.analysis.alpha
M = RULE.analysis.min_samples_per_cohort
WEIGHTS = [s.weight for s in RULE.steps]
STEP_INTERVALS = 15
REQUESTS = 400
QUEUES = {"general": 0.47, "billing": 0.25, "technical": 0.20, "refunds": 0.08}
FAILURE_LIMIT = 2
MWU_CONFIDENCE = 0.98


@dataclass(frozen=True)
class Scenario:
    name: str
    guard: str  # the support rule's guard that watches this metric
    base: float
    canary: float
    tolerance: float  # signed in the harmful direction
    higher_is_better: bool
    spike_queue: str | None = None  # the canary differs only in this queue

    @property
    def harmful(self) -> bool:
        delta = round(self.canary - self.base, 9)  # a change exactly at the tolerance is fine
        return delta < self.tolerance if self.higher_is_better else delta > self.tolerance

    def rate(self, cohort: str, queue: str) -> float:
        if cohort == "canary" and (self.spike_queue is None or queue == self.spike_queue):
            return self.canary
        return self.base


SCENARIOS = [
    Scenario("A/A task success", "trusted-completion", 0.90, 0.90, -0.02, True),
    Scenario("success -2 pts (at tolerance)", "trusted-completion", 0.90, 0.88, -0.02, True),
    Scenario("success -5 pts", "trusted-completion", 0.90, 0.85, -0.02, True),
    Scenario("success -10 pts", "trusted-completion", 0.90, 0.80, -0.02, True),
    Scenario("success -20 pts", "trusted-completion", 0.90, 0.70, -0.02, True),
    Scenario("A/A fallback", "fallback", 0.03, 0.03, 0.02, False),
    Scenario("fallback spike in 1 of 4 queues", "fallback", 0.03, 0.20, 0.02, False,
             spike_queue="refunds"),
    Scenario("policy failures 1% -> 4%", "policy", 0.01, 0.04, 0.005, False),
]


def schedule() -> list[int]:
    """Canary weight (percent) per interval."""
    return [w for w in WEIGHTS for _ in range(STEP_INTERVALS)]


def simulate(sc: Scenario, runs: int, seed: int) -> dict[str, np.ndarray]:
    """Per interval, per run: events and samples per cohort and queue (T, runs, Q)."""
    rng = np.random.default_rng(seed)
    weights = schedule()
    t_max, q = len(weights), len(QUEUES)
    shares = np.array(list(QUEUES.values()))
    out = {k: np.zeros((t_max, runs, q), dtype=np.int64) for k in ("nc", "nb", "xc", "xb")}
    for t, w in enumerate(weights):
        n_c = round(REQUESTS * w / 100)
        n_b = REQUESTS - n_c
        nc = rng.multinomial(n_c, shares, size=runs)
        nb = rng.multinomial(n_b, shares, size=runs)
        pc = np.array([sc.rate("canary", name) for name in QUEUES])
        pb = np.array([sc.rate("baseline", name) for name in QUEUES])
        out["nc"][t], out["nb"][t] = nc, nb
        out["xc"][t] = rng.binomial(nc, pc)
        out["xb"][t] = rng.binomial(nb, pb)
    return out


def first_true(mask: np.ndarray) -> np.ndarray:
    """Index of the first True along axis 0, or -1."""
    any_ = mask.any(axis=0)
    return np.where(any_, mask.argmax(axis=0), -1)


def ours(sc: Scenario, d: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(interval of rollback or -1, promoted at the end) with the rule's alpha split."""
    split = alpha_split(RULE)
    guard = next(g for g in RULE.analysis.guards if g.name == sc.guard)
    a_all, a_slice = split[guard.name]
    cum = {k: v.cumsum(axis=0) for k, v in d.items()}
    slices: list[tuple[np.ndarray, ...]] = [
        (cum["xc"].sum(-1), cum["nc"].sum(-1), cum["xb"].sum(-1), cum["nb"].sum(-1), a_all)]
    if "queue" in guard.group_by:
        slices += [(cum["xc"][..., i], cum["nc"][..., i], cum["xb"][..., i], cum["nb"][..., i],
                    a_slice) for i in range(len(QUEUES))]
    fail = np.zeros(d["nc"].shape[:2], dtype=bool)
    passed_all = np.zeros_like(fail)
    burn = min(BURN_IN, M)
    for xc, nc, xb, nb, a in slices:
        with np.errstate(divide="ignore", invalid="ignore"):
            cs = diff_proportions(xc, np.maximum(nc, 1), xb, np.maximum(nb, 1), 1.0, float(a), M)
        ready = (nc >= burn) & (nb >= burn)
        harmful = cs.upper < sc.tolerance if sc.higher_is_better else cs.lower > sc.tolerance
        fail |= ready & harmful
        if a is a_all:
            safe = cs.lower >= sc.tolerance if sc.higher_is_better else cs.upper <= sc.tolerance
            passed_all = safe & (nc >= M) & (nb >= M)
    rollback = first_true(fail)
    promoted = (rollback < 0) & passed_all[-1]
    return rollback, promoted


def threshold_gate(sc: Scenario, d: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    nc, xc = d["nc"].sum(-1), d["xc"].sum(-1)
    rate = xc / np.maximum(nc, 1)
    limit = sc.base + 2 * sc.tolerance
    failed = (rate < limit) if sc.higher_is_better else (rate > limit)
    failed &= nc > 0
    rollback = first_true(failed.cumsum(axis=0) > FAILURE_LIMIT)
    return rollback, rollback < 0


def mann_whitney_gate(sc: Scenario, d: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Kayenta-style: per interval, canary vs baseline samples of that interval."""
    t_max, runs = d["nc"].shape[:2]
    fails = np.zeros((t_max, runs), dtype=bool)
    alternative = "less" if sc.higher_is_better else "greater"
    for t in range(t_max):
        n_c, n_b = int(d["nc"][t, 0].sum()), int(d["nb"][t, 0].sum())
        if n_c == 0 or n_b == 0:
            continue
        xc, xb = d["xc"][t].sum(-1), d["xb"][t].sum(-1)
        # rebuild the 0/1 samples of the interval (order does not matter for U)
        cj = (np.arange(n_c)[None, :] < xc[:, None]).astype(float)
        bj = (np.arange(n_b)[None, :] < xb[:, None]).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            p = mannwhitneyu(cj, bj, alternative=alternative, axis=1,
                             method="asymptotic").pvalue
        fails[t] = np.nan_to_num(p, nan=1.0) < 1 - MWU_CONFIDENCE
    rollback = first_true(fails)
    return rollback, rollback < 0


def fixed_horizon(sc: Scenario, d: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    nc, xc = d["nc"].sum(axis=(0, 2)), d["xc"].sum(axis=(0, 2))
    nb, xb = d["nb"].sum(axis=(0, 2)), d["xb"].sum(axis=(0, 2))
    pc, pb = xc / nc, xb / nb
    se = np.sqrt(pc * (1 - pc) / nc + pb * (1 - pb) / nb)
    z = norm.ppf(1 - ALPHA)
    delta = pc - pb
    harmful = (delta + z * se < sc.tolerance) if sc.higher_is_better \
        else (delta - z * se > sc.tolerance)
    t_end = d["nc"].shape[0] - 1
    return np.where(harmful, t_end, -1), ~harmful


METHODS = {"ours": ours, "threshold": threshold_gate, "mann-whitney": mann_whitney_gate,
           "fixed-horizon": fixed_horizon}


def kl_bernoulli(p: float, q: float) -> float:
    return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))


def wald_bound(sc: Scenario) -> float | None:
    """log(1/alpha)/KL(canary || baseline) canary samples, for the slice that carries the
    change (the spiking queue's share of canary samples is accounted for)."""
    if not sc.harmful:
        return None
    kl = kl_bernoulli(sc.canary, sc.base)
    per_sample = kl * (QUEUES[sc.spike_queue] if sc.spike_queue else 1.0)
    return math.log(1 / ALPHA) / per_sample


def summarise(sc: Scenario, d: dict[str, np.ndarray], rollback: np.ndarray,
              promoted: np.ndarray) -> dict[str, Any]:
    canary_samples = d["nc"].sum(-1).cumsum(axis=0)
    hit = rollback >= 0
    times = rollback[hit] + 1
    samples = canary_samples[rollback[hit], np.nonzero(hit)[0]] if hit.any() else np.array([])
    return {
        "rollback_rate": float(hit.mean()),
        "median_intervals": float(np.median(times)) if hit.any() else None,
        "p90_intervals": float(np.percentile(times, 90)) if hit.any() else None,
        "median_canary_samples": float(np.median(samples)) if hit.any() else None,
        "p90_canary_samples": float(np.percentile(samples, 90)) if hit.any() else None,
        "missed": float((~hit).mean()) if sc.harmful else None,
        "false_promotions": float(promoted.mean()) if sc.harmful else None,
    }


def run(runs: int, seed: int) -> dict[str, Any]:
    results: dict[str, Any] = {"runs": runs, "alpha": ALPHA, "requests_per_interval": REQUESTS,
                               "weights": WEIGHTS, "step_intervals": STEP_INTERVALS,
                               "scenarios": []}
    for i, sc in enumerate(SCENARIOS):
        d = simulate(sc, runs, seed + i)
        row: dict[str, Any] = {"scenario": sc.name, "harmful": sc.harmful, "methods": {}}
        for name, method in METHODS.items():
            rollback, promoted = method(sc, d)
            row["methods"][name] = summarise(sc, d, rollback, promoted)
        bound = wald_bound(sc)
        med = row["methods"]["ours"]["median_canary_samples"]
        row["wald_bound_canary_samples"] = bound
        row["ours_vs_wald"] = (med / bound) if bound and med else None
        results["scenarios"].append(row)
        print(f"{sc.name:34s} " + "  ".join(
            f"{n}: {m['rollback_rate']:.3f}" for n, m in row["methods"].items()), flush=True)
    return results


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["scenario"] for r in results["scenarios"]]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    width = 0.2
    for j, method in enumerate(METHODS):
        rates = [r["methods"][method]["rollback_rate"] for r in results["scenarios"]]
        med = [r["methods"][method]["median_intervals"] or 0 for r in results["scenarios"]]
        xs = np.arange(len(names)) + (j - 1.5) * width
        axes[0].bar(xs, rates, width, label=method)
        axes[1].bar(xs, med, width, label=method)
    axes[0].axhline(results["alpha"], color="k", ls=":", lw=1, label="alpha")
    axes[0].set_ylabel("rollback rate")
    axes[1].set_ylabel("median intervals to rollback")
    for ax in axes:
        ax.set_xticks(np.arange(len(names)))
        ax.set_xticklabels(names, rotation=35, ha="right", fontsize=8)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{results['runs']} simulated rollouts per scenario")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer runs (under a minute)")
    p.add_argument("--runs", type=int, default=None)
    p.add_argument("--seed", type=int, default=20261122)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args(argv)
    runs = args.runs or (200 if args.quick else 2000)
    started = time.perf_counter()
    results = run(runs, args.seed)
    results["seconds"] = round(time.perf_counter() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "decision_quality.json").write_text(json.dumps(results, indent=2))
    plot(results, args.out / "decision_quality.png")
    print(f"wrote {args.out / 'decision_quality.json'} and .png in {results['seconds']}s")


if __name__ == "__main__":
    main()
