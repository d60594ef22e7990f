"""Waiting for a condition in tests: poll until it holds, with a generous bound, never a
timed assertion (the suite runs on a loaded 2-core machine)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(check: Callable[[], Any], timeout: float = 10.0, what: str = "condition", *,
             every: float = 0.02, logs: Callable[[], str] | None = None) -> Any:
    """``check()``'s first truthy value; an AssertionError naming ``what`` (and the tail
    of ``logs()``, e.g. a process's log) when ``timeout`` seconds pass without one."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            tail = f"\n{logs()[-4000:]}" if logs is not None else ""
            raise AssertionError(f"timed out waiting for {what} ({timeout}s){tail}")
        time.sleep(every)
