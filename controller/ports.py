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
from controller.models.identity import ServiceAccountRef, TokenReviewResult
from controller.models.rule import ModelPrice
from controller.sources.counts import CountsResult
from controller.sources.records import (
    AwaitingVerdict,
    ChangeBatch,
    FeedbackResult,
    InsertResult,
    QuarantineReport,
)

__all__ = [
    "AwaitingVerdict",
    "ChangeBatch",
    "CountsProvider",
    "EvidenceLog",
    "FeedbackWindows",
    "JudgePort",
    "RuleDirectory",
    "SampleLog",
    "SampleSink",
    "TokenReviewer",
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

    def quarantined(self, key: RuleKey) -> QuarantineReport: ...


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


class TokenReviewer(Protocol):
    """Who holds a bearer token, as the cluster's API server says (TokenReview)."""

    def review(self, token: str, audiences: Sequence[str]) -> TokenReviewResult: ...


class RuleDirectory(Protocol):
    """Which rules exist and who may report for each, kept by the controller's watches.

    ``reporters`` is None for a rule that does not exist; ``synced`` is False until the
    first full list of rules and Deployments (before that, every answer would be a guess).
    """

    @property
    def synced(self) -> bool: ...

    def reporters(self, key: RuleKey) -> frozenset[ServiceAccountRef] | None: ...

    def pricing(self, key: RuleKey) -> tuple[ModelPrice, ...]:
        """The rule's ``spec.pricing`` (to cost OpenTelemetry spans)."""
        ...
