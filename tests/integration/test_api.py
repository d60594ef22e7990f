"""The HTTP API over real HTTP on 127.0.0.1 with a real SQLite store: formats, limits for
every framing, back-pressure, probes, and per-rule authorization of ServiceAccount tokens
reviewed by the Kubernetes API emulator's TokenReview."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from canary_playground.kube import EmulatorHandle

from controller.actuator.client import connect
from controller.actuator.tokenreview import TokenReviewer
from controller.api import ApiServer, Ingestion, Insecure, Limits, TokenReviewAuthenticator
from controller.api.auth import Authenticator
from controller.health import Health
from controller.models import RuleKey
from controller.reconciler.directory import Directory
from controller.sources.store import SampleStore
from tests.support.api import directory

KEY = RuleKey("default", "bot")

GOOD = {"rule": "bot", "cohort": "canary", "ts": "2026-11-22T12:00:00Z", "input": "q",
        "output": "a", "latency_ms": 120, "cost_usd": 0.001, "fallback": False}


def rec(i: int | str, **changes: Any) -> dict[str, Any]:
    return {"id": f"s-{i}", **GOOD, **changes}


def rules() -> Directory:
    return directory(("default/bot", "bot", "bot-sa"), ("default/other", "other", "other-sa"),
                     ("team-b/bot", "bot", "bot-sa"), ("default/shared", "shared", ""),
                     reporters={"default/shared": ["feedback/labeller", "helper"]})


class Running:
    def __init__(self, path: Path, *, auth: Authenticator | None = None,
                 metrics_port: int | None = None, store: SampleStore | None = None,
                 rule_directory: Directory | None = None, **limits: Any) -> None:
        self.store = store or SampleStore(path)
        self.leader = threading.Event()
        self.leader.set()
        self.health = Health()
        self.directory = rule_directory or rules()
        self.server = ApiServer(Ingestion(self.store, self.directory), auth or Insecure(),
                                health=self.health, host="127.0.0.1", port=0,
                                metrics_port=metrics_port, is_leader=self.leader.is_set,
                                directory_synced=lambda: self.directory.synced,
                                limits=Limits(**limits))
        self.server.start()
        self.url = f"http://127.0.0.1:{self.server.port}"

    def close(self) -> None:
        self.server.stop()
        self.store.close()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Running]:
    r = Running(tmp_path / "s.db", max_body_bytes=64 * 1024, body_timeout_seconds=1.0)
    yield r
    r.close()


def post(api: Running, path: str, body: str | bytes, **kw: Any) -> httpx.Response:
    return httpx.post(api.url + path, content=body, timeout=10, **kw)


def raw(api: Running, request: bytes) -> bytes:
    """Send raw bytes, read the whole answer (the server must answer, then may close)."""
    with socket.create_connection(("127.0.0.1", api.server.port), timeout=15) as s:
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data or not _complete(data):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return data


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def status_and_json(answer: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"application/json" in head.lower(), head
    return int(head.split(b" ")[1]), json.loads(body)


# --------------------------------------------------------------------------- formats


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
             json.dumps(rec(4)), json.dumps(rec(5)).replace("120", "1e999"),
             json.dumps(rec(6)).replace("120", "NaN")]
    r = post(api, "/v1/samples", "\n".join(lines))
    assert r.status_code == 207
    body = r.json()
    assert (body["accepted"], body["rejected"]) == (2, 5)
    errors = body["errors"]
    assert [(e["line"], e["field"], e["kind"], e["id"]) for e in errors] == [
        (2, None, "invalid_json", None),
        (3, "cohort", "invalid_record", "s-2"),
        (4, "latency_ms", "invalid_record", "s-3"),
        (6, "latency_ms", "invalid_record", "s-5"),
        (7, "latency_ms", "invalid_record", "s-6"),
    ]
    assert errors[1]["reason"] == "Input should be 'baseline' or 'canary'"
    assert errors[2]["reason"] == "required field is missing"
    assert errors[3]["message"].startswith("request:6: field 'latency_ms': 1e999 is not a")
    assert errors[4]["message"].startswith("request:7: field 'latency_ms': NaN is not a")
    assert api.store.count(KEY) == 2


def test_answers_follow_the_published_schema(api: Running) -> None:
    import jsonschema

    from controller.models.schema import ingestion_schema

    schema = ingestion_schema()
    lines = [json.dumps(rec(1)), "[1]", json.dumps(rec(2, latency_ms=-1)),
             json.dumps(rec(3, rule="typo"))]
    r = post(api, "/v1/samples", "\n".join(lines))
    assert r.status_code == 207
    answer = {"$ref": "#/$defs/SamplesAnswer", "$defs": schema["$defs"]}
    jsonschema.validate(r.json(), answer)
    f = post(api, "/v1/feedback", json.dumps({"id": "s-1", "rule": "bot", "label": "x"}))
    jsonschema.validate(f.json(), {"$ref": "#/$defs/FeedbackAnswer", "$defs": schema["$defs"]})
    for refusal in (post(api, "/v1/nope", b"[]"), httpx.get(api.url + "/v1/samples")):
        jsonschema.validate(refusal.json(), {"$ref": "#/$defs/ErrorAnswer",
                                             "$defs": schema["$defs"]})


def test_the_schema_is_served(api: Running) -> None:
    r = httpx.get(api.url + "/v1/schema")
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/schema+json"
    assert "SamplesAnswer" in r.json()["$defs"]


def test_nothing_valid_is_400(api: Running) -> None:
    assert post(api, "/v1/samples", "not json").status_code == 400
    assert post(api, "/v1/samples", "").status_code == 400


def test_server_owned_fields_are_refused(api: Running) -> None:
    r = post(api, "/v1/samples", json.dumps([rec(1, feedback_closed=True), rec(2)]))
    assert r.status_code == 207
    (err,) = r.json()["errors"]
    assert (err["field"], err["kind"], err["id"]) == ("feedback_closed", "invalid_record", "s-1")
    assert api.store.get(KEY, "s-1") is None


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


def test_unknown_rules_are_named_and_other_namespaces_are_not_probed(api: Running) -> None:
    r = post(api, "/v1/samples", json.dumps([rec(1, rule="typo")]))
    assert r.status_code == 404
    (err,) = r.json()["errors"]
    assert (err["field"], err["kind"]) == ("rule", "unknown_rule")
    assert err["reason"] == "no CanaryRule 'typo' in namespace 'default'"
    assert api.store.count() == 0


# --------------------------------------------------------------------------- limits


def test_declared_body_over_the_limit_is_413_before_reading(api: Running) -> None:
    big = json.dumps([rec(i, input="x" * 1000) for i in range(100)])
    r = post(api, "/v1/samples", big)
    assert r.status_code == 413 and "body over" in r.json()["error"]
    assert api.store.count(KEY) == 0


def test_chunked_body_over_the_limit_is_413(api: Running) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield b"x" * 1024

    r = httpx.post(api.url + "/v1/samples", content=chunks(), timeout=10)
    assert r.status_code == 413
    assert api.store.count() == 0


def test_negative_or_malformed_content_length_is_answered_in_json(api: Running) -> None:
    for value in (b"-1", b"abc", b"1, 2"):
        answer = raw(api, b"POST /v1/samples HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                     value + b"\r\n\r\n" + b"[]")
        code, body = status_and_json(answer)
        assert code == 400 and body["error"]
    assert api.store.count() == 0


def test_a_lying_content_length_times_out_with_408(api: Running) -> None:
    answer = raw(api, b"POST /v1/samples HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n"
                 + json.dumps([rec(1)]).encode())
    code, body = status_and_json(answer)
    assert code == 408 and "did not arrive" in body["error"]
    assert api.store.count() == 0


def test_a_non_ascii_token_is_401_not_a_dropped_connection(tmp_path: Path,
                                                           emulator: EmulatorHandle) -> None:
    r = Running(tmp_path / "t.db", auth=TokenReviewAuthenticator(
        TokenReviewer(connect(emulator.kubeconfig))))
    try:
        answer = raw(r, "POST /v1/samples HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                        "tok\u00e9n\r\nContent-Length: 2\r\n\r\n[]".encode())
        code, body = status_and_json(answer)
        assert code == 401 and "ASCII" in body["error"]
    finally:
        r.close()


def test_deep_nesting_is_answered_naming_the_limit(api: Running) -> None:
    body = json.dumps(rec(1, extra=0)).replace('"extra": 0', '"extra": ' + "[" * 900 +
                                               "]" * 900)
    r = post(api, "/v1/samples", body)
    assert r.status_code == 400
    (err,) = r.json()["errors"]
    assert (err["field"], err["reason"]) == ("extra", "nested deeper than 32 levels")


def test_beyond_the_concurrency_limit_the_answer_is_429_with_retry_after(tmp_path: Path
                                                                          ) -> None:
    r = Running(tmp_path / "c.db", max_inflight_requests=1, body_timeout_seconds=20)
    try:
        with socket.create_connection(("127.0.0.1", r.server.port), timeout=15) as slow:
            slow.sendall(b"POST /v1/samples HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
                         b"\r\n[")  # holds the only slot while its body trickles in
            deadline = time.monotonic() + 10
            while r.server.admission.requests == 0 and time.monotonic() < deadline:
                time.sleep(0.02)
            busy = post(r, "/v1/samples", json.dumps([rec(1)]))
            assert busy.status_code == 429 and int(busy.headers["Retry-After"]) >= 1
            assert "application/json" in busy.headers["Content-Type"]
        # once the slot is free, the retry is stored
        deadline = time.monotonic() + 10
        while r.server.admission.requests and time.monotonic() < deadline:
            time.sleep(0.02)
        assert post(r, "/v1/samples", json.dumps([rec(1)])).status_code == 200
    finally:
        r.close()


def test_a_full_store_answers_507_with_retry_after(tmp_path: Path) -> None:
    store = SampleStore(tmp_path / "f.db", max_bytes=1)  # nothing ever fits
    r = Running(tmp_path / "f.db", store=store)
    try:
        full = post(r, "/v1/samples", json.dumps([rec(1)]))
        assert full.status_code == 507 and "Retry-After" in full.headers
    finally:
        r.close()


# --------------------------------------------------------------------------- probes


def test_a_standby_is_ready_and_answers_ingestion_503_with_retry_after(api: Running) -> None:
    api.leader.clear()
    r = post(api, "/v1/samples", json.dumps([rec(1)]))
    assert r.status_code == 503 and int(r.headers["Retry-After"]) > 0
    ready = httpx.get(api.url + "/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ok", "leader": False}
    assert httpx.get(api.url + "/healthz").status_code == 200
    assert api.store.count() == 0
    api.leader.set()
    assert httpx.get(api.url + "/readyz").json()["leader"] is True


def test_when_the_target_cannot_be_read_ingestion_is_503_not_a_guess(tmp_path: Path) -> None:
    """The API server is down when a rule's first record arrives: who may report for it
    cannot be known, so the answer is 503 + Retry-After (never 500, never a guess)."""

    def unreachable(namespace: str, name: str) -> str | None:
        raise ConnectionError("connection refused")

    d = Directory(lookup=unreachable)
    d.replace_rules([{"metadata": {"name": "bot", "namespace": "default"},
                      "spec": {"targetRef": {"name": "bot"}}}])
    api = Running(tmp_path / "s.db", rule_directory=d)
    try:
        r = post(api, "/v1/samples", json.dumps([rec(1)]))
        assert r.status_code == 503 and int(r.headers["Retry-After"]) > 0
        assert "default/bot" in r.json()["error"]
        assert api.store.count() == 0
    finally:
        api.close()


def test_a_dead_background_thread_fails_liveness_and_readiness(api: Running) -> None:
    worker = threading.Thread(target=lambda: None, name="worker-0")
    worker.start()
    worker.join()
    api.health.watch_thread(worker)
    for path in ("/healthz", "/readyz"):
        r = httpx.get(api.url + path)
        assert r.status_code == 503 and r.json()["failing"] == ["thread worker-0"]
    api.health.unwatch("thread worker-0")
    assert httpx.get(api.url + "/healthz").status_code == 200


def test_metrics_on_their_own_port(tmp_path: Path) -> None:
    r = Running(tmp_path / "m.db", metrics_port=0)
    try:
        assert r.server.metrics_port != r.server.port
        post(r, "/v1/samples", json.dumps([rec(1), rec(1)]))
        text = httpx.get(f"http://127.0.0.1:{r.server.metrics_port}/metrics").text
        assert "llmcanary_samples_ingested_total" in text
        assert httpx.get(r.url + "/metrics").status_code == 404
        assert httpx.get(f"http://127.0.0.1:{r.server.metrics_port}/readyz").status_code \
            == 200
        assert httpx.post(f"http://127.0.0.1:{r.server.metrics_port}/v1/samples",
                          content=b"[]").status_code == 404
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


# --------------------------------------------------------------------------- authorization


@pytest.fixture
def secure(tmp_path: Path, emulator: EmulatorHandle) -> Iterator[Running]:
    kube = connect(emulator.kubeconfig)
    r = Running(tmp_path / "a.db", auth=TokenReviewAuthenticator(TokenReviewer(kube)))
    yield r
    r.close()
    kube.close()


def bearer(emulator: EmulatorHandle, account: str, audiences: tuple[str, ...] = ("llm-canary",),
           **kw: Any) -> dict[str, str]:
    token = emulator.issue_token(service_account=account, audiences=list(audiences), **kw)
    return {"Authorization": f"Bearer {token}"}


def test_without_a_token_ingestion_is_401(secure: Running) -> None:
    r = post(secure, "/v1/samples", json.dumps([rec(1)]))
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    assert "audience llm-canary" in r.json()["error"]
    wrong = post(secure, "/v1/samples", json.dumps([rec(1)]),
                 headers={"Authorization": "Bearer not-a-token"})
    assert wrong.status_code == 401
    assert secure.store.count() == 0


def test_the_workloads_service_account_posts_for_its_rule_only(
    secure: Running, emulator: EmulatorHandle
) -> None:
    auth = bearer(emulator, "default/bot-sa")
    ok = post(secure, "/v1/samples", json.dumps([rec(1)]), headers=auth)
    assert ok.status_code == 200, ok.text
    stored = secure.store.get(KEY, "s-1")
    assert stored is not None and stored.sample.namespace == "default"  # the caller's
    other = post(secure, "/v1/samples", json.dumps([rec(2, rule="other")]), headers=auth)
    assert other.status_code == 403
    (err,) = other.json()["errors"]
    assert (err["field"], err["kind"]) == ("rule", "forbidden")
    assert "may not report for CanaryRule default/other" in err["reason"]
    elsewhere = post(secure, "/v1/samples", json.dumps([rec(3, namespace="team-b")]),
                     headers=auth)
    assert elsewhere.status_code == 403
    # a rule that does not exist in another namespace looks the same as a forbidden one
    probe = post(secure, "/v1/samples", json.dumps([rec(4, namespace="team-c")]),
                 headers=auth)
    assert probe.status_code == 403
    mixed = post(secure, "/v1/samples",
                 json.dumps([rec(5), rec(6, rule="other"), rec(7)]), headers=auth)
    assert mixed.status_code == 207
    assert mixed.json()["accepted"] == 2 and mixed.json()["rejected"] == 1
    assert secure.store.get(RuleKey("default", "other"), "s-6") is None
    assert secure.store.count() == 3
    fb = post(secure, "/v1/feedback", json.dumps([{"id": "s-1", "rule": "other",
                                                   "correction_minutes": 3}]), headers=auth)
    assert fb.status_code == 403


def test_listed_reporters_and_refused_identities(secure: Running,
                                                 emulator: EmulatorHandle) -> None:
    shared = json.dumps([rec(1, rule="shared")])
    assert post(secure, "/v1/samples", shared,
                headers=bearer(emulator, "feedback/labeller")).status_code == 404
    # (its own namespace has no rule 'shared'; it must name the rule's namespace)
    named = json.dumps([rec(1, rule="shared", namespace="default")])
    assert post(secure, "/v1/samples", named,
                headers=bearer(emulator, "feedback/labeller")).status_code == 200
    assert post(secure, "/v1/samples", json.dumps([rec(2, rule="shared")]),
                headers=bearer(emulator, "default/helper")).status_code == 200
    api_audience = bearer(emulator, "default/bot-sa", audiences=())
    r = post(secure, "/v1/samples", json.dumps([rec(3)]), headers=api_audience)
    assert r.status_code == 401 and "audience" in r.json()["error"]
    person = emulator.issue_token(user="alice", audiences=["llm-canary"])
    r = post(secure, "/v1/samples", json.dumps([rec(4)]),
             headers={"Authorization": f"Bearer {person}"})
    assert r.status_code == 401 and "ServiceAccounts" in r.json()["error"]
    expired = bearer(emulator, "default/bot-sa", expiration_seconds=-10)
    assert post(secure, "/v1/samples", json.dumps([rec(5)]), headers=expired).status_code \
        == 401


def test_reviews_are_cached_by_token_hash(secure: Running, emulator: EmulatorHandle) -> None:
    auth = bearer(emulator, "default/bot-sa")
    mark = emulator.mark()
    for i in range(5):
        assert post(secure, "/v1/samples", json.dumps([rec(i)]), headers=auth).status_code \
            == 200
    reviews = [r for r in emulator.requests(mark) if "tokenreviews" in r["path"]]
    assert len(reviews) == 1
