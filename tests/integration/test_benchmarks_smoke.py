"""The benchmarks run from a clean checkout (tiny configurations; figures not checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT


def run(script: str, *args: str) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_decision_quality_quick(tmp_path: Path) -> None:
    run("decision_quality.py", "--quick", "--runs", "40", "--out", str(tmp_path))
    data = json.loads((tmp_path / "decision_quality.json").read_text())
    assert (tmp_path / "decision_quality.png").stat().st_size > 0
    methods = {"ours", "ours (stratified)", "ours (previous)"} | {
        f"{g} ({k})" for g in ("threshold", "mann-whitney") for k in ("aa", "tol", "uncalibrated")}
    assert len(data["scenarios"]) == 18
    for row in data["scenarios"]:
        assert set(row["methods"]) == methods
        for m in row["methods"].values():
            assert {"rollback_rate", "median_intervals", "p90_intervals",
                    "median_canary_samples", "p90_canary_samples", "missed"} <= set(m)
        if row["harmful"]:
            assert {"alpha", "kl", "samples"} <= set(row["wald"])
    assert len(data["calibration"]) == 5 * 2 * 2
    assert len(data["late"]) == 6
    assert {r["scenario"] for r in data["drift"]} == {
        "A/A success, fast drift", "success at tolerance, fast drift", "success -5 pts, fast drift"}
    assert set(data["family_at_tolerance"]) == {"ours", "stratified", "previous"}
    assert data["one_batch"]["with step windows"]["promoted"] is False


def test_engine_cost_quick(tmp_path: Path) -> None:
    run("engine_cost.py", "--quick", "--out", str(tmp_path))
    rows = json.loads((tmp_path / "engine_cost.json").read_text())["rows"]
    assert [r["samples"] for r in rows] == [1000, 10000, 100000]
    assert rows[0]["ratio_vs_1e3"] == 1.0


def test_controller_ticks_quick(tmp_path: Path) -> None:
    run("controller_ticks.py", "--quick", "--rules", "5", "--out", str(tmp_path))
    data = json.loads((tmp_path / "controller_ticks.json").read_text())
    for key in ("reference", "loaded"):
        assert {"startup_s", "rules_per_s", "tick_lateness", "tick_duration",
                "decision_to_rollback_patch_s"} <= set(data[key])
    assert data["loaded"]["rules"] == 5
    for key in ("reference", "loaded"):  # the bad canary was rolled back, and measured
        assert 0 <= data[key]["decision_to_rollback_patch_s"] < 60


def test_ingest_load_quick(tmp_path: Path) -> None:
    run("ingest_load.py", "--quick", "--seconds", "2", "--out", str(tmp_path))
    data = json.loads((tmp_path / "ingest_load.json").read_text())
    for key in ("reference", "loaded"):
        assert {"samples_per_s", "batch_p50_ms", "batch_p99_ms", "peak_rss_mib",
                "ticks_run", "ticks_skipped", "answers_429"} <= set(data[key])
        assert data[key]["accepted"] > 0 and data[key]["answers_other"] == 0
    assert data["chart_memory_limit_mib"] == 512 and 0 < data["peak_rss_vs_limit"] < 1
