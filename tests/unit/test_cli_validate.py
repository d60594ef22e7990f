"""``canaryctl validate``: exit codes and messages, run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from click.testing import CliRunner

from controller.cli import cli
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


def _minimal() -> dict[str, object]:
    doc = yaml.safe_load((ROOT / "rules" / "minimal.yaml").read_text())
    assert isinstance(doc, dict)
    return doc


def test_kubernetes_limits_are_checked_before_the_cluster_sees_them(tmp_path: Path) -> None:
    """A 64-character rule name would be a 422 on the canary's label at rollout time."""
    cases = {
        "metadata.name": ("metadata", {"name": "r" * 64}, "must be no more than 63"),
        "spec.canary.podLabels[tier]": ("canary", {"image": "x:1", "podLabels": {
            "tier": "bad value!"}}, "invalid value"),
        "spec.canary.podLabels[canary.llmops.dev/cohort]": ("canary", {
            "image": "x:1", "podLabels": {"canary.llmops.dev/cohort": "x"}},
            "are the controller's"),
        "spec.canary.podAnnotations[-bad]": ("canary", {
            "image": "x:1", "podAnnotations": {"-bad": "x"}}, "invalid key"),
        "spec.canary.env[0].name": ("canary", {"image": "x:1", "env": [
            {"name": "CANARY_REVISION", "value": "x"}]}, "set by the controller"),
        "spec.targetRef.name": ("targetRef", {"name": "T" * 10}, "lower case"),
    }
    for path, (key, value, reason) in cases.items():
        doc = _minimal()
        if key == "metadata":
            doc["metadata"] = value
        else:
            spec = doc["spec"]
            assert isinstance(spec, dict)
            spec[key] = value
        file = tmp_path / "r.yaml"
        file.write_text(yaml.safe_dump(doc))
        result = CliRunner().invoke(cli, ["validate", "-f", str(file), "-o", "json"])
        assert result.exit_code == 2, path
        (error,) = json.loads(result.stdout)["errors"]
        assert error["path"] == path and reason in error["reason"], error


def test_replica_ratio_warnings_with_replicas(tmp_path: Path) -> None:
    doc = _minimal()
    spec = doc["spec"]
    assert isinstance(spec, dict)
    spec["steps"] = [{"weight": 2}, {"weight": 50}]
    file = tmp_path / "r.yaml"
    file.write_text(yaml.safe_dump(doc))
    run = CliRunner().invoke
    result = run(cli, ["validate", "-f", str(file), "--replicas", "10"])
    assert result.exit_code == 0  # a warning, not an error
    assert "step 1 (weight 2%) runs 1 canary pod(s) of 10 pods: 10% of the traffic" in \
        result.stderr
    assert run(cli, ["validate", "-f", str(file)]).stderr == ""
    data = json.loads(run(cli, ["validate", "-f", str(file), "--replicas", "2", "-o",
                                "json"]).stdout)
    assert [w["path"] for w in data["warnings"]] == ["spec.steps[0].weight"]


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


def test_every_independent_error_is_listed_in_one_pass(tmp_path: Path) -> None:
    """Field errors used to hide the cross-field checks (a model validator runs only once
    its fields are valid, and stops at its first error): a wrong-sign tolerance showed up
    only after two other mistakes were fixed. One pass now names all of them."""
    doc = _minimal()
    doc["apiVersion"] = "canary.llmops.dev/v1"                       # 1: field of the object
    spec = doc["spec"]
    assert isinstance(spec, dict)
    spec["steps"] = [{"weight": 50}, {"weight": 20}]                 # 2: steps, cross-item
    spec["analysis"]["interval"] = "soon"                            # 3: a field of analysis
    spec["analysis"]["guards"] = [
        {"name": "fallback", "metric": "fallbackRate", "tolerance": -0.02},   # 4: sign
        {"name": "completion", "metric": "trustedCompletion", "tolerance": 0.02,  # 5: sign
         "beta": 2},                                                           # 6: variant
    ]
    path = tmp_path / "three.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = canaryctl("validate", "-f", str(path), "-o", "json")
    assert result.returncode == 2
    paths = [e["path"] for e in json.loads(result.stdout)["errors"]]
    assert sorted(paths) == sorted([
        "apiVersion", "spec.steps[1].weight", "spec.analysis.interval",
        "spec.analysis.guards[0].tolerance", "spec.analysis.guards[1].tolerance",
        "spec.analysis.guards[1].beta"]), paths
    text = canaryctl("validate", "-f", str(path))
    assert "6 error(s)" in text.stderr and "wrong sign" in text.stderr
