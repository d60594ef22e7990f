"""Each measurement finding, reproduced with generated files and ``canaryctl analyze``.

Every test writes a small rule and a sample file (fixed seeds), replays them through
the same engine the controller uses, and checks the decision the product promises:

1. correction burden per output (edit-only feedback) rolls back a canary that edits 3x
   the minutes per output, although its *edited* outputs take less time each;
2. trusted completion counts a fallback answer as not completed;
3. required slices hold promotion and say how many samples they still need;
4. F1 is the mean of per-task F1 (a collapsing small task is seen); per-class recall;
5. absolute floors roll back a canary that is no worse than the baseline but below
   the floor;
6. one absurd latency value decides nothing, a real +30% p95 shift rolls back;
7. judge sampling weights keep an oversampled cohort's estimate unbiased;
8. per-task judge thresholds;
9. a traffic-mix or share mismatch holds the rollout.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from click.testing import CliRunner

from controller.cli import cli
from tests.support import ROOT

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
QUEUES = {"general": 0.5, "billing": 0.25, "technical": 0.25}
RISKS = {"low": 0.6, "medium": 0.3, "high": 0.1}
TASKS = {"question": 0.5, "refund": 0.3, "complaint": 0.2}
LABELS = ["approve", "review", "reject"]
Record = dict[str, Any]
Tweak = Callable[[np.random.Generator, Record], None]


def _pick(rng: np.random.Generator, dist: dict[str, float]) -> str:
    keys = list(dist)
    p = np.array(list(dist.values()))
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def record(rng: np.random.Generator, i: int, cohort: str, ts: datetime,
           mix: dict[str, dict[str, float]] | None = None) -> Record:
    """A healthy interaction (the generator of examples/, trimmed)."""
    mix = mix or {}
    label = LABELS[int(rng.integers(0, 3))]
    decision = label if rng.random() < 0.88 else LABELS[int(rng.integers(0, 3))]
    return {
        "id": f"{cohort[0]}-{i:06d}", "rule": "probe", "cohort": cohort,
        "ts": ts.isoformat().replace("+00:00", "Z"),
        "queue": _pick(rng, mix.get("queue", QUEUES)), "risk": _pick(rng, RISKS),
        "task": _pick(rng, mix.get("task", TASKS)), "input": f"q{i}", "output": f"a{i}",
        "latency_ms": round(float(1500 * rng.lognormal(0, 0.35)), 1),
        "cost_usd": round(float(0.004 * rng.lognormal(0, 0.25)), 6),
        "fallback": bool(rng.random() < 0.03), "policy_violation": bool(rng.random() < 0.01),
        "label": label, "decision": decision,
        "judge": {"score": 0.95 if rng.random() < 0.9 else 0.2, "model": "judge"},
    }


def write_samples(path: Path, per_cohort: int, tweaks: dict[str, Tweak], *, seed: int = 7,
                  per_minute: int = 60, shares: tuple[int, int] = (1, 1),
                  mix: dict[str, dict[str, dict[str, float]]] | None = None) -> Path:
    """``per_cohort`` baseline samples (canary: times shares[1]/shares[0]), interleaved at
    ``per_minute`` baseline samples a minute; ``tweaks[cohort]`` edits each record."""
    rng = np.random.default_rng(seed)
    step = timedelta(seconds=60 / per_minute)
    lines = []
    for i in range(per_cohort):
        ts = START + i * step
        for cohort, k in (("baseline", shares[0]), ("canary", shares[1])):
            for j in range(k):
                r = record(rng, i * k + j, cohort, ts + j * step / max(k, 1),
                           (mix or {}).get(cohort))
                if cohort in tweaks:
                    tweaks[cohort](rng, r)
                lines.append(json.dumps(r))
    path.write_text("\n".join(lines) + "\n")
    return path


def write_rule(path: Path, guards: list[dict[str, Any]], **analysis: Any) -> Path:
    judge = analysis.pop("judge", {"model": "judge", "policy": "Be nice."})
    doc = {
        "apiVersion": "canary.llmops.dev/v1alpha1", "kind": "CanaryRule",
        "metadata": {"name": "probe"},
        "spec": {
            "targetRef": {"name": "probe"}, "canary": {"image": "probe:2"},
            "steps": [{"weight": 50}],
            "analysis": {"interval": "1m", "minSamplesPerCohort": 100, "maxDuration": "6h",
                         "guards": guards, **analysis},
            "judge": judge,
        },
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def analyze(rule: Path, samples: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(cli, ["analyze", str(rule), "--samples", str(samples),
                                      "-o", "json", *extra], catch_exceptions=False)
    return result.exit_code, json.loads(result.stdout)


def row(report: dict[str, Any], name: str, check: str = "compare",
        **where: str) -> dict[str, Any]:
    for g in report["guards"]:
        if g["name"] != name or g["check"] != check:
            continue
        if all(g.get(k) == v for k, v in where.items()) and all(
                g.get(k) is None for k in ("queue", "risk", "task") if k not in where):
            return g
    raise AssertionError(f"no row {name} {check} {where}")


# 1 -------------------------------------------------------------------------------------------

def test_1_correction_burden_per_output_rolls_back_edit_only_feedback(tmp_path: Path) -> None:
    """Baseline edits 10% of outputs x 5 min, canary 50% x 3 min; services report only
    edits. Per edited output the canary looks better (3 vs 5 minutes: the old guard
    promoted); per output it is 1.5 vs 0.5 minutes, and the guard rolls back."""
    def edits(share: float, minutes: float) -> Tweak:
        def tweak(rng: np.random.Generator, r: Record) -> None:
            if rng.random() < share:
                r["correction_minutes"] = round(float(rng.exponential(minutes)), 2)
        return tweak

    samples = write_samples(tmp_path / "s.jsonl", 2400,
                            {"baseline": edits(0.10, 5.0), "canary": edits(0.50, 3.0)})
    rule = write_rule(tmp_path / "r.yaml", [
        {"name": "burden", "metric": "correctionBurden", "tolerance": 0.5}],
        feedbackWindow="10m")
    code, report = analyze(rule, samples)
    assert code == 3, report["reason"]
    assert report["reason"].startswith("guard 'burden' failed")
    burden = row(report, "burden")
    assert abs(burden["baseline"] - 0.5) < 0.15 and abs(burden["canary"] - 1.5) < 0.25
    # only outputs whose 10-minute window closed were counted
    assert report["feedback_closed"] > 0
    assert burden["n_canary"] <= report["samples_seen"]["canary"] - 10 * 60 + 60


# 2 -------------------------------------------------------------------------------------------

def test_2_fallback_answers_are_not_trusted_completions(tmp_path: Path) -> None:
    """The canary serves 30% of requests from its fallback path with answers the judge
    still scores 0.9: trusted completion drops and the guard rolls back."""
    def fallback(share: float) -> Tweak:
        def tweak(rng: np.random.Generator, r: Record) -> None:
            r["fallback"] = bool(rng.random() < share)
            if r["fallback"]:
                r["judge"]["score"] = 0.9
        return tweak

    samples = write_samples(tmp_path / "s.jsonl", 1200,
                            {"baseline": fallback(0.03), "canary": fallback(0.30)})
    rule = write_rule(tmp_path / "r.yaml", [
        {"name": "trusted", "metric": "trustedCompletion", "tolerance": -0.03}],
        trusted={"latencyBudgetMs": 8000, "costBudgetUsd": 0.05})
    code, report = analyze(rule, samples)
    assert code == 3, report["reason"]
    trusted = row(report, "trusted")
    assert trusted["outcome"] == "fail" and trusted["delta"] < -0.2


# 3 -------------------------------------------------------------------------------------------

SUPPORT = yaml.safe_load((ROOT / "rules" / "support-assistant.yaml").read_text())


def test_3_required_slices_hold_the_shipped_healthy_replay(tmp_path: Path) -> None:
    """The shipped healthy replay promotes at 10:00 while fallback risk=high and the
    per-task F1 slices are inconclusive. Marked as required, they hold promotion, and
    analyze says how many more samples each needs."""
    doc = json.loads(json.dumps(SUPPORT))
    guards = {g["name"]: g for g in doc["spec"]["analysis"]["guards"]}
    guards["fallback"]["mustPass"] = ["risk=high"]
    guards["decisions-f1"]["mustPass"] = ["task"]
    rule = tmp_path / "r.yaml"
    rule.write_text(yaml.safe_dump(doc))
    code, report = analyze(rule, ROOT / "examples" / "healthy.jsonl")
    assert code == 4 and report["decision"] == "continue"
    assert "fallback risk=high must pass" in report["reason"]
    high = row(report, "fallback", risk="high")
    assert high["required"] and high["outcome"] == "inconclusive"
    assert high["upper"] > high["tolerance"]
    assert high["needed_canary"] > 0 and high["needed_baseline"] > 0
    tasks = [g for g in report["guards"] if g["name"] == "decisions-f1" and g["task"]]
    assert tasks and all(g["required"] for g in tasks)
    assert all(g["needed_canary"] is not None for g in tasks if g["outcome"] != "pass")


def test_3_required_slice_promotes_once_it_passes(tmp_path: Path) -> None:
    """A healthy canary whose high-risk slice has plenty of traffic: promotion waits for
    that slice to pass, then happens."""
    mix = {"queue": QUEUES}
    samples = write_samples(tmp_path / "s.jsonl", 2400, {}, seed=11,
                            mix={"baseline": mix, "canary": mix})
    guard = {"name": "fallback", "metric": "fallbackRate", "tolerance": 0.04,
             "groupBy": ["queue"]}
    free = write_rule(tmp_path / "free.yaml", [guard], trafficMix={"enabled": False})
    held = write_rule(tmp_path / "held.yaml", [guard | {"mustPass": ["queue=general"]}],
                      trafficMix={"enabled": False})
    code_free, free_report = analyze(free, samples)
    code_held, held_report = analyze(held, samples)
    assert code_free == 0 and code_held == 0
    assert held_report["decided_at"] > free_report["decided_at"]
    assert row(held_report, "fallback", queue="general")["outcome"] == "pass"
    assert "1 required slices pass" in held_report["reason"]


# 4 -------------------------------------------------------------------------------------------

def _degrade(task: str, accuracy: float) -> Tweak:
    def tweak(rng: np.random.Generator, r: Record) -> None:
        if r["task"] == task:
            r["decision"] = (r["label"] if rng.random() < accuracy
                             else LABELS[int(rng.integers(0, 3))])
    return tweak


def test_4_f1_is_the_mean_of_per_task_f1(tmp_path: Path) -> None:
    """A small task (10% of traffic) collapses (F1 ~0.86 -> ~0.45). The mean of per-task
    F1 drops by ~0.14 and the all-traffic F1 fails; pooled F1 barely moves."""
    mix = {"task": {"question": 0.5, "refund": 0.4, "escalation": 0.1}}
    samples = write_samples(tmp_path / "s.jsonl", 2400,
                            {"canary": _degrade("escalation", 0.25)}, seed=13,
                            mix={"baseline": mix, "canary": mix})
    guard = {"name": "f1", "metric": "f1", "tolerance": -0.05}
    code, report = analyze(write_rule(tmp_path / "mean.yaml", [guard]), samples)
    assert code == 3, report["reason"]
    head = row(report, "f1")
    assert -0.25 < head["delta"] < -0.08
    assert head["upper"] < 0  # all traffic: confidently worse
    _, pooled = analyze(write_rule(tmp_path / "pooled.yaml",
                                   [guard | {"acrossTasks": "pooled"}]), samples)
    pooled_head = row(pooled, "f1")
    assert pooled["decided_at"] == report["decided_at"]  # the task slice decided both
    assert pooled_head["delta"] > -0.06  # what the pooled statistic saw
    assert pooled_head["upper"] > head["upper"] + 0.05  # ... far less sure it is worse


def test_4_recall_of_one_class(tmp_path: Path) -> None:
    """The canary misses 'reject' (sends it to review) 40% of the time; macro precision
    hardly moves, recall of 'reject' rolls back."""
    def misses(rng: np.random.Generator, r: Record) -> None:
        if r["label"] == "reject" and rng.random() < 0.4:
            r["decision"] = "review"

    samples = write_samples(tmp_path / "s.jsonl", 1800, {"canary": misses}, seed=17)
    rule = write_rule(tmp_path / "r.yaml", [
        {"name": "reject-recall", "metric": "recall", "label": "reject", "tolerance": -0.05},
        {"name": "f2", "metric": "fbeta", "beta": 2.0, "tolerance": -0.5}])
    code, report = analyze(rule, samples)
    assert code == 3 and report["reason"].startswith("guard 'reject-recall' failed")
    assert row(report, "reject-recall")["delta"] < -0.2


# 5 -------------------------------------------------------------------------------------------

def _success(rate: float) -> Tweak:
    def tweak(rng: np.random.Generator, r: Record) -> None:
        r["judge"]["score"] = 0.95 if rng.random() < rate else 0.2
    return tweak


def test_5_a_floor_rolls_back_a_canary_no_worse_than_baseline_but_below_it(
    tmp_path: Path,
) -> None:
    guard = {"name": "success", "metric": "taskSuccess", "tolerance": -0.05, "minimum": 0.85}
    rule = write_rule(tmp_path / "r.yaml", [guard])
    low = write_samples(tmp_path / "low.jsonl", 1200,
                        {"baseline": _success(0.8), "canary": _success(0.8)}, seed=19)
    code, report = analyze(rule, low)
    assert code == 3, report["reason"]
    floor = row(report, "success", check="minimum")
    assert floor["outcome"] == "fail" and floor["upper"] < 0.85
    assert row(report, "success")["reason"].startswith("fails on all minimum")
    high = write_samples(tmp_path / "high.jsonl", 1200,
                         {"baseline": _success(0.95), "canary": _success(0.95)}, seed=19)
    code, report = analyze(rule, high)
    assert code == 0, report["reason"]
    assert row(report, "success", check="minimum")["outcome"] == "pass"


# 6 -------------------------------------------------------------------------------------------

ABSURD_MS = 86_400_000  # one day: the largest latency the sample schema accepts


def _absurd(rng: np.random.Generator, r: Record) -> None:
    if r["id"] == "c-000050":
        r["latency_ms"] = ABSURD_MS


def test_6_one_absurd_latency_decides_nothing(tmp_path: Path) -> None:
    """One schema-valid but absurd latency in the canary: the p95 guard (the default)
    promotes as if it were not there, a capped mean clips and counts it, an uncapped
    mean is held (its variance explodes) but never rolled back."""
    samples = write_samples(tmp_path / "s.jsonl", 1500, {"canary": _absurd}, seed=23)
    p95 = write_rule(tmp_path / "p95.yaml", [
        {"name": "latency", "metric": "latency", "tolerance": 0.2, "relative": True}])
    code, report = analyze(p95, samples)
    assert code == 0, report["reason"]  # the default statistic is p95: it promotes
    assert row(report, "latency")["statistic"] == "p95"
    capped = write_rule(tmp_path / "cap.yaml", [
        {"name": "latency", "metric": "latency", "statistic": "mean", "tolerance": 0.2,
         "relative": True}], plausibilityCap={"latencyMs": 60000})
    code, report = analyze(capped, samples)
    assert code == 0, report["reason"]
    assert row(report, "latency")["clipped_canary"] == 1
    uncapped = write_rule(tmp_path / "mean.yaml", [
        {"name": "latency", "metric": "latency", "statistic": "mean", "tolerance": 0.2,
         "relative": True}])
    code, report = analyze(uncapped, samples)
    assert code == 4  # held, never rolled back by one value
    assert row(report, "latency")["outcome"] == "inconclusive"


def test_6_a_real_p95_shift_rolls_back(tmp_path: Path) -> None:
    def slower(rng: np.random.Generator, r: Record) -> None:
        r["latency_ms"] = round(r["latency_ms"] * 1.3, 1)

    samples = write_samples(tmp_path / "s.jsonl", 3000, {"canary": slower}, seed=29)
    rule = write_rule(tmp_path / "r.yaml", [
        {"name": "latency", "metric": "latency", "tolerance": 0.1, "relative": True}])
    code, report = analyze(rule, samples)
    assert code == 3, report["reason"]
    assert row(report, "latency")["lower"] > 0.1


# 7 -------------------------------------------------------------------------------------------

def test_7_judge_weights_keep_an_oversampled_cohort_unbiased(tmp_path: Path) -> None:
    """High-risk tasks are harder (success 0.55 vs 0.93). The canary's judge sample takes
    every high-risk sample and a quarter of the rest (weight 4); the baseline's is
    uniform. Unweighted the canary looks far worse; weighted, the two agree."""
    def harder(rng: np.random.Generator, r: Record) -> float:
        rate = 0.55 if r["risk"] == "high" else 0.93
        r["judge"]["score"] = 0.95 if rng.random() < rate else 0.2
        return rate

    def canary(rng: np.random.Generator, r: Record) -> None:
        harder(rng, r)
        if r["risk"] != "high":
            if rng.random() < 0.75:
                del r["judge"]  # not judged
            else:
                r["judge"]["sampling_weight"] = 4.0

    def baseline(rng: np.random.Generator, r: Record) -> None:
        harder(rng, r)

    samples = write_samples(tmp_path / "s.jsonl", 4800,
                            {"baseline": baseline, "canary": canary}, seed=31,
                            per_minute=120)
    rule = write_rule(tmp_path / "r.yaml", [
        {"name": "success", "metric": "taskSuccess", "tolerance": -0.05}],
        trafficMix={"enabled": False})
    code, report = analyze(rule, samples)
    assert code == 0, report["reason"]
    success = row(report, "success")
    assert abs(success["delta"]) < 0.03
    unweighted = tmp_path / "unweighted.jsonl"
    lines = [json.loads(x) for x in samples.read_text().splitlines()]
    for r in lines:
        if "judge" in r:
            r["judge"].pop("sampling_weight", None)
    unweighted.write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    code, report = analyze(rule, unweighted)
    assert code == 3  # without the weights, the oversampled hard stratum looks like a regression


# 8 -------------------------------------------------------------------------------------------

def test_8_per_task_judge_thresholds(tmp_path: Path) -> None:
    """Open-ended answers score lower by nature: the canary's 0.6 is a success at the
    task's threshold 0.5; with the rule-wide 0.7 the same data rolls back."""
    mix = {"task": {"question": 0.5, "open-ended": 0.5}}

    def scores(value: float) -> Tweak:
        def tweak(rng: np.random.Generator, r: Record) -> None:
            if r["task"] == "open-ended" and r["judge"]["score"] > 0.5:
                r["judge"]["score"] = value
        return tweak

    samples = write_samples(tmp_path / "s.jsonl", 1200,
                            {"baseline": scores(0.8), "canary": scores(0.6)}, seed=37,
                            mix={"baseline": mix, "canary": mix})
    guard = [{"name": "success", "metric": "taskSuccess", "tolerance": -0.05}]
    per_task = write_rule(tmp_path / "t.yaml", guard, judge={
        "model": "judge", "policy": "x", "thresholds": [{"task": "open-ended", "threshold": 0.5}]})
    code, report = analyze(per_task, samples)
    assert code == 0, report["reason"]
    code, _ = analyze(write_rule(tmp_path / "flat.yaml", guard), samples)
    assert code == 3


# 9 -------------------------------------------------------------------------------------------

def test_9_traffic_mix_mismatch_holds(tmp_path: Path) -> None:
    """The canary receives three times the billing share (a routing bug): every guard
    passes, but the comparison is confounded and the rollout holds."""
    skew = {"queue": {"general": 0.25, "billing": 0.65, "technical": 0.10}}
    samples = write_samples(tmp_path / "s.jsonl", 1500, {}, seed=41,
                            mix={"baseline": {"queue": QUEUES}, "canary": skew})
    rule = write_rule(tmp_path / "r.yaml", [
        {"name": "fallback", "metric": "fallbackRate", "tolerance": 0.03}])
    code, report = analyze(rule, samples)
    assert code == 4
    assert report["reason"].startswith("holding: traffic mix mismatch: queue: mismatch: "
                                       "queue=billing")
    assert row(report, "fallback")["outcome"] == "pass"
    assert row(report, "traffic-mix:queue", check="mix")["outcome"] == "inconclusive"
    same = write_samples(tmp_path / "same.jsonl", 1500, {}, seed=41)
    code, _ = analyze(rule, same)
    assert code == 0


def test_9_canary_share_mismatch_holds_only_beyond_the_band(tmp_path: Path) -> None:
    """One canary sample per two baseline samples is a 1/3 share."""
    samples = write_samples(tmp_path / "s.jsonl", 1500, {}, seed=43, shares=(2, 1))
    rule = write_rule(tmp_path / "r.yaml", [
        {"name": "fallback", "metric": "fallbackRate", "tolerance": 0.03}])
    code, report = analyze(rule, samples, "--canary-share", "0.5")
    assert code == 4 and "share: mismatch" in report["reason"]
    code, report = analyze(rule, samples, "--canary-share", "0.36")
    assert code == 0, report["reason"]  # off by 8%: within the 20% band, reported only
    share = row(report, "traffic-mix:share", check="share")
    assert share["outcome"] == "pass"
