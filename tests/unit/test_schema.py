"""The published ingestion schema is generated from the models and agrees with them."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from controller.models import Feedback, Sample
from controller.models.sample import FEEDBACK_EXAMPLE, SAMPLE_EXAMPLE
from controller.models.schema import SCHEMA_FILES, ingestion_schema, sample_schema, schema_bytes
from tests.support import ROOT


@pytest.mark.parametrize("relative", sorted(SCHEMA_FILES))
def test_committed_schemas_match_the_models(relative: str) -> None:
    assert (ROOT / relative).read_text() == SCHEMA_FILES[relative](), (
        f"{relative} is stale: run `scripts/generate` and commit the result"
    )


def test_schema_documents_are_valid_json_schema() -> None:
    for render in SCHEMA_FILES.values():
        jsonschema.Draft202012Validator.check_schema(json.loads(render()))
    assert json.loads(schema_bytes()) == ingestion_schema()


def test_every_sample_field_is_described_with_its_unit() -> None:
    props = sample_schema()["properties"]
    assert all(p.get("description") for p in props.values()), [
        k for k, p in props.items() if not p.get("description")]
    assert "milliseconds" in props["latency_ms"]["description"]
    assert "US dollars" in props["cost_usd"]["description"]
    assert set(sample_schema()["required"]) == {
        "id", "rule", "cohort", "ts", "input", "output", "latency_ms", "cost_usd", "fallback"}
    judge = ingestion_schema()["$defs"]["RecordedVerdict"]
    assert judge["required"] == ["score"] and judge["properties"]["score"]["maximum"] == 1


def _validator(name: str) -> jsonschema.Draft202012Validator:
    schema = ingestion_schema()
    return jsonschema.Draft202012Validator({"$ref": f"#/$defs/{name}", "$defs": schema["$defs"]})


def test_the_examples_validate() -> None:
    _validator("Sample").validate(SAMPLE_EXAMPLE)
    _validator("Feedback").validate(FEEDBACK_EXAMPLE)
    Sample.model_validate(SAMPLE_EXAMPLE)
    Feedback.model_validate(FEEDBACK_EXAMPLE)


_MUTATIONS: list[tuple[str, Any]] = [
    ("cohort", "purple"), ("cohort", None), ("rule", "Support_Assistant"), ("rule", ""),
    ("latency_ms", -1), ("latency_ms", "fast"), ("latency_ms", 1e12), ("cost_usd", None),
    ("cost_usd", -0.5), ("fallback", "no"), ("risk", "extreme"), ("queue", ""),
    ("namespace", "Bad NS"), ("id", ""), ("id", 7), ("input", 3), ("output", [{"role": "x"}]),
    ("judge", {"score": 2}), ("judge", {"score": 0.5, "verdicts": [{"criterion": "c",
                                                                    "verdict": "maybe"}]}),
    ("correction_minutes", -3), ("task", None), ("custom_signal", {"any": "thing"}),
]


@settings(max_examples=60, derandomize=True, deadline=None)
@given(
    st.lists(st.sampled_from(_MUTATIONS), max_size=3),
    st.lists(st.sampled_from(sorted(SAMPLE_EXAMPLE)), max_size=2),
)
def test_schema_and_model_agree_on_mutated_records(
    changes: list[tuple[str, Any]], removed: list[str]
) -> None:
    """Whatever the schema refuses, the server refuses, and the other way round (the
    timestamp's format is the one check JSON Schema leaves to the server)."""
    record = copy.deepcopy(SAMPLE_EXAMPLE)
    for key, value in changes:
        record[key] = value
    for key in removed:
        record.pop(key, None)
    schema_ok = _validator("Sample").is_valid(record)
    try:
        Sample.model_validate(record)
        model_ok = True
    except ValidationError:
        model_ok = False
    assert schema_ok == model_ok, (record, schema_ok, model_ok)
