"""`canaryctl demo` end to end, as a newcomer runs it (a subprocess, --no-tty -o json)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.parametrize(("scenario", "code", "phase"),
                         [("regression", 3, "RolledBack"), ("healthy", 0, "Succeeded")])
def test_demo_reaches_its_terminal_phase(scenario: str, code: int, phase: str) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "controller.cli", "demo", "--scenario", scenario, "--no-tty",
         "-o", "json", "--timeout", "150"],
        capture_output=True, text=True, timeout=240,
    )
    assert run.returncode == code, run.stderr[-3000:]
    result = json.loads(run.stdout)
    assert result["phase"] == phase
    actions = [h["action"] for h in result["history"]]
    assert actions[0] == "start"
    if phase == "RolledBack":
        rollback = next(h for h in result["history"] if h["action"] == "rollback")
        assert "task-success" in rollback["reason"]
    else:
        assert "promote" in actions and actions[-1] == "promoted"
    assert "Traceback" not in run.stderr
