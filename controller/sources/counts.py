"""What a counts provider answers: cohort event counts, or why there are none.

Pure data shared by the Prometheus adapter (:mod:`.prometheus`) and the analysis step, so
the analysis depends on the shape of an answer, not on the client that produced it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from controller.models import Cohort


class ErrorKind(StrEnum):
    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    BAD_QUERY = "badQuery"
    SERVER = "server"
    BAD_RESPONSE = "badResponse"


class Status(StrEnum):
    OK = "ok"
    PARTIAL = "partial"
    """Some slices have data, some do not (read each slice)."""
    NO_DATA = "noData"
    ERROR = "error"


@dataclass(frozen=True)
class PromError:
    kind: ErrorKind
    message: str
    query: str | None = None

    def __str__(self) -> str:
        return f"{self.kind.value}: {self.message}"


@dataclass(frozen=True)
class Value:
    """One instant query's answer: the sum over the returned series, or ``None`` when
    Prometheus returned no series (or only NaN)."""

    value: float | None
    series: int


@dataclass(frozen=True)
class SliceCounts:
    """Counts for one cohort (and queue; ``None`` means all queues). ``None`` counts
    mean Prometheus had no data, which is not zero."""

    cohort: Cohort
    queue: str | None
    events: float | None
    total: float | None
    needs_total: bool

    @property
    def has_data(self) -> bool:
        return self.events is not None and (self.total is not None or not self.needs_total)


@dataclass(frozen=True)
class CountsResult:
    """Every slice of one PromQuery, or the error that stopped it."""

    query: str
    status: Status
    slices: tuple[SliceCounts, ...] = ()
    error: PromError | None = None
    queries: tuple[str, ...] = field(default=(), repr=False)
    """The rendered PromQL, in the order run (for evidence and debugging)."""

    def get(self, cohort: Cohort, queue: str | None = None) -> SliceCounts | None:
        for s in self.slices:
            if s.cohort == cohort and s.queue == queue:
                return s
        return None

    @property
    def missing(self) -> list[SliceCounts]:
        return [s for s in self.slices if not s.has_data]
