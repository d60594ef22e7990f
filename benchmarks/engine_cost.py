"""Engine cost per decision as the evidence grows: it should stay flat.

    python benchmarks/engine_cost.py [--quick]

For each total N of samples already folded in (10³ … 10⁶), time one analysis step as
the controller does it: read the statistics back from their status form, add one
interval's new samples (100) and evaluate every guard of ``rules/support-assistant.yaml``.
As in the controller, the statistics know the rollout's step: the N samples were stamped
in step 1, the rollout is at step 2 with 11 one-minute intervals of 100 samples behind it
(so the strata are two and the change detector has its full set of start times), and the
new samples fall in the step's 12th interval. The figure is a ratio against the same step
at N = 10³ measured in the same run, so the machine's speed cancels out. The statistics
are built by merging pre-aggregated blocks, which is what lets N reach 10⁶ in seconds;
the timed step is the real add + evaluate path.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from controller.analysis import RuleStatistics, evaluate  # noqa: E402
from controller.models import Cohort, RecordedVerdict, Risk, Sample  # noqa: E402
from controller.sources.manifests import load_rules  # noqa: E402

SPEC = load_rules([str(ROOT / "rules" / "support-assistant.yaml")])[0][0].rule.spec
QUEUES = ("general", "billing", "technical", "refunds")
LABELS = ("approve", "review", "reject")
START = datetime(2026, 1, 1, tzinfo=UTC)
STEP2 = START + timedelta(minutes=15)
MINUTE = timedelta(minutes=1)


def samples(rng: np.random.Generator, n: int, start: int, at: datetime = START) -> list[Sample]:
    """n samples stamped over the minute from ``at``."""
    out = []
    for i in range(n):
        cohort = Cohort.CANARY if i % 2 else Cohort.BASELINE
        label = LABELS[int(rng.integers(3))]
        out.append(Sample.model_construct(
            id=f"s{start + i}", rule="r", cohort=cohort, ts=at + (i / n) * MINUTE,
            queue=QUEUES[int(rng.integers(4))], risk=list(Risk)[int(rng.integers(3))],
            input="q", output="a", latency_ms=float(rng.lognormal(7, 0.3)),
            cost_usd=float(rng.lognormal(-5.5, 0.2)), fallback=bool(rng.random() < 0.03),
            policy_violation=bool(rng.random() < 0.01), decision=label, label=label,
            task="question", correction_minutes=float(rng.exponential(1.0)),
            judge=RecordedVerdict(score=float(rng.random() < 0.9))))
    return out


def stats_with(n_total: int, block: RuleStatistics, block_size: int,
               step2: list[list[Sample]]) -> RuleStatistics:
    """N samples of step 1 (merged blocks), then step 2 with its first intervals."""
    stats = RuleStatistics(SPEC)
    stats.enter_step(0, START, rollout_started_at=START)
    for _ in range(n_total // block_size):
        stats = stats.merge(block)
    stats.enter_step(1, STEP2, rollout_started_at=START)
    for interval in step2:
        for s in interval:
            stats.add(s)
    return stats


def time_step(stats: RuleStatistics, new: list[Sample], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        saved = stats.to_dict()
        t0 = time.perf_counter()
        snapshot = RuleStatistics.from_dict(SPEC, saved)
        snapshot.enter_step(1, STEP2, rollout_started_at=START)
        for s in new:
            snapshot.add(s)
        evaluate(SPEC, snapshot)
        times.append(time.perf_counter() - t0)
    return min(times)  # the least disturbed run: other work on the machine only adds


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args(argv)
    rng = np.random.default_rng(1)
    block_size = 1000
    block = RuleStatistics(SPEC)
    block.enter_step(0, START, rollout_started_at=START)
    for s in samples(rng, block_size, 0):
        block.add(s)
    step2 = [samples(rng, 100, 10**8 + 100 * j, STEP2 + j * MINUTE) for j in range(11)]
    new = samples(rng, 100, 10**9, STEP2 + 11 * MINUTE)
    sizes = [10**3, 10**4, 10**5] if args.quick else [10**3, 10**4, 10**5, 10**6]
    repeats = 5 if args.quick else 15
    rows: list[dict[str, Any]] = []
    for n in sizes:
        seconds = time_step(stats_with(n, block, block_size, step2), new, repeats)
        rows.append({"samples": n, "seconds_per_step": seconds})
        print(f"N={n:>9,}: {seconds * 1000:.2f} ms per load+add(100)+evaluate", flush=True)
    ref = rows[0]["seconds_per_step"]
    for r in rows:
        r["ratio_vs_1e3"] = r["seconds_per_step"] / ref
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "engine_cost.json").write_text(json.dumps({"rows": rows}, indent=2))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogx([r["samples"] for r in rows], [r["ratio_vs_1e3"] for r in rows], "o-")
    ax.axhline(1.0, color="k", ls=":", lw=1)
    ax.set_ylim(0, max(2.0, max(r["ratio_vs_1e3"] for r in rows) * 1.2))
    ax.set_xlabel("samples already in the statistics")
    ax.set_ylabel("time per step / time at 10³")
    ax.set_title("engine cost per decision")
    fig.tight_layout()
    fig.savefig(args.out / "engine_cost.png", dpi=110)
    print(f"wrote {args.out / 'engine_cost.json'} and .png")


if __name__ == "__main__":
    main()
