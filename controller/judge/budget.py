"""Per-rule judge budget: calls and/or estimated cost per analysis interval.

Once a budget is spent, samples not yet started stay unjudged with reason ``budget``
until the next interval. A sample reserves its expected calls before it starts, so a
budget is not spent on samples that could never finish; retries and repairs still
count against it as they happen (they are real calls).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Budget:
    """Thread-safe counter of calls and cost in the current interval window."""

    def __init__(
        self,
        max_calls: int | None = None,
        max_cost_usd: float | None = None,
        interval_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_calls = max_calls
        self.max_cost_usd = max_cost_usd
        self.interval_seconds = interval_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._window_start = clock()
        self.calls = 0
        self.cost_usd = 0.0
        self._reserved = 0

    def _roll(self) -> None:
        now = self._clock()
        if now - self._window_start >= self.interval_seconds:
            elapsed = now - self._window_start
            self._window_start += self.interval_seconds * (elapsed // self.interval_seconds)
            self.calls = 0
            self.cost_usd = 0.0

    def reserve(self, calls: int) -> Reservation:
        """Reserve ``calls`` for one sample, or raise :class:`BudgetExhausted`."""
        with self._lock:
            self._roll()
            if self.max_calls is not None and self.calls + self._reserved + calls > self.max_calls:
                raise BudgetExhausted(
                    f"call budget of {self.max_calls} per {self.interval_seconds:g}s is spent"
                )
            if self.max_cost_usd is not None and self.cost_usd >= self.max_cost_usd:
                raise BudgetExhausted(
                    f"cost budget of ${self.max_cost_usd:g} per {self.interval_seconds:g}s is spent"
                )
            self._reserved += calls
        return Reservation(self, calls)

    def _record(self, cost_usd: float, from_reservation: bool) -> None:
        with self._lock:
            self._roll()
            if from_reservation:
                self._reserved = max(0, self._reserved - 1)
            self.calls += 1
            self.cost_usd += cost_usd

    def _release(self, calls: int) -> None:
        with self._lock:
            self._reserved = max(0, self._reserved - calls)


class BudgetExhausted(Exception):
    """The interval's budget is spent; the message says which one."""


class Reservation:
    """One sample's claim on the budget; each call made converts one reserved call."""

    def __init__(self, budget: Budget, calls: int) -> None:
        self._budget = budget
        self._left = calls

    def record_call(self, cost_usd: float) -> None:
        self._budget._record(cost_usd, from_reservation=self._left > 0)
        self._left = max(0, self._left - 1)

    def close(self) -> None:
        """Give back what the sample did not use."""
        if self._left:
            self._budget._release(self._left)
            self._left = 0
