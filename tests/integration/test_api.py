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
    assert r.json() == {"accepted": 2, "duplicates": 1, "rejected": 0, "errors": []}
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
    assert any("request:2: invalid JSON" in e for e in body["errors"])
    assert any("request:3: field 'cohort'" in e for e in body["errors"])
    assert any("request:4: field 'latency_ms'" in e for e in body["errors"])
    assert api.store.count(KEY) == 2


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
