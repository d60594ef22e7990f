"""Process health, for the probes: liveness (restart me) and readiness (send me traffic).

Readiness does not depend on leadership: a standby replica is healthy and Ready (so a
``helm upgrade`` with several replicas never waits on pods that can only become Ready by
winning the lease); it answers ingestion with 503 and ``Retry-After`` instead.

Any part of the process registers what must stay alive: :meth:`Health.watch` takes a name
and a zero-argument check (``thread.is_alive``); a failed check makes ``/healthz`` and
``/readyz`` answer 503 naming it, so the kubelet restarts a process whose watch, worker or
scheduler thread died instead of leaving a zombie that answers probes. Parts that stop on
purpose call :meth:`Health.unwatch` first. Threads run under the
:class:`~controller.supervisor.Supervisor` (restarted after a crash) are reported through
:meth:`Health.include`: one that is dead or keeps crashing fails the probes by name.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Report:
    ok: bool
    failing: tuple[str, ...] = ()


class Health:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._checks: dict[str, Callable[[], bool]] = {}
        self._sources: list[Callable[[], list[str]]] = []

    def watch(self, name: str, alive: Callable[[], bool]) -> None:
        """``alive()`` must stay true for the process to be live (and ready)."""
        with self._lock:
            self._checks[name] = alive

    def watch_thread(self, thread: threading.Thread) -> None:
        self.watch(f"thread {thread.name}", thread.is_alive)

    def include(self, problems: Callable[[], list[str]]) -> None:
        """Another reporter of liveness problems, one line each (the supervisor's)."""
        with self._lock:
            self._sources.append(problems)

    def unwatch(self, name: str) -> None:
        with self._lock:
            self._checks.pop(name, None)

    def liveness(self) -> Report:
        with self._lock:
            checks = list(self._checks.items())
            sources = list(self._sources)
        dead = sorted(name for name, alive in checks if not _safe(alive))
        for source in sources:
            try:
                dead.extend(source())
            except Exception as exc:
                dead.append(f"health source failed: {type(exc).__name__}")
        return Report(not dead, tuple(dead))

    def readiness(self) -> Report:
        """Ready exactly when live: leadership and loading are answered per request (503
        with Retry-After), never by taking a replica out of its Service."""
        return self.liveness()


def _safe(check: Callable[[], bool]) -> bool:
    try:
        return bool(check())
    except Exception:
        return False
