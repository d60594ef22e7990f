"""`canaryctl plan`: table and JSON output, exit codes for bad input."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from controller.cli import cli
from tests.support import ROOT

MINIMAL = str(ROOT / "rules" / "minimal.yaml")


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["plan", *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_json_has_steps_guards_and_warnings() -> None:
    code, out, _ = run(MINIMAL, "--rate", "300", "--runs", "5", "-o", "json",
                       "--baseline", "fallbackRate=0.02")
    assert code == 0
    data = json.loads(out)
    assert [s["weight"] for s in data["steps"]] == [10, 50]
    assert data["guards"][0]["name"] == "fallback"
    assert data["guards"][0]["baseline"] == 0.02
    assert data["guards"][0]["regression"] == 0.06
    assert {"median", "p90"} <= set(data["minutes_to_promote"])
    assert isinstance(data["warnings"], list)


def test_table_and_low_rate_warning() -> None:
    code, out, _ = run(MINIMAL, "--rate", "2", "--runs", "5")
    assert code == 0
    assert "healthy canary" in out and "warning:" in out


def test_bad_input_exits_2(tmp_path: Path) -> None:
    assert run(MINIMAL, "--rate", "0")[0] == 2
    assert run(MINIMAL, "--rate", "nan")[0] == 2
    assert run(MINIMAL, "--rate", "10", "--baseline", "nokey")[0] == 2
    assert run(MINIMAL, "--rate", "10", "--baseline", "latency=abc")[0] == 2
    code, _, err = run(MINIMAL, "--rate", "10", "--baseline", "fallback=2")
    assert code == 2 and "rate must be in (0, 1)" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: CanaryRule\nspec: {}\n")
    assert run(str(bad), "--rate", "10")[0] == 2
