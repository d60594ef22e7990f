"""Where a sample belongs in time: its step (the stratum) and its analysis interval.

The statistics are told the rollout's step at every analysis
(:meth:`.accumulator.RuleStatistics.enter_step`, with the step's start time and the
rollout's). This module keeps that history and answers, for a sample's timestamp:

- its **stratum**: the step whose time span holds it (the last step started at or before
  it). Within a step the canary's share is constant, which is what makes the
  per-step comparison unbiased under drift (:mod:`.strata`). A sample stamped before
  every step the statistics know goes to :data:`PRE` (statistics rebuilt in the middle
  of a rollout know only the current step: earlier samples share one stratum); without
  any step (a replay of a log) every sample is in :data:`NO_STEP`; a sample without a
  timestamp counts as current.
- its **bucket**: the analysis interval of the current step it falls in
  (``floor((ts − step start)/interval)``), the unit of the change detector's start
  times (:mod:`.changes`), and each bucket's **slot**, the number of whole intervals
  between the rollout's start and the bucket's start (the detector's weights depend
  on it; without times a bucket's slot is its index within the step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

PRE = "pre"
NO_STEP = "-"


@dataclass
class StepClock:
    """The steps entered so far (index, start), the rollout's start and the interval."""

    interval_s: float
    history: list[tuple[int, datetime | None]] = field(default_factory=list)
    origin: datetime | None = None

    @property
    def step(self) -> int | None:
        return self.history[-1][0] if self.history else None

    @property
    def started(self) -> datetime | None:
        return self.history[-1][1] if self.history else None

    def enter(self, index: int, started_at: datetime | None,
              rollout_started_at: datetime | None) -> bool:
        """Record step ``index``; True when it differs from the current one."""
        if rollout_started_at is not None:
            self.origin = rollout_started_at
        elif self.origin is None and not self.history:
            self.origin = started_at
        if self.history and self.history[-1][0] == index:
            return False
        self.history.append((index, started_at))
        return True

    def stratum(self, ts: datetime | None) -> str:
        """The step key of a sample stamped ``ts`` (see the module docstring)."""
        if not self.history:
            return NO_STEP
        for index, start in reversed(self.history):
            if ts is None or start is None or ts >= start:
                return str(index)
        return PRE

    def in_current(self, ts: datetime | None) -> bool:
        return bool(self.history) and self.stratum(ts) == str(self.history[-1][0])

    def bucket(self, ts: datetime | None) -> int | None:
        """The current step's interval holding ``ts``; None when unknown (no time)."""
        start = self.started
        if start is None or ts is None:
            return None
        return max(0, math.floor((ts - start).total_seconds() / self.interval_s))

    def slot(self, bucket: int) -> int:
        """Whole intervals from the rollout's start to the start of a bucket."""
        start, origin = self.started, self.origin
        if start is None or origin is None:
            return bucket
        offset = (start - origin).total_seconds() + bucket * self.interval_s
        return max(0, math.floor(offset / self.interval_s + 1e-9))

    def to_dict(self) -> dict[str, Any]:
        return {"history": [[i, None if s is None else s.isoformat()] for i, s in self.history],
                "origin": None if self.origin is None else self.origin.isoformat(),
                "intervalS": self.interval_s}

    @classmethod
    def from_dict(cls, interval_s: float, data: dict[str, Any]) -> StepClock:
        def when(x: Any) -> datetime | None:
            return None if x is None else datetime.fromisoformat(str(x))

        return cls(interval_s, [(int(i), when(s)) for i, s in data.get("history", [])],
                   when(data.get("origin")))
