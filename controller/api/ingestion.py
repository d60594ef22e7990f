"""What the ingestion endpoints do with a body once the caller is known: parse every
record on its own, authorize it for its rule, store what is allowed, answer per record.

Authorization is per record, by rule (who may report: see
:mod:`controller.reconciler.directory`): a record's ``namespace`` defaults to the caller's
own (a ServiceAccount reports for its namespace unless it says otherwise). A record for a
rule the caller may not report for is refused (kind ``forbidden``, field ``rule``) and
nothing of it is stored; the others in the batch are unaffected. In the caller's own
namespace an unknown rule is named as such (``unknown_rule``, 404 when it is the only
problem) so a typo is found at once; in another namespace an unknown rule and a
forbidden one get the same answer, so a caller cannot probe which rules exist where it
has no business.

Fields only the server sets (:data:`SERVER_OWNED_FIELDS`) are refused from clients.

Status codes (samples and feedback): 200 every record stored (or already stored); 207
some refused, each as a structured reject; 400 nothing usable; 403 / 404 when every record
was refused for that one reason; 507 with ``Retry-After`` when the store is full.
OpenTelemetry traces answer in OTLP's own format (:func:`controller.sources.otlp.otlp_answer`).

Runs on a worker thread (it parses and writes SQLite); the HTTP layer in :mod:`.app`
authenticates, bounds and times the request before it gets here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, TypeVar

from controller.models import DEFAULT_NAMESPACE, Feedback, RuleKey, Sample
from controller.models.identity import Caller
from controller.models.ingest import FeedbackAnswer, RejectKind, SamplesAnswer
from controller.models.rule import ModelPrice
from controller.observability import SAMPLES_INGESTED
from controller.ports import RuleDirectory, SampleSink
from controller.sources.otlp import OtlpError, otlp_answer, parse_otlp_traces
from controller.sources.samples_io import LoadReport, Problem, parse_feedback, parse_samples
from controller.sources.store import StoreFull

log = logging.getLogger(__name__)

SERVER_OWNED_FIELDS = ("feedback_closed",)
"""Sample fields the controller sets itself; a client sending one is refused."""
STORE_FULL_RETRY_SECONDS = 30

R = TypeVar("R", Sample, Feedback)


@dataclass
class Answer:
    status: int
    payload: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    """A body in another format than JSON (OTLP protobuf), with ``content_type``."""
    content_type: str = "application/json"


class Authorizer:
    """The per-record check for one caller (a ``check`` for the parsers)."""

    def __init__(self, directory: RuleDirectory, caller: Caller) -> None:
        self.directory = directory
        self.caller = caller

    def namespace_of(self, record: Sample | Feedback) -> str:
        return record.namespace or self.caller.namespace or DEFAULT_NAMESPACE

    def check(self, record: Sample | Feedback) -> Problem | None:
        owned = _server_owned(record)
        if owned is not None:
            return Problem(RejectKind.INVALID_RECORD, owned,
                           "set by the controller, never by clients")
        key = RuleKey(self.namespace_of(record), record.rule)
        reporters = self.directory.reporters(key)
        caller = self.caller
        if caller.insecure:
            return None if reporters is not None else _unknown(key)
        if reporters is None:
            return _unknown(key) if key.namespace == caller.namespace else _forbidden(key,
                                                                                      caller)
        if caller.service_account not in reporters:
            return _forbidden(key, caller)
        return None

    def placed(self, records: list[R]) -> list[R]:
        """The records with their namespace made explicit (the caller's by default)."""
        out: list[R] = []
        for r in records:
            namespace = self.namespace_of(r)
            out.append(r if r.namespace == namespace
                       else r.model_copy(update={"namespace": namespace}))
        return out


class Ingestion:
    """Parse, authorize, store; one instance per process, safe across worker threads."""

    def __init__(self, sink: SampleSink, directory: RuleDirectory) -> None:
        self.sink = sink
        self.directory = directory

    def samples(self, body: bytes, caller: Caller, content_type: str = "") -> Answer:
        authz = Authorizer(self.directory, caller)
        samples, report = parse_samples(body, "request", check=authz.check)
        try:
            stored = self._store(authz.placed(samples), report)
        except StoreFull as exc:
            return _store_full(exc, HTTPStatus.INSUFFICIENT_STORAGE)
        accepted, duplicates = stored
        answer = SamplesAnswer(
            accepted=accepted, duplicates=duplicates, rejected=report.total_rejected,
            errors=report.rejects, errors_dropped=report.rejects_dropped,
            message=_summary(report, stored=accepted, duplicates=duplicates),
        )
        return Answer(_status(accepted + duplicates, report), answer.model_dump(mode="json"))

    def feedback(self, body: bytes, caller: Caller, content_type: str = "") -> Answer:
        authz = Authorizer(self.directory, caller)
        records, report = parse_feedback(body, "request", check=authz.check)
        result = self.sink.apply_feedback_many(authz.placed(records)) if records else None
        applied, pending = (result.applied, result.pending) if result else (0, 0)
        answer = FeedbackAnswer(
            applied=applied, pending=pending, rejected=report.total_rejected,
            errors=report.rejects, errors_dropped=report.rejects_dropped,
            message=_summary(report, applied=applied, pending=pending),
        )
        return Answer(_status(len(records), report), answer.model_dump(mode="json"))

    def traces(self, body: bytes, caller: Caller, content_type: str = "") -> Answer:
        """OTLP/HTTP traces (protobuf or JSON; aiohttp has already undone any gzip): GenAI
        spans become samples, authorized and stored like posted ones."""
        authz = Authorizer(self.directory, caller)
        try:
            result = parse_otlp_traces(body, content_type, None, pricing=self.pricing,
                                       check=authz.check)
        except OtlpError as exc:
            status, raw, ctype = otlp_answer(None, content_type, exc)
            return Answer(status, body=raw, content_type=ctype)
        try:
            self._store(authz.placed(result.samples), result.report)
        except StoreFull as exc:  # OTLP exporters retry 503 with Retry-After, not 507
            return _store_full(exc, HTTPStatus.SERVICE_UNAVAILABLE)
        status, raw, ctype = otlp_answer(result, content_type)
        return Answer(status, body=raw, content_type=ctype)

    def pricing(self, rule: str, namespace: str | None) -> tuple[ModelPrice, ...]:
        return self.directory.pricing(RuleKey(namespace or DEFAULT_NAMESPACE, rule))

    def _store(self, samples: list[Sample], report: LoadReport) -> tuple[int, int]:
        stored = self.sink.insert_many(samples) if samples else None
        accepted = stored.accepted if stored else 0
        duplicates = (stored.duplicates if stored else 0) + report.skipped.get("duplicate", 0)
        SAMPLES_INGESTED.labels("accepted").inc(accepted)
        SAMPLES_INGESTED.labels("duplicate").inc(duplicates)
        SAMPLES_INGESTED.labels("rejected").inc(report.total_rejected)
        return accepted, duplicates


def _unknown(key: RuleKey) -> Problem:
    return Problem(RejectKind.UNKNOWN_RULE, "rule",
                   f"no CanaryRule {key.name!r} in namespace {key.namespace!r}")


def _forbidden(key: RuleKey, caller: Caller) -> Problem:
    return Problem(RejectKind.FORBIDDEN, "rule",
                   f"ServiceAccount {caller} may not report for CanaryRule {key} (allowed: "
                   "the ServiceAccount of the rule's target pods and "
                   "spec.ingest.serviceAccounts)")


def _server_owned(record: Sample | Feedback) -> str | None:
    extra = record.model_extra or {}
    for name in SERVER_OWNED_FIELDS:
        if name in extra or name in record.model_fields_set:
            return name
    return None


def _summary(report: LoadReport, **counts: int) -> str:
    """One line: the counts, then the first refused record's message."""
    parts = [f"{n} {what}" for what, n in counts.items()]
    parts.append(f"{report.total_rejected} rejected")
    text = ", ".join(parts)
    if report.rejects:
        text += f"; first: {report.rejects[0].message}"
    elif report.empty:
        text += "; the body holds no records"
    return text


def _status(good: int, report: LoadReport) -> int:
    rejected = report.total_rejected
    if good == 0 and rejected:
        for kind, status in ((RejectKind.FORBIDDEN, HTTPStatus.FORBIDDEN),
                             (RejectKind.UNKNOWN_RULE, HTTPStatus.NOT_FOUND)):
            if report.skipped.get(kind.value, 0) == rejected:
                return status
    if good == 0 and (rejected or report.empty):
        return HTTPStatus.BAD_REQUEST
    return HTTPStatus.MULTI_STATUS if rejected else HTTPStatus.OK


def _store_full(exc: StoreFull, status: int) -> Answer:
    log.error("ingestion refused: %s", exc)
    SAMPLES_INGESTED.labels("store_full").inc()
    return Answer(status, {"error": "the sample store is full; retry later (operators: raise "
                                    "--max-store-bytes with the volume, or shorten "
                                    "--retention)"},
                  {"Retry-After": str(STORE_FULL_RETRY_SECONDS)})
