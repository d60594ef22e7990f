"""Every number a client or a rule author writes is finite and plausible, and the parsers
never raise: property-based tests over the sample, feedback and rule parsers with
non-finite, huge, negative, deeply nested and non-UTF-8 inputs."""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from controller.models import Sample, json_values
from controller.models.manifest import parse_rule
from controller.models.sample import MAX_CORRECTION_MINUTES, MAX_COST_USD, MAX_LATENCY_MS
from controller.sources.samples_io import parse_feedback, parse_samples
from tests.unit.test_models import _errors, _support

FAST = settings(max_examples=120, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])

GOOD: dict[str, Any] = {"id": "s-1", "rule": "bot", "cohort": "canary",
                        "ts": "2026-11-22T12:00:00Z", "input": "q", "output": "a",
                        "latency_ms": 120, "cost_usd": 0.001, "fallback": False}

NON_FINITE_LITERALS = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1E400",
                       "123456789" * 5]
NUMERIC_FIELDS = {"latency_ms": MAX_LATENCY_MS, "cost_usd": MAX_COST_USD,
                  "correction_minutes": MAX_CORRECTION_MINUTES}


def with_literal(field: str, literal: str) -> str:
    """GOOD with ``field`` set to a raw JSON literal (which json.dumps cannot write)."""
    return json.dumps({**GOOD, field: "__X__"}).replace('"__X__"', literal)


# --------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("literal", NON_FINITE_LITERALS)
@pytest.mark.parametrize("field", [*NUMERIC_FIELDS, "custom_signal"])
def test_non_finite_literals_are_refused_naming_the_field(field: str, literal: str) -> None:
    for body in (with_literal(field, literal), f"[{with_literal(field, literal)}]"):
        samples, report = parse_samples(body, "request")
        assert samples == []
        assert report.skipped["invalid_record"] == 1
        assert f"field {field!r}" in report.messages[0], report.messages


def test_a_refused_record_in_an_array_does_not_cost_the_rest() -> None:
    body = "[" + ",\n".join([json.dumps(GOOD), with_literal("latency_ms", "NaN"),
                             json.dumps({**GOOD, "id": "s-3"})]) + "]"
    samples, report = parse_samples(body, "request")
    assert [s.id for s in samples] == ["s-1", "s-3"]
    assert report.messages == ["request:2: field 'latency_ms': NaN is not a finite number "
                               "(NaN, Infinity and numbers that overflow a double are refused)"]


def test_nested_values_are_named_by_their_path() -> None:
    body = json.dumps({**GOOD, "input": [{"role": "user", "content": "x", "meta": {"w": 0}}]})
    body = body.replace('"w": 0', '"w": -Infinity')
    _, report = parse_samples(body, "request")
    assert "field 'input[0].meta.w'" in report.messages[0]


@pytest.mark.parametrize("depth", [33, 200, 900, 5000, 100_000])
def test_deep_nesting_is_refused_not_a_crash(depth: int) -> None:
    nested = "[" * depth + "]" * depth
    for body in (json.dumps({**GOOD, "x": 0}).replace("0}", nested + "}"),
                 "[" + json.dumps({**GOOD, "x": 0}).replace("0}", nested + "}") + "]"):
        samples, report = parse_samples(body, "request")
        assert samples == []
        assert "nested deeper than 32 levels" in report.messages[0]


def test_nesting_at_the_limit_is_accepted() -> None:
    nested = "[" * 30 + "]" * 30  # the record is level 1, its field level 2
    samples, _ = parse_samples(json.dumps({**GOOD, "x": 0}).replace("0}", nested + "}"))
    assert len(samples) == 1


@FAST
@given(st.binary(max_size=400))
@example(b"\xff\xfe[{\"id\": 1}]")
@example(b"[" + b"\xc3" * 10 + b"]")
@example(b"\xef\xbb\xbf[1e999]")
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    for parse in (parse_samples, parse_feedback):
        records, report = parse(data, "request")
        assert report.accepted == len(records)


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8),
                      st.floats(allow_nan=True, allow_infinity=True))


@FAST
@given(st.recursive(json_leaf, lambda kids: st.lists(kids, max_size=3)
                    | st.dictionaries(st.text(max_size=5), kids, max_size=3), max_leaves=20),
       st.sampled_from([*NUMERIC_FIELDS, "judge", "input", "extra"]))
def test_any_value_in_any_field_never_stores_a_non_finite_number(value: Any, field: str) -> None:
    body = json.dumps({**GOOD, field: value}, allow_nan=True)
    samples, report = parse_samples(body, "request")
    assert len(samples) + report.total_skipped == 1
    for s in samples:
        dumped = s.model_dump_json()  # what the store writes...
        assert Sample.model_validate(json_values.loads(dumped)) == s  # ...reads back the same


@FAST
@given(st.sampled_from(sorted(NUMERIC_FIELDS)),
       st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=1e-9).map(lambda x: x + 1)))
def test_negative_or_implausible_values_are_refused(field: str, delta: float) -> None:
    top = NUMERIC_FIELDS[field]
    value = delta if delta < 0 else top * (1 + delta)
    if not math.isfinite(value):
        return
    samples, report = parse_samples(json.dumps({**GOOD, field: value}), "request")
    assert samples == []
    assert f"field {field!r}" in report.messages[0]
    if field == "correction_minutes":
        fb, fb_report = parse_feedback(json.dumps({"id": "s-1", "rule": "bot", field: value}))
        assert fb == [] and f"field {field!r}" in fb_report.messages[0]


@pytest.mark.parametrize("literal", NON_FINITE_LITERALS)
def test_feedback_refuses_non_finite_minutes(literal: str) -> None:
    body = json.dumps({"id": "s-1", "rule": "bot", "correction_minutes": "__X__"})
    records, report = parse_feedback(body.replace('"__X__"', literal))
    assert records == []
    assert "field 'correction_minutes'" in report.messages[0]


def test_plausible_extremes_are_accepted() -> None:
    body = json.dumps({**GOOD, "latency_ms": MAX_LATENCY_MS, "cost_usd": 0,
                       "correction_minutes": MAX_CORRECTION_MINUTES})
    samples, _ = parse_samples(body)
    assert len(samples) == 1


# --------------------------------------------------------------------------- rules


_rule = _support
_rule_errors = _errors


def _guard(doc: dict[str, Any], metric: str) -> tuple[int, dict[str, Any]]:
    guards = doc["spec"]["analysis"]["guards"]
    return next((i, g) for i, g in enumerate(guards) if g["metric"] == metric)


@pytest.mark.parametrize("text", [".inf", "-.inf", ".nan", "1e999"])
def test_rule_tolerance_must_be_finite(text: str) -> None:
    doc = yaml.safe_load(
        yaml.safe_dump(_rule()).replace("tolerance: -0.03", f"tolerance: {text}", 1))
    errors = _rule_errors(doc)
    assert any(".tolerance" in e for e in errors), errors


@pytest.mark.parametrize(("metric", "tolerance", "relative"), [
    ("fallbackRate", 1.01, False), ("fallbackRate", 101, False), ("taskSuccess", -2, False),
    ("latency", -1.0, True), ("latency", 1e6, True), ("latency", 1e12, False),
    ("cost", 2e6, False),
])
def test_rule_tolerance_must_lie_in_the_metric_range(
    metric: str, tolerance: float, relative: bool
) -> None:
    doc = _rule()
    i, guard = _guard(doc, metric) if any(
        g["metric"] == metric for g in doc["spec"]["analysis"]["guards"]) else (0, None)
    if guard is None:
        doc["spec"]["analysis"]["guards"][0] = guard = {"name": "g", "metric": metric}
    guard.update(tolerance=tolerance, relative=relative)
    guard.pop("overrides", None)
    errors = _rule_errors(doc)
    assert any(e.startswith(f"spec.analysis.guards[{i}].tolerance") for e in errors), errors


@pytest.mark.parametrize(("interval", "ok"), [("0.0001ms", False), ("999ms", False),
                                              ("1s", True), ("1m", True), ("400d", False)])
def test_interval_has_a_sane_minimum_and_maximum(interval: str, ok: bool) -> None:
    doc = _rule()
    doc["spec"]["analysis"]["interval"] = interval
    doc["spec"]["analysis"]["maxDuration"] = "366d" if interval == "400d" else "2h"
    result = parse_rule(doc, "x.yaml", 0)
    assert isinstance(result, list) != ok, result
    if isinstance(result, list):
        assert any(e.path == "spec.analysis.interval" for e in result)


@FAST
@given(st.sampled_from(["alpha", "minSamplesPerCohort", "errorLimit", "maxGroups"]),
       st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                 st.integers(min_value=-10**40, max_value=10**40)))
def test_every_numeric_analysis_field_is_bounded(field: str, value: float) -> None:
    doc = copy.deepcopy(_rule())
    doc["spec"]["analysis"][field] = value
    result = parse_rule(doc, "x.yaml", 0)
    if not isinstance(result, list):
        analysis = result.rule.spec.analysis
        got = float(getattr(analysis, {"minSamplesPerCohort": "min_samples_per_cohort",
                                        "errorLimit": "error_limit",
                                        "maxGroups": "max_groups"}.get(field, field)))
        assert math.isfinite(got) and got <= 10_000_000
        assert got >= 0 if field == "errorLimit" else got > 0  # 0 errors tolerated is valid
