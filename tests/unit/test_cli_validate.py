"""``canaryctl validate``: exit codes and messages, run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from tests.support import ROOT


def canaryctl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from controller.cli import main; main()", *args],
        capture_output=True,
        text=True,
        input=stdin,
        cwd=ROOT,
        timeout=60,
    )


def test_valid_rules_exit_zero() -> None:
    result = canaryctl("validate", "-f", "rules/")
    assert result.returncode == 0, result.stderr
    assert "CanaryRule support-assistant" in result.stdout


def test_invalid_rule_exits_two_and_names_file_doc_and_field(tmp_path: Path) -> None:
    doc = yaml.safe_load((ROOT / "rules" / "minimal.yaml").read_text())
    doc["spec"]["steps"] = [{"weight": 50}, {"weight": 20}]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = canaryctl("validate", "-f", str(path), "-f", "rules/minimal.yaml")
    assert result.returncode == 2
    assert f"{path}[0]: spec.steps[1].weight:" in result.stderr
    assert "Traceback" not in result.stderr
    assert "CanaryRule faq-bot" in result.stdout


def test_json_output_and_stdin() -> None:
    text = (ROOT / "rules" / "minimal.yaml").read_text().replace("0.02", "-0.02")
    result = canaryctl("validate", "-f", "-", "-o", "json", stdin=text)
    assert result.returncode == 2
    report = json.loads(result.stdout)
    assert report["errors"][0]["path"] == "spec.analysis.guards[0].tolerance"
    assert report["errors"][0]["file"] == "<stdin>"


def test_missing_file_is_one_clear_line(tmp_path: Path) -> None:
    result = canaryctl("validate", "-f", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "cannot read" in result.stderr and "Traceback" not in result.stderr


def test_absurd_numbers_are_refused_with_the_field(tmp_path: Path) -> None:
    """The hostile-rule attack: .inf and .nan tolerances, 101 on a rate, a 0.1 µs interval."""
    base = yaml.safe_load((ROOT / "rules" / "minimal.yaml").read_text())
    docs = []
    for tolerance, interval in ((".inf", "1m"), (".nan", "1m"), ("101", "1m"),
                                ("0.02", "0.0001ms")):
        text = yaml.safe_dump(base).replace("tolerance: 0.02", f"tolerance: {tolerance}")
        doc = yaml.safe_load(text)
        doc["spec"]["analysis"]["interval"] = interval
        docs.append(doc)
    path = tmp_path / "absurd.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    result = canaryctl("validate", "-f", str(path))
    assert result.returncode == 2
    for i in range(3):
        assert f"{path}[{i}]: spec.analysis.guards[0].tolerance:" in result.stderr
    assert f"{path}[3]: spec.analysis.interval:" in result.stderr
    assert "Traceback" not in result.stderr


def test_shipped_rules_have_no_warnings() -> None:
    result = canaryctl("validate", "-f", "rules/")
    assert result.returncode == 0
    assert "WARNING" not in result.stderr


def test_weak_trusted_completion_warns_loudly_but_validates(tmp_path: Path) -> None:
    """Finding 2: a trusted-completion guard with no latency or cost budget and no policy
    source is valid, but validate says what it does not check (exit 0)."""
    doc = yaml.safe_load((ROOT / "rules" / "minimal.yaml").read_text())
    doc["spec"]["analysis"]["guards"] = [
        {"name": "trusted", "metric": "trustedCompletion", "tolerance": -0.02},
        {"name": "cost", "metric": "cost", "tolerance": 0.1, "relative": True}]
    path = tmp_path / "weak.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = canaryctl("validate", "-f", str(path))
    assert result.returncode == 0, result.stderr
    assert "ok   " in result.stdout
    lines = [x for x in result.stderr.splitlines() if x.startswith("WARNING")]
    assert len(lines) == 4
    assert any("does not check latency" in x for x in lines)
    assert any("does not check cost" in x for x in lines)
    assert any("no policy source (judge.policy is unset)" in x for x in lines)
    assert any("plausibilityCap" in x and "(cost)" in x for x in lines)
    assert "spec.analysis.guards[0] (trusted)" in lines[0]
    report = json.loads(canaryctl("validate", "-f", str(path), "-o", "json").stdout)
    assert len(report["warnings"]) == 4 and report["errors"] == []
