"""The ports: one small Protocol per I/O boundary the reconciler crosses.

The reconciler talks to the world only through these, as Argo Rollouts' metric providers
and Flagger's router interface do: adapters implement them (the SQLite sample log in
:mod:`controller.sources.store`, the OpenAI-compatible judge in :mod:`controller.judge`,
Prometheus in :mod:`controller.sources.prometheus`, the cluster in
:mod:`controller.actuator`: the CanaryRules in :mod:`~controller.actuator.cluster`, the
traffic router in :mod:`~controller.actuator.router`), and a second adapter (a shared
PostgreSQL log, a Gateway API router) plugs in without touching the decision path. Each
port has one to four methods; the data they exchange is defined beside them, in
:mod:`controller.models` or in :mod:`controller.engine` (what the cluster looks like).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Protocol

from controller.engine import Observed, Operation
from controller.models import CanaryRule, Feedback, PromQuery, RuleKey, Sample, Verdict
from controller.models.base import JSON
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
    "Cluster",
    "CountsProvider",
    "DirectoryUnavailable",
    "EvidenceLog",
    "FeedbackWindows",
    "JudgePort",
    "RuleDirectory",
    "SampleLog",
    "SampleSink",
    "TokenReviewer",
    "TrafficRouter",
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

    def log_id(self) -> str: ...

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


class Cluster(Protocol):
    """The CanaryRule objects: read one, write its status (guarded by the
    resourceVersion read), add or remove the controller's finalizer, report an Event.
    Errors are :class:`controller.actuator.errors.KubeError` s."""

    def get_rule(self, namespace: str, name: str) -> JSON: ...

    def write_status(self, obj: JSON, status: JSON) -> JSON: ...

    def set_finalizer(self, obj: JSON, present: bool) -> JSON | None: ...

    def emit(self, obj: JSON, type_: str, reason: str, message: str) -> None: ...


class TrafficRouter(Protocol):
    """Moves traffic between the stable version (the target) and the canary.

    ``observe`` reads what the engine needs (the target, the canary and holdback
    workloads, an autoscaler); ``apply`` carries out one of the engine's idempotent
    operations. The replica-ratio router (:mod:`controller.actuator.router`: traffic
    follows ready pods) is the one adapter today; a Gateway API or mesh router would keep
    the canary's pods at their share and set route weights in ``apply`` (and report the
    weights in effect from ``observe``), without touching the engine's phases."""

    kind: str

    def observe(self, rule: CanaryRule) -> Observed: ...

    def apply(self, rule: CanaryRule, operation: Operation) -> None: ...


class TokenReviewer(Protocol):
    """Who holds a bearer token, as the cluster's API server says (TokenReview)."""

    def review(self, token: str, audiences: Sequence[str]) -> TokenReviewResult: ...


class DirectoryUnavailable(Exception):
    """The directory cannot tell who may report for a rule yet (the API server could not be
    asked): ingestion answers 503 with Retry-After, never a guess."""


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
