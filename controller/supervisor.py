"""Background threads that survive any exception, and a health report naming a dead one.

Every long-running loop of the process (the leader lease, the watches, the workers, the
resync, the store's retention) runs under :meth:`Supervisor.spawn`: an exception that
escapes the loop (a bug, an ``AttributeError`` from a client library, a ``KeyError`` in a
malformed object) is logged with its traceback, counted in
``llmcanary_thread_restarts_total{thread}``, and the loop is started again after a capped
exponential backoff. A loop reports progress with :meth:`Supervisor.beat`; one that keeps
failing without progress, or whose thread is gone while it should run, is named by
:meth:`Supervisor.problems` - the HTTP server's liveness and readiness read it, so a dead
thread cannot go unnoticed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from controller.observability import THREAD_RESTARTS

log = logging.getLogger(__name__)

FAILING_AFTER = 3
"""Consecutive crashes without progress after which a thread is reported as failing."""
BACKOFF_BASE, BACKOFF_CAP = 0.5, 30.0


@dataclass
class _Entry:
    name: str
    stop: threading.Event
    thread: threading.Thread | None = None
    restarts: int = 0
    consecutive: int = 0
    last_error: str = ""
    last_beat: float = field(default_factory=time.monotonic)


class Supervisor:
    def __init__(self, *, backoff_base: float = BACKOFF_BASE,
                 backoff_cap: float = BACKOFF_CAP) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap

    def spawn(self, name: str, loop: Callable[[], None], stop: threading.Event) -> threading.Thread:
        """Run ``loop()`` in a daemon thread until ``stop`` is set, restarting it after any
        exception (and after an early return while ``stop`` is not set)."""
        entry = _Entry(name, stop)
        thread = threading.Thread(target=self._run, args=(entry, loop), name=name, daemon=True)
        entry.thread = thread
        with self._lock:
            self._entries[name] = entry
        thread.start()
        return thread

    def _run(self, entry: _Entry, loop: Callable[[], None]) -> None:
        while not entry.stop.is_set():
            try:
                loop()
                if entry.stop.is_set():
                    break
                raise RuntimeError("the loop returned while it should run")
            except Exception as exc:
                with self._lock:
                    entry.restarts += 1
                    entry.consecutive += 1
                    entry.last_error = f"{type(exc).__name__}: {exc}"[:300]
                    attempt = entry.consecutive
                THREAD_RESTARTS.labels(entry.name).inc()
                log.exception("thread %s crashed (restart %d); restarting", entry.name,
                              entry.restarts)
                delay = min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1))
                entry.stop.wait(delay)

    def beat(self, name: str | None = None) -> None:
        """The calling loop made progress (``name``: the current thread's by default)."""
        key = name or threading.current_thread().name
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                entry.consecutive = 0
                entry.last_beat = time.monotonic()

    def forget(self, name: str) -> None:
        """A thread that was stopped on purpose (e.g. after losing the lease)."""
        with self._lock:
            self._entries.pop(name, None)

    def problems(self) -> list[str]:
        """One line per thread that is dead while it should run, or failing repeatedly."""
        out: list[str] = []
        with self._lock:
            entries = list(self._entries.values())
        for e in entries:
            if e.stop.is_set():
                continue
            if e.thread is not None and not e.thread.is_alive():
                out.append(f"thread {e.name} is dead")
            elif e.consecutive >= FAILING_AFTER:
                out.append(f"thread {e.name} keeps failing ({e.consecutive} crashes in a row, "
                           f"last: {e.last_error})")
        return out

    def health(self) -> dict[str, dict[str, object]]:
        """Per thread: alive, restarts, consecutive crashes, last error."""
        with self._lock:
            return {e.name: {"alive": bool(e.thread and e.thread.is_alive()),
                             "stopping": e.stop.is_set(), "restarts": e.restarts,
                             "consecutiveFailures": e.consecutive, "lastError": e.last_error}
                    for e in self._entries.values()}


SUPERVISOR = Supervisor()
"""The process's supervisor (its health is served by the HTTP server)."""
