"""The playground's process bookkeeping: pid files that name their command line, so a
stale pid file never makes ``down`` signal an unrelated process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from canary_playground.stack import Stack

SLEEP = [sys.executable, "-c", "import time; time.sleep(30)"]


def test_start_records_and_stop_terminates(tmp_path: Path) -> None:
    stack = Stack(tmp_path, detached=True)
    proc = stack.start("sleeper", SLEEP)
    assert stack.running() == {"sleeper": proc.pid}
    record = json.loads((tmp_path / "sleeper.pid").read_text())
    assert record["argv"] == SLEEP
    assert Stack(tmp_path).stop("sleeper", timeout=5)  # another Stack, as `down` is
    proc.wait(5)
    assert not (tmp_path / "sleeper.pid").exists()
    assert Stack(tmp_path).stop_all() == []


def test_a_reused_pid_is_left_alone(tmp_path: Path) -> None:
    other = subprocess.Popen(SLEEP)
    try:
        (tmp_path / "controller.pid").write_text(json.dumps(
            {"pid": other.pid, "argv": [sys.executable, "-m", "controller"]}))
        stack = Stack(tmp_path)
        assert stack.running() == {}
        assert stack.stop_all() == []
        assert other.poll() is None  # still running: not ours
        assert not (tmp_path / "controller.pid").exists()
    finally:
        other.kill()
        other.wait(5)
