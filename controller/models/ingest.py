"""What the ingestion endpoints answer: counts and one structured reject per refused record.

A client must be able to act on a reject without parsing prose: ``line`` says which record
(1-based line of the body; for a JSON array, the line where the element starts), ``field``
which field (``null`` when the record as a whole is unusable, e.g. invalid JSON), ``kind``
the machine-readable class, ``reason`` the field's problem and ``message`` one line for
people and logs.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class RejectKind(StrEnum):
    """Why a record was refused."""

    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    INVALID_RECORD = "invalid_record"
    ENCODING = "encoding"
    UNKNOWN_RULE = "unknown_rule"
    """The record names a CanaryRule that does not exist (a typo in ``rule``)."""
    FORBIDDEN = "forbidden"
    """The caller may not report for that rule."""
    INVALID_SPAN = "invalid_span"
    """An OpenTelemetry span that names a rule but cannot become a sample."""


class Reject(BaseModel):
    """One refused record."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{
            "line": 3, "field": "cohort", "reason": "Input should be 'baseline' or 'canary'",
            "id": "req-7f3c2a", "kind": "invalid_record",
            "message": "request:3: field 'cohort': Input should be 'baseline' or 'canary'",
        }]}
    )

    line: int = Field(ge=0, description="1-based line of the record in the body (0: the body).")
    field: str | None = Field(
        description="The first failing field (dotted path, e.g. judge.score); null when the "
        "record as a whole is unusable."
    )
    reason: str = Field(description="What is wrong with that field.")
    id: str | None = Field(description="The record's id when it could be read.")
    kind: RejectKind
    message: str = Field(description="One line for people and logs, naming line and fields.")


class SamplesAnswer(BaseModel):
    """The answer to ``POST /v1/samples``: 200 every record stored or already stored,
    207 some refused (listed in ``errors``), 400 none usable."""

    accepted: int = Field(ge=0, description="Records stored now.")
    duplicates: int = Field(ge=0, description="Records dropped: their id was already stored.")
    rejected: int = Field(ge=0, description="Records refused (each in errors, up to 50).")
    errors: list[Reject] = Field(description="The refused records, in body order.")
    errors_dropped: int = Field(
        default=0, ge=0, description="Refused records beyond the first 50, counted only."
    )
    message: str = Field(description="One-line summary.")


class FeedbackAnswer(BaseModel):
    """The answer to ``POST /v1/feedback`` (same status codes as samples)."""

    applied: int = Field(ge=0, description="Records joined to a stored sample.")
    pending: int = Field(
        ge=0, description="Records kept until their sample arrives (applied then)."
    )
    rejected: int = Field(ge=0, description="Records refused (each in errors, up to 50).")
    errors: list[Reject]
    errors_dropped: int = Field(default=0, ge=0)
    message: str = Field(description="One-line summary.")


class ErrorAnswer(BaseModel):
    """Any other refusal (401, 403, 404, 411, 413, 503): one sentence."""

    error: str
