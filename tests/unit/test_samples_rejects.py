"""Structured rejects: each refused record names its line, field, reason, id and kind."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.models.ingest import RejectKind
from controller.sources.samples_io import parse_feedback, parse_samples, unknown_rule

GOOD = {"rule": "bot", "cohort": "canary", "ts": "2026-11-22T12:00:00Z", "input": "q",
        "output": "a", "latency_ms": 120, "cost_usd": 0.001, "fallback": False}


def rec(i: int, **changes: Any) -> dict[str, Any]:
    return {"id": f"s-{i}", **GOOD, **changes}


def test_a_json_array_names_the_line_where_each_bad_element_starts() -> None:
    body = "[\n" + ",\n".join(json.dumps(r) for r in [rec(1), rec(2, risk="x"), rec(3)]) + "\n]"
    samples, report = parse_samples(body, "req")
    assert [s.id for s in samples] == ["s-1", "s-3"]
    (reject,) = report.rejects
    assert (reject.line, reject.field, reject.id, reject.kind) == (
        3, "risk", "s-2", RejectKind.INVALID_RECORD)
    assert reject.message.startswith("req:3: field 'risk'")
    assert report.record_lines == [2, 4]


def test_unknown_rule_is_refused_naming_the_rule() -> None:
    known = {("bot", None), ("bot", "team-a")}
    check = unknown_rule(lambda rule, ns: (rule, ns) in known)
    lines = [json.dumps(rec(1)), json.dumps(rec(2, rule="bto")),
             json.dumps(rec(3, rule="bot", namespace="team-b"))]
    samples, report = parse_samples("\n".join(lines), "req", check=check)
    assert [s.id for s in samples] == ["s-1"]
    assert [(r.line, r.field, r.kind, r.id) for r in report.rejects] == [
        (2, "rule", RejectKind.UNKNOWN_RULE, "s-2"), (3, "rule", RejectKind.UNKNOWN_RULE, "s-3")]
    assert report.rejects[0].reason == "no CanaryRule 'bto'"
    assert "namespace 'team-b'" in report.rejects[1].reason
    assert report.skipped[RejectKind.UNKNOWN_RULE.value] == 2
    feedback, fb_report = parse_feedback(json.dumps({"id": "s-1", "rule": "bto"}), check=check)
    assert feedback == [] and fb_report.rejects[0].kind is RejectKind.UNKNOWN_RULE


def test_rejects_are_capped_but_counted() -> None:
    body = "\n".join("{bad" for _ in range(80))
    _, report = parse_samples(body, "req", max_messages=10)
    assert len(report.rejects) == 10 and report.rejects_dropped == 70
    assert report.total_rejected == 80


@settings(max_examples=80, derandomize=True, deadline=None)
@given(st.lists(st.one_of(
    st.just(json.dumps(rec(1))), st.text(max_size=30), st.binary(max_size=20).map(repr),
    st.builds(lambda k, v: json.dumps(rec(2, **{k: v})),
              st.sampled_from(sorted(GOOD)), st.one_of(st.none(), st.integers(), st.text()))),
    max_size=6))
def test_every_line_is_accepted_or_rejected_with_a_line_number(lines: list[str]) -> None:
    body = "\n".join(lines)
    _, report = parse_samples(body, "req")
    total_lines = body.count("\n") + 1
    assert report.accepted + report.total_skipped + report.blank_lines <= total_lines
    for reject in report.rejects:
        assert 1 <= reject.line <= total_lines
        assert reject.message.startswith(f"req:{reject.line}")
