"""Honest tick accounting: every scheduled analysis tick either runs or is counted skipped,
and lateness is measured from the schedule to the moment the analysis actually starts.

Why not the scheduler's submission event: with ``max_instances=1`` and ``coalesce=True``
the scheduler silently drops a tick whose predecessor is still running (overrun), folds
missed run times into one, and a submission waits in the executor's queue when every
worker is busy; lateness observed at submission then says "on time" for ticks that never
ran or ran seconds later. An interval job's schedule is a fixed grid (``origin + k *
interval``), so the tick itself settles the account when it starts: every grid time since
the last tick that ran is due, the latest is the one running, the others were skipped,
and each is observed in the lateness histogram (a skipped tick is as late as the tick that
finally covered it).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from controller.observability import TICK_LATENESS, TICKS_SKIPPED

MAX_OBSERVED = 1000
"""Skipped ticks observed one by one per start at most (a process paused for hours stays
cheap); the rest are still counted."""


@dataclass
class _Grid:
    origin: datetime
    interval: float
    served: int = -1
    """Index of the latest grid time a tick has covered."""


class TickLedger:
    """The schedule grid of each analysis job and how far ticks have covered it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._grids: dict[str, _Grid] = {}

    def schedule(self, job_id: str, first_run: datetime, interval: float) -> None:
        """The job now fires at ``first_run + k * interval`` (a new or changed interval)."""
        with self._lock:
            self._grids[job_id] = _Grid(first_run, interval)

    def started(self, job_id: str, now: datetime) -> int:
        """A tick of ``job_id`` starts now. Returns how many grid times since the last tick
        were skipped (counted in ``llmcanary_ticks_skipped_total``)."""
        with self._lock:
            grid = self._grids.get(job_id)
            if grid is None:
                return 0
            latest = math.floor((now - grid.origin).total_seconds() / grid.interval + 1e-9)
            first = grid.served + 1
            grid.served = max(grid.served, latest)
            origin, interval = grid.origin, grid.interval
        if latest < first:
            TICK_LATENESS.observe(0.0)  # a tick run ahead of its grid (e.g. clock step)
            return 0
        due = latest - first + 1
        for k in range(max(first, latest - MAX_OBSERVED + 1), latest + 1):
            at = origin + timedelta(seconds=k * interval)
            TICK_LATENESS.observe(max(0.0, (now - at).total_seconds()))
        if due > 1:
            TICKS_SKIPPED.inc(due - 1)
        return due - 1

    def forget(self, job_id: str) -> None:
        with self._lock:
            self._grids.pop(job_id, None)
