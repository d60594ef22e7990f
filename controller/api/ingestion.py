"""What ``POST /v1/samples`` and ``POST /v1/feedback`` do with a body once the caller is
known: parse every record on its own, authorize it for its rule, store what is allowed.

Authorization is per record, by rule (see :mod:`controller.reconciler.directory` for who
may report): a record's ``namespace`` defaults to the caller's own (a ServiceAccount
reports for its namespace unless it says otherwise). A record for a rule the caller may
not report for is refused with the rule named, and nothing of it is stored; the others in
the batch are unaffected. In the caller's own namespace an unknown rule is named as such
(404 when it is the only problem), so a typo is found at once; in another namespace an
unknown rule and a forbidden one get the same answer, so a caller cannot probe which
rules exist where it has no business.

Fields only the server sets (:data:`SERVER_OWNED_FIELDS`) are refused from clients.

Status codes: 200 every record stored (or already stored); 207 some refused (each listed
with its line and reason); 400 nothing usable; 403 / 404 when every record was refused
for that one reason; 507 with ``Retry-After`` when the store is full.

Runs on a worker thread (it parses and writes SQLite); the HTTP layer in :mod:`.app`
authenticates, bounds and times the request before it gets here.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, TypeVar

from controller.models import DEFAULT_NAMESPACE, Feedback, RuleKey, Sample
from controller.models.identity import Caller
from controller.observability import SAMPLES_INGESTED
from controller.ports import RuleDirectory, SampleSink
from controller.sources.samples_io import LoadReport, parse_feedback, parse_samples
from controller.sources.store import StoreFull

log = logging.getLogger(__name__)

SERVER_OWNED_FIELDS = ("feedback_closed",)
"""Sample fields the controller sets itself; a client sending one is refused."""
FORBIDDEN = "forbidden"
UNKNOWN_RULE = "unknown_rule"
SERVER_OWNED = "server_owned_field"
STORE_FULL_RETRY_SECONDS = 30

R = TypeVar("R", Sample, Feedback)


@dataclass
class Answer:
    status: int
    payload: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Refusals:
    """Records refused after parsing, by reason."""

    kinds: Counter[str] = field(default_factory=Counter)

    def add(self, report: LoadReport, kind: str, message: str) -> None:
        self.kinds[kind] += 1
        report.skip(kind, message)


class Ingestion:
    """Parse, authorize, store; one instance per process, safe across worker threads."""

    def __init__(self, sink: SampleSink, directory: RuleDirectory) -> None:
        self.sink = sink
        self.directory = directory

    # -- samples --------------------------------------------------------------------------

    def samples(self, body: bytes, caller: Caller) -> Answer:
        samples, report = parse_samples(body, "request")
        return self.store_samples(samples, report, caller)

    def store_samples(self, samples: list[Sample], report: LoadReport, caller: Caller
                      ) -> Answer:
        """Authorize and store already parsed samples (also the entry point for other
        formats, e.g. OpenTelemetry traces turned into samples)."""
        refusals = _Refusals()
        allowed = self._authorize(samples, report, caller, refusals)
        try:
            stored = self.sink.insert_many(allowed) if allowed else None
        except StoreFull as exc:
            return _store_full(exc)
        accepted = stored.accepted if stored else 0
        duplicates = (stored.duplicates if stored else 0) + report.skipped.get("duplicate", 0)
        rejected = report.total_skipped - report.skipped.get("duplicate", 0)
        SAMPLES_INGESTED.labels("accepted").inc(accepted)
        SAMPLES_INGESTED.labels("duplicate").inc(duplicates)
        SAMPLES_INGESTED.labels("rejected").inc(rejected)
        payload = {"accepted": accepted, "duplicates": duplicates, "rejected": rejected,
                   "errors": _errors(report)}
        return Answer(_status(accepted + duplicates, rejected, report, refusals), payload)

    # -- feedback -------------------------------------------------------------------------

    def feedback(self, body: bytes, caller: Caller) -> Answer:
        records, report = parse_feedback(body, "request")
        refusals = _Refusals()
        allowed = self._authorize(records, report, caller, refusals)
        result = self.sink.apply_feedback_many(allowed) if allowed else None
        rejected = report.total_skipped
        payload = {"applied": result.applied if result else 0,
                   "pending": result.pending if result else 0,
                   "rejected": rejected, "errors": _errors(report)}
        return Answer(_status(len(allowed), rejected, report, refusals), payload)

    # -- authorization --------------------------------------------------------------------

    def _authorize(self, records: list[R], report: LoadReport, caller: Caller,
                   refusals: _Refusals) -> list[R]:
        """The records the caller may report, each with its namespace made explicit."""
        allowed: list[R] = []
        lines = report.record_lines or [0] * len(records)
        for record, line in zip(records, lines, strict=True):
            where = f"{report.source}:{line}"
            owned = _server_owned(record)
            if owned is not None:
                refusals.add(report, SERVER_OWNED, f"{where}: field {owned!r}: set by the "
                                                   "controller, never by clients")
                continue
            namespace = record.namespace or caller.namespace or DEFAULT_NAMESPACE
            key = RuleKey(namespace, record.rule)
            problem = self._problem(key, caller)
            if problem is not None:
                kind, why = problem
                refusals.add(report, kind, f"{where}: field 'rule': {why}")
                continue
            allowed.append(record if record.namespace == namespace
                           else record.model_copy(update={"namespace": namespace}))
        report.accepted = len(allowed)
        return allowed

    def _problem(self, key: RuleKey, caller: Caller) -> tuple[str, str] | None:
        reporters = self.directory.reporters(key)
        if caller.insecure:
            return None if reporters is not None else (UNKNOWN_RULE, _unknown(key))
        own_namespace = key.namespace == caller.namespace
        if reporters is None:
            return (UNKNOWN_RULE, _unknown(key)) if own_namespace else \
                (FORBIDDEN, _forbidden(key, caller))
        if caller.service_account not in reporters:
            return FORBIDDEN, _forbidden(key, caller)
        return None


def _unknown(key: RuleKey) -> str:
    return f"no CanaryRule {key.name!r} in namespace {key.namespace!r}"


def _forbidden(key: RuleKey, caller: Caller) -> str:
    return (f"ServiceAccount {caller} may not report for CanaryRule {key} (allowed: the "
            "ServiceAccount of the rule's target pods and spec.ingest.serviceAccounts)")


def _server_owned(record: Sample | Feedback) -> str | None:
    extra = record.model_extra or {}
    for name in SERVER_OWNED_FIELDS:
        if name in extra or name in record.model_fields_set:
            return name
    return None


def _errors(report: LoadReport) -> list[str]:
    return [m for m in report.messages if "duplicate id" not in m]


def _status(good: int, rejected: int, report: LoadReport, refusals: _Refusals) -> int:
    if good == 0 and rejected and sum(refusals.kinds.values()) == rejected \
            and len(refusals.kinds) == 1:
        kind = next(iter(refusals.kinds))
        if kind == FORBIDDEN:
            return HTTPStatus.FORBIDDEN
        if kind == UNKNOWN_RULE:
            return HTTPStatus.NOT_FOUND
    if good == 0 and (rejected or report.empty):
        return HTTPStatus.BAD_REQUEST
    return HTTPStatus.MULTI_STATUS if rejected else HTTPStatus.OK


def _store_full(exc: StoreFull) -> Answer:
    log.error("ingestion refused: %s", exc)
    SAMPLES_INGESTED.labels("store_full").inc()
    return Answer(HTTPStatus.INSUFFICIENT_STORAGE,
                  {"error": "the sample store is full; retry later (operators: raise "
                            "--max-store-bytes with the volume, or shorten --retention)"},
                  {"Retry-After": str(STORE_FULL_RETRY_SECONDS)})
