"""The ingestion contract as JSON Schema (2020-12), generated from the models.

One source of truth: the pydantic models validate what arrives, and the same models are
rendered here for clients (``docs/schemas/``, written by ``scripts/generate``; a test fails
when a committed file is stale) and for the server (``GET /v1/schema`` answers
:func:`schema_bytes`).
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .ingest import ErrorAnswer, FeedbackAnswer, SamplesAnswer
from .sample import Feedback, Sample

DRAFT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_DIR = "docs/schemas"
SCHEMA_MEDIA_TYPE = "application/schema+json"

_BODY_NOTE = (
    "A request body is a JSON array of these records, or JSON Lines (one record per line)."
)


def _standalone(model: type[BaseModel], title: str, description: str) -> dict[str, Any]:
    schema = model.model_json_schema(mode="validation")
    return {"$schema": DRAFT, "title": title, **schema, "description": description}


def sample_schema() -> dict[str, Any]:
    """One sample record, as ``POST /v1/samples`` accepts it."""
    doc = (Sample.__doc__ or "").strip().split("\n\n")[0]
    return _standalone(Sample, "llm-canary sample", f"{doc} {_BODY_NOTE}")


def feedback_schema() -> dict[str, Any]:
    """One feedback record, as ``POST /v1/feedback`` accepts it."""
    doc = (Feedback.__doc__ or "").strip().split("\n\n")[0]
    return _standalone(Feedback, "llm-canary feedback", f"{doc} {_BODY_NOTE}")


def ingestion_schema() -> dict[str, Any]:
    """Every record and answer of the ingestion API in one document (``$defs``: Sample,
    Feedback, SamplesAnswer, FeedbackAnswer, ErrorAnswer, Reject, ...)."""
    _, defs = models_json_schema(
        [(Sample, "validation"), (Feedback, "validation"), (SamplesAnswer, "serialization"),
         (FeedbackAnswer, "serialization"), (ErrorAnswer, "serialization")],
        ref_template="#/$defs/{model}",
    )
    return {
        "$schema": DRAFT,
        "title": "llm-canary ingestion API",
        "description": "POST /v1/samples takes Sample records and answers SamplesAnswer; "
        "POST /v1/feedback takes Feedback records and answers FeedbackAnswer; other "
        f"refusals answer ErrorAnswer. {_BODY_NOTE}",
        "$defs": defs["$defs"],
    }


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


SCHEMA_FILES = {
    f"{SCHEMA_DIR}/sample.schema.json": lambda: render(sample_schema()),
    f"{SCHEMA_DIR}/feedback.schema.json": lambda: render(feedback_schema()),
    f"{SCHEMA_DIR}/ingestion.schema.json": lambda: render(ingestion_schema()),
}
"""Files ``scripts/generate`` writes, relative to the repository root."""


@cache
def schema_bytes() -> bytes:
    """The body of ``GET /v1/schema`` (media type :data:`SCHEMA_MEDIA_TYPE`): the whole
    ingestion contract, computed once per process."""
    return render(ingestion_schema()).encode()
