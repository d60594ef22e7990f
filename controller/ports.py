"""The ports: one small Protocol per I/O boundary the reconciler crosses.

The reconciler talks to the world only through these, as Argo Rollouts' metric providers
and Flagger's router interface do: adapters implement them (the SQLite sample log in
:mod:`controller.sources.store`, the OpenAI-compatible judge in :mod:`controller.judge`,
Prometheus in :mod:`controller.sources.prometheus`, the cluster in
:mod:`controller.actuator`), and a second adapter (a shared PostgreSQL log, a traffic
router) plugs in without touching the decision path. Each port has one to three methods;
the data they exchange is defined beside them or in :mod:`controller.models`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Protocol

from controller.models import Feedback, PromQuery, RuleKey, Sample, Verdict
from controller.sources.counts import CountsResult
from controller.sources.records import AwaitingVerdict, ChangeBatch, FeedbackResult, InsertResult

__all__ = [
    "AwaitingVerdict",
    "ChangeBatch",
    "CountsProvider",
    "EvidenceLog",
    "FeedbackWindows",
    "JudgePort",
    "SampleLog",
    "SampleSink",
    "VerdictLog",
]


class SampleSink(Protocol):
    """Where ingestion writes: durable before it answers, duplicates dropped by id."""

    def insert_many(self, samples: Iterable[Sample]) -> InsertResult: ...

    def apply_feedback_many(self, feedback: Iterable[Feedback]) -> FeedbackResult: ...


class VerdictLog(Protocol):
    """What the judge step reads and writes: samples awaiting a verdict, and verdicts."""

    def head(self, key: RuleKey) -> int: ...

    def awaiting_verdict(
        self, key: RuleKey, *, upto: int, since: datetime | None = None, limit: int = ...
    ) -> list[AwaitingVerdict]: ...

    def set_verdicts(
        self, key: RuleKey, verdicts: Iterable[tuple[str, Verdict]], *,
        retry: Iterable[str] = (),
    ) -> int: ...


class EvidenceLog(Protocol):
    """What the analysis reads: the rule's change log after a cursor, up to a mark."""

    def head(self, key: RuleKey) -> int: ...

    def position_at(self, key: RuleKey, at: datetime) -> int: ...

    def changes(
        self, key: RuleKey, after: int = 0, *, upto: int | None = None, limit: int = ...
    ) -> ChangeBatch: ...


class FeedbackWindows(Protocol):
    """Resolves outputs whose feedback window closed without feedback (0 minutes)."""

    def close_feedback_windows(self, key: RuleKey, before: datetime, *, limit: int = ...
                               ) -> int: ...


class SampleLog(SampleSink, VerdictLog, EvidenceLog, FeedbackWindows, Protocol):
    """The whole sample log, as one adapter (SQLite today) implements it."""


class JudgePort(Protocol):
    """Scores samples: one verdict per sample, in order; never raises for a sample the
    endpoint could not score (that is an :class:`~controller.models.Unjudged`)."""

    def judge(self, samples: Sequence[Sample]) -> list[Verdict]: ...


class CountsProvider(Protocol):
    """Cohort event counts from a metrics backend (Prometheus today); never raises."""

    def counts(
        self, query: PromQuery, *, rule: str, namespace: str, interval: str | float,
        at: datetime | None = None,
    ) -> CountsResult: ...
