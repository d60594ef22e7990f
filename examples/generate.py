"""Generate the shipped example sample files with a fixed seed.

    python examples/generate.py            # rewrites examples/*.jsonl

Each file holds judged interactions for the ``support-assistant`` rule
(rules/support-assistant.yaml), both cohorts sampled equally as the judge samples
them, one minute of traffic per 60+60 samples. The scenarios:

- ``healthy``: canary and baseline drawn from the same distributions.
- ``trusted-regression-billing``: the canary's task success falls from 0.90 to 0.55 in
  the ``billing`` queue only.
- ``fallback-spike-refunds``: the canary's fallback rate jumps from 3% to 25% in the
  small ``refunds`` queue; the overall rate rises by about one point, within tolerance.
- ``correction-burden``: the canary's outputs are edited more often (60% instead of 40%)
  and each edit takes twice as long: about 1.4 instead of 0.5 minutes per output.

Correction minutes are carried only by edited outputs (services report edits, not
their absence); the rule's ``feedbackWindow`` turns the silence into 0 minutes.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from controller.judge.aggregate import soft_min_score
from controller.models.verdict import LEVEL_SCORES, Level

HERE = Path(__file__).resolve().parent
RULE = "support-assistant"
QUEUES = {"general": 0.47, "billing": 0.25, "technical": 0.20, "refunds": 0.08}
RISKS = {"low": 0.6, "medium": 0.3, "high": 0.1}
TASKS = ["refund_request", "account_change", "complaint", "question"]
LABELS = ["approve", "review", "reject"]
TEMPERATURE = 0.1  # the rule's judge.temperature (judge.aggregation: softMin)
START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


@dataclass
class Cohort:
    """Distribution parameters for one cohort (defaults: a healthy service)."""

    success: dict[str, float] = field(default_factory=lambda: dict.fromkeys(QUEUES, 0.9))
    fallback: dict[str, float] = field(default_factory=lambda: dict.fromkeys(QUEUES, 0.03))
    policy: float = 0.01
    correction_scale: float = 1.0
    edit_rate: float = 0.4
    accuracy: float = 0.88
    latency_median_ms: float = 1500.0
    cost_median_usd: float = 0.004


def _choice(rng: np.random.Generator, weights: dict[str, float]) -> str:
    keys = list(weights)
    p = np.array([weights[k] for k in keys])
    return str(keys[int(rng.choice(len(keys), p=p / p.sum()))])


def _verdict(rng: np.random.Generator, success: bool) -> dict[str, Any]:
    m = int(rng.integers(1, 4))
    good = [Level.FULLY, Level.MOSTLY]
    bad = [Level.MINOR, Level.NONE]
    levels = [good[int(rng.integers(0, 2))] for _ in range(m)]
    if not success:
        levels[int(rng.integers(0, m))] = bad[int(rng.integers(0, 2))]
    score = soft_min_score([LEVEL_SCORES[lv] for lv in levels], TEMPERATURE)
    # Only the aggregated score is kept: the per-criterion verdicts (optional in the
    # record) would triple the files' size without changing any decision.
    return {"score": round(score, 4), "model": "gpt-4.1", "prompt_version": "task-success-v1"}


def _sample(
    rng: np.random.Generator, i: int, cohort: str, ts: datetime, c: Cohort
) -> dict[str, Any]:
    queue = _choice(rng, QUEUES)
    risk = _choice(rng, RISKS)
    task = TASKS[int(rng.integers(0, len(TASKS)))]
    success = bool(rng.random() < c.success[queue])
    label = LABELS[int(rng.integers(0, len(LABELS)))]
    decision = label if rng.random() < c.accuracy else LABELS[int(rng.integers(0, len(LABELS)))]
    record: dict[str, Any] = {
        "id": f"{cohort[0]}-{i:06d}",
        "rule": RULE,
        "cohort": cohort,
        "ts": ts.isoformat().replace("+00:00", "Z"),
        "queue": queue,
        "risk": risk,
        "task": task,
        "input": f"request {i}",
        "output": f"answer {i}",
        "latency_ms": round(float(c.latency_median_ms * rng.lognormal(0.0, 0.35)), 1),
        "cost_usd": round(float(c.cost_median_usd * rng.lognormal(0.0, 0.25)), 6),
        "fallback": bool(rng.random() < c.fallback[queue]),
        "policy_violation": bool(rng.random() < c.policy),
        "decision": decision,
        "label": label,
        "judge": _verdict(rng, success),
    }
    if rng.random() < c.edit_rate:
        mean = 1.0 if success else 3.0
        record["correction_minutes"] = round(float(rng.exponential(mean * c.correction_scale)), 2)
    return record


def scenario(name: str) -> tuple[Cohort, Cohort]:
    base, canary = Cohort(), Cohort()
    if name == "trusted-regression-billing":
        canary.success = {**canary.success, "billing": 0.55}
    elif name == "fallback-spike-refunds":
        canary.fallback = {**canary.fallback, "refunds": 0.25}
    elif name == "correction-burden":
        canary.correction_scale = 2.0
        canary.edit_rate = 0.6
    elif name != "healthy":
        raise ValueError(f"unknown scenario {name}")
    return base, canary


# Samples per cohort: enough for each scenario to reach its decision with room to spare
# (healthy promotes at 3600 per cohort; the regressions roll back well before the end).
SCENARIOS = {
    "healthy": 4200,
    "trusted-regression-billing": 1200,
    "fallback-spike-refunds": 1800,
    "correction-burden": 1500,
}


def generate(name: str, per_cohort: int, seed: int, per_minute: int = 60) -> list[dict[str, Any]]:
    """``per_cohort`` samples per cohort, ``per_minute`` per cohort per minute, interleaved."""
    rng = np.random.default_rng(seed)
    base, canary = scenario(name)
    records = []
    step = timedelta(seconds=60 / per_minute)
    for i in range(per_cohort):
        ts = START + i * step
        records.append(_sample(rng, i, "baseline", ts, base))
        records.append(_sample(rng, i, "canary", ts + step / 2, canary))
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--seed", type=int, default=20261122)
    args = parser.parse_args()
    for offset, (name, n) in enumerate(SCENARIOS.items()):
        path = args.out / f"{name}.jsonl"
        with path.open("w") as fh:
            for record in generate(name, n, args.seed + offset):
                fh.write(json.dumps(record, separators=(",", ":")) + "\n")
        print(f"wrote {path} ({2 * n} samples)")


if __name__ == "__main__":
    main()
