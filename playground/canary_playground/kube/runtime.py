"""The controller runtime: one worker thread running keyed handlers, event-driven.

Keys are tuples whose first element names the handler (``("deployment", ns, name)``).
A key waiting in the queue is not queued twice (the earlier due time wins), so a burst of
changes to one object costs one sync. Among keys that are due, handlers registered with a
lower priority run first: the kubelet and the ReplicaSet controller act on a change before
the deployment controller looks again, as their fast reactions do in a cluster (so a
rolling update never has more than ``replicas + maxSurge`` live pods). Handlers run one
at a time, never under the store lock; an exception is logged and the key retried after a
short back-off. Nothing ticks: the thread sleeps until the next due key or a new one, and
stops within a second of :meth:`WorkQueue.stop`. A key processed too often in one second
is slowed down, so a controller that keeps rewriting an object cannot spin a core.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable

from .errors import ApiError

log = logging.getLogger("kube-emulator")
Key = tuple[Hashable, ...]
MAX_RUNS_PER_SECOND = 40


class Retry(Exception):
    """Raised by a handler to run its key again after ``delay`` seconds."""

    def __init__(self, delay: float = 0.05) -> None:
        super().__init__(delay)
        self.delay = delay


class WorkQueue:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: dict[Key, float] = {}
        self._heap: list[tuple[float, int, Key]] = []  # timers, by due time
        self._ready: list[tuple[int, int, Key]] = []  # due keys, by priority
        self._ready_keys: set[Key] = set()
        self._priority: dict[Hashable, int] = {}
        self._seq = itertools.count()
        self._handlers: dict[Hashable, Callable[[Key], None]] = {}
        self._runs: dict[Key, deque[float]] = {}
        self._stop = False
        self._busy = False
        self._thread = threading.Thread(target=self._run, name="kube-controllers", daemon=True)

    def register(self, kind: str, handler: Callable[[Key], None], priority: int = 5) -> None:
        self._handlers[kind] = handler
        self._priority[kind] = priority

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(5)

    def add(self, key: Key, delay: float = 0.0) -> None:
        due = time.monotonic() + max(0.0, delay)
        with self._cond:
            if key in self._ready_keys or (key in self._due and self._due[key] <= due):
                return
            self._due[key] = due
            heapq.heappush(self._heap, (due, next(self._seq), key))
            self._cond.notify()

    def clear(self) -> None:
        with self._cond:
            self._due.clear()
            self._heap.clear()
            self._ready.clear()
            self._ready_keys.clear()

    def idle(self) -> bool:
        """No key due now and no handler running (pending timers may remain)."""
        with self._cond:
            now = time.monotonic()
            return not self._busy and not self._ready and \
                all(d > now for d in self._due.values())

    def _next(self) -> Key | None:
        with self._cond:
            while not self._stop:
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    due, seq, key = heapq.heappop(self._heap)
                    if self._due.get(key) != due:
                        continue  # superseded by an earlier due time
                    del self._due[key]
                    self._ready_keys.add(key)
                    heapq.heappush(self._ready, (self._priority.get(key[0], 5), seq, key))
                if self._ready:
                    _, _, key = heapq.heappop(self._ready)
                    self._ready_keys.discard(key)
                    self._busy = True
                    return key
                while self._heap and self._due.get(self._heap[0][2]) != self._heap[0][0]:
                    heapq.heappop(self._heap)
                wait = self._heap[0][0] - now if self._heap else 1.0
                self._cond.wait(min(max(wait, 0.001), 1.0))
            return None

    def _throttled(self, key: Key) -> bool:
        runs = self._runs.setdefault(key, deque(maxlen=MAX_RUNS_PER_SECOND))
        now = time.monotonic()
        if len(runs) == runs.maxlen and now - runs[0] < 1.0:
            return True
        runs.append(now)
        if len(self._runs) > 10_000:
            self._runs.clear()
        return False

    def _run(self) -> None:
        while (key := self._next()) is not None:
            try:
                if self._throttled(key):
                    self.add(key, 0.2)
                    continue
                self._handlers[key[0]](key)
            except Retry as again:
                self.add(key, again.delay)
            except ApiError as exc:
                if exc.code != 404:
                    log.debug("controller %s: %s; retrying", key, exc.message)
                    self.add(key, 0.05 if exc.code == 409 else 0.5)
            except Exception:  # a controller bug must not stop the others
                log.exception("controller %s failed; retrying", key)
                self.add(key, 1.0)
            finally:
                with self._cond:
                    self._busy = False
