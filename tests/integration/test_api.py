"""The ingestion API over real HTTP on 127.0.0.1 with a real SQLite store."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller.api import ApiServer
from controller.models import RuleKey
from controller.sources.store import SampleStore

KEY = RuleKey("default", "bot")

GOOD = {"rule": "bot", "cohort": "canary", "ts": "2026-11-22T12:00:00Z", "input": "q",
        "output": "a", "latency_ms": 120, "cost_usd": 0.001, "fallback": False}


def rec(i: int | str, **changes: Any) -> dict[str, Any]:
    return {"id": f"s-{i}", **GOOD, **changes}


class Running:
    def __init__(self, path: Path, **kw: Any) -> None:
        self.store = SampleStore(path)
        self.leader = threading.Event()
        self.leader.set()
        self.server = ApiServer(self.store, host="127.0.0.1", port=0,
                                is_leader=self.leader.is_set, **kw)
        self.server.start()
        self.url = f"http://127.0.0.1:{self.server.port}"

    def close(self) -> None:
        self.server.stop()
        self.store.close()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Running]:
    r = Running(tmp_path / "s.db", max_body=64 * 1024)
    yield r
    r.close()


def post(api: Running, path: str, body: str | bytes, **kw: Any) -> httpx.Response:
    return httpx.post(api.url + path, content=body, timeout=5, **kw)


def test_json_array_is_stored_and_duplicates_dropped(api: Running) -> None:
    r = post(api, "/v1/samples", json.dumps([rec(1), rec(2), rec(1)]))
    assert r.status_code == 200
    body = r.json()
    assert {k: body[k] for k in ("accepted", "duplicates", "rejected", "errors")} == \
        {"accepted": 2, "duplicates": 1, "rejected": 0, "errors": []}
    assert body["message"].startswith("2 stored, 1 duplicates, 0 rejected")
    again = post(api, "/v1/samples", json.dumps([rec(1)]))  # a client retry
    assert again.status_code == 200
    assert again.json()["duplicates"] == 1 and again.json()["accepted"] == 0
    assert api.store.count(KEY) == 2


def test_json_lines_with_bad_records_stores_the_rest_and_names_the_field(api: Running) -> None:
    lines = [json.dumps(rec(1)), "{broken", json.dumps(rec(2, cohort="purple")),
             json.dumps({k: v for k, v in rec(3).items() if k != "latency_ms"}),
             json.dumps(rec(4))]
    r = post(api, "/v1/samples", "\n".join(lines))
    assert r.status_code == 207
    body = r.json()
    assert (body["accepted"], body["rejected"]) == (2, 3)
    errors = body["errors"]
    assert [(e["line"], e["field"], e["kind"], e["id"]) for e in errors] == [
        (2, None, "invalid_json", None),
        (3, "cohort", "invalid_record", "s-2"),
        (4, "latency_ms", "invalid_record", "s-3"),
    ]
    assert errors[1]["reason"] == "Input should be 'baseline' or 'canary'"
    assert errors[2]["reason"] == "required field is missing"
    assert errors[0]["message"].startswith("request:2: invalid JSON")
    assert errors[1]["message"].startswith("request:3: field 'cohort'")
    assert "request:2" in body["message"]
    assert api.store.count(KEY) == 2


def test_answers_follow_the_published_schema(api: Running) -> None:
    import jsonschema

    from controller.models.schema import ingestion_schema

    schema = ingestion_schema()
    lines = [json.dumps(rec(1)), "[1]", json.dumps(rec(2, latency_ms=-1))]
    r = post(api, "/v1/samples", "\n".join(lines))
    assert r.status_code == 207
    answer = {"$ref": "#/$defs/SamplesAnswer", "$defs": schema["$defs"]}
    jsonschema.validate(r.json(), answer)
    f = post(api, "/v1/feedback", json.dumps({"id": "s-1", "rule": "bot", "label": "x"}))
    jsonschema.validate(f.json(), {"$ref": "#/$defs/FeedbackAnswer", "$defs": schema["$defs"]})


def test_non_finite_numbers_are_refused(api: Running) -> None:
    body = '{"id": "n1", "rule": "bot", "cohort": "canary", "ts": "2026-11-22T12:00:00Z", ' \
        '"input": "q", "output": "a", "latency_ms": NaN, "cost_usd": Infinity, "fallback": false}'
    r = post(api, "/v1/samples", body)
    assert r.status_code == 400
    (err,) = r.json()["errors"]
    assert err["field"] in ("latency_ms", "cost_usd") and err["id"] == "n1"
    assert api.store.count(KEY) == 0


def test_nothing_valid_is_400(api: Running) -> None:
    assert post(api, "/v1/samples", "not json").status_code == 400
    assert post(api, "/v1/samples", "").status_code == 400


def test_body_over_the_limit_is_413(api: Running) -> None:
    big = json.dumps([rec(i, input="x" * 1000) for i in range(100)])
    r = post(api, "/v1/samples", big)
    assert r.status_code == 413
    assert api.store.count(KEY) == 0


def test_feedback_is_joined_by_id_and_kept_when_early(api: Running) -> None:
    post(api, "/v1/samples", json.dumps([rec(1)]))
    r = post(api, "/v1/feedback", json.dumps([
        {"id": "s-1", "rule": "bot", "correction_minutes": 4},
        {"id": "s-9", "rule": "bot", "label": "approve"}]))
    assert r.status_code == 200
    assert r.json()["applied"] == 1 and r.json()["pending"] == 1
    stored = api.store.get(KEY, "s-1")
    assert stored is not None and stored.sample.correction_minutes == 4
    post(api, "/v1/samples", json.dumps([rec(9)]))
    late = api.store.get(KEY, "s-9")
    assert late is not None and late.sample.label == "approve"


def test_feedback_cannot_touch_another_rules_sample_or_other_fields(api: Running) -> None:
    post(api, "/v1/samples", json.dumps([rec(1)]))
    r = post(api, "/v1/feedback", "\n".join([
        json.dumps({"id": "s-1", "rule": "other", "correction_minutes": 30}),
        json.dumps({"id": "s-1", "rule": "bot", "cohort": "baseline"}),
        json.dumps({"id": "s-1", "correction_minutes": 1}),
    ]))
    assert r.status_code == 207
    body = r.json()
    assert (body["applied"], body["pending"]) == (0, 1)  # "other"'s s-1 is not bot's s-1
    assert [(e["line"], e["field"], e["kind"]) for e in body["errors"]] == [
        (2, "cohort", "invalid_record"), (3, "rule", "invalid_record")]
    stored = api.store.get(KEY, "s-1")
    assert stored is not None
    assert stored.sample.correction_minutes is None and stored.sample.cohort == "canary"


def test_non_leader_answers_503_with_retry_after_and_is_not_ready(api: Running) -> None:
    api.leader.clear()
    r = post(api, "/v1/samples", json.dumps([rec(1)]))
    assert r.status_code == 503
    assert int(r.headers["Retry-After"]) > 0
    assert httpx.get(api.url + "/readyz").status_code == 503
    assert httpx.get(api.url + "/healthz").status_code == 200
    assert api.store.count() == 0
    api.leader.set()
    assert httpx.get(api.url + "/readyz").status_code == 200


def test_bearer_token(tmp_path: Path) -> None:
    r = Running(tmp_path / "t.db", token="s3cret-token")
    try:
        assert post(r, "/v1/samples", json.dumps([rec(1)])).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert post(r, "/v1/samples", json.dumps([rec(1)]), headers=wrong).status_code == 401
        ok = {"Authorization": "Bearer s3cret-token"}
        assert post(r, "/v1/samples", json.dumps([rec(1)]), headers=ok).status_code == 200
    finally:
        r.close()


def test_acknowledged_samples_survive_a_restart(tmp_path: Path) -> None:
    first = Running(tmp_path / "d.db")
    assert post(first, "/v1/samples", json.dumps([rec(i) for i in range(50)])).status_code \
        == 200
    first.close()
    second = Running(tmp_path / "d.db")
    try:
        assert second.store.count(KEY) == 50
    finally:
        second.close()


def test_metrics_endpoint_counts_ingestion(api: Running) -> None:
    post(api, "/v1/samples", json.dumps([rec(1), rec(1)]))
    text = httpx.get(api.url + "/metrics").text
    assert "llmcanary_samples_ingested_total" in text
    assert httpx.get(api.url + "/nope").status_code == 404
