"""Judge throughput: judged samples per second at concurrency 1, 8 and 32, both modes.

Runs against the scripted OpenAI-compatible judge
(playground/canary_playground/scripted_judge.py) in a separate process with a fixed
per-request latency (default 300 ms, a realistic LLM round trip), so the figure measures
the judge's own concurrency, not a model. Reports samples/s, calls and tokens per sample,
and the speed-up over concurrency 1 measured in the same run. Writes JSON and a PNG plot.

    python benchmarks/judge_throughput.py --quick      # < 1 minute
    python benchmarks/judge_throughput.py              # more samples per point
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from canary_playground.scripted_judge import sample_record  # noqa: E402

from controller.judge import Judge, Judged, JudgeSettings  # noqa: E402
from controller.models import Sample  # noqa: E402

CONCURRENCY = (1, 8, 32)
MODES = ("fast", "thorough")
POLICY = "Never promise refunds; never share personal data."


def start_server(latency: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "canary_playground.scripted_judge", "--latency", str(latency)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"fake server did not start: {line!r}")
    return proc, f"http://127.0.0.1:{line.split()[1]}/v1"


def batch(n: int, tag: str) -> list[Sample]:
    cohorts = ("baseline", "canary")
    return [
        Sample.model_validate(
            sample_record(
                f"{tag}-{i}",
                f"Where is my order {tag}-{i}? [[judge: fully,mostly]] [[decision: approve]]",
                cohort=cohorts[i % 2],
            )
        )
        for i in range(n)
    ]


async def measure(base_url: str, mode: str, concurrency: int, n: int) -> dict[str, Any]:
    settings = JudgeSettings(
        model="gpt-4o-mini",
        base_url=base_url,
        mode=mode,  # type: ignore[arg-type]
        concurrency=concurrency,
        policy=POLICY,
        decision_labels=("approve", "review", "reject"),
    )
    async with Judge(settings) as judge:
        await judge.judge(batch(1, f"warm-{mode}-{concurrency}")[0])  # connection set-up
        judge.take_totals()
        samples = batch(n, f"{mode}-{concurrency}")
        start = time.perf_counter()
        results = await judge.judge_many(samples)
        elapsed = time.perf_counter() - start
        totals = judge.take_totals()
    judged = sum(isinstance(r, Judged) for r in results)
    return {
        "mode": mode,
        "concurrency": concurrency,
        "samples": n,
        "judged": judged,
        "seconds": round(elapsed, 3),
        "samples_per_s": round(judged / elapsed, 2),
        "calls_per_sample": round(totals.calls / n, 3),
        "prompt_tokens_per_sample": round(totals.prompt_tokens / n, 1),
        "completion_tokens_per_sample": round(totals.completion_tokens / n, 1),
        "cost_usd_per_sample": totals.cost_usd / n,
    }


def plot(rows: list[dict[str, Any]], latency: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for mode in MODES:
        pts = [r for r in rows if r["mode"] == mode]
        xs, ys = [r["concurrency"] for r in pts], [r["samples_per_s"] for r in pts]
        ax.plot(xs, ys, "o-", label=mode)
        calls = pts[0]["calls_per_sample"]
        ideal = [c / (latency * calls) for c in CONCURRENCY]
        ax.plot(CONCURRENCY, ideal, ":", color="grey", linewidth=1)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(CONCURRENCY, [str(c) for c in CONCURRENCY])
    ax.set_xlabel("concurrency (calls in flight)")
    ax.set_ylabel("judged samples / s")
    ax.set_title(f"Judge throughput, {latency * 1000:.0f} ms per call (dotted: ideal)")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples; under a minute")
    parser.add_argument("--latency", type=float, default=0.3, help="seconds per call")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    per_slot = {"fast": 4, "thorough": 2} if args.quick else {"fast": 20, "thorough": 8}
    proc, base_url = start_server(args.latency)
    rows: list[dict[str, Any]] = []
    try:
        for mode in MODES:
            for c in CONCURRENCY:
                n = max(per_slot[mode] * c, 10 if mode == "fast" else 5)
                row = asyncio.run(measure(base_url, mode, c, n))
                rows.append(row)
                print(
                    f"{mode:9s} c={c:<3d} n={n:<4d} {row['samples_per_s']:7.2f} samples/s "
                    f"{row['calls_per_sample']:.2f} calls/sample",
                    flush=True,
                )
    finally:
        proc.terminate()
        proc.wait(10)
    for row in rows:
        base = next(r for r in rows if r["mode"] == row["mode"] and r["concurrency"] == 1)
        row["speedup_vs_c1"] = round(row["samples_per_s"] / base["samples_per_s"], 2)
        row["scaling_efficiency"] = round(row["speedup_vs_c1"] / row["concurrency"], 3)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "judge_throughput",
        "quick": args.quick,
        "latency_s": args.latency,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "rows": rows,
    }
    (args.out_dir / "judge_throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(rows, args.latency, args.out_dir / "judge_throughput.png")
    print(f"wrote {args.out_dir / 'judge_throughput.json'} and judge_throughput.png")


if __name__ == "__main__":
    main()
