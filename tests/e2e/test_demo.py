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


def test_demo_timeout_says_once_what_it_timed() -> None:
    """``--timeout`` counts from the rule's apply; it used to print "timed out after 3s"
    and then "Progressing after 11s" as if that were a result."""
    run = subprocess.run(
        [sys.executable, "-m", "controller.cli", "demo", "--no-tty", "--timeout", "1"],
        capture_output=True, text=True, timeout=240,
    )
    assert run.returncode == 4, run.stderr[-3000:]
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("canaryctl: timed out: still ")
    assert "after the rule was applied (--timeout 1;" in last and "start-up included" in last
    assert " after " not in run.stdout  # no final "<phase> after Ns" summary
    assert "weight 0%: \n" not in run.stderr and not any(
        line.endswith(": ") for line in run.stderr.splitlines())
