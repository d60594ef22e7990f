"""Hostile clients against the controller process, the Kubernetes API emulator (whose
TokenReview checks the ServiceAccount tokens) and the scripted judge.

Each test replays attacks that once halted, forged or exhausted a rollout, checks that
each is refused with a clear answer (or made harmless), and then that the rollout still
reaches the right decision. Ends with a hypothesis fuzz of ``POST /v1/samples`` and
``/v1/feedback``: never a 5xx, never a dropped connection, never a stored non-finite value.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from canary_playground.kube import EmulatorHandle
from canary_playground.scripted_judge import ScriptedJudge
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.actuator import events, rules
from controller.actuator.client import Kube, connect
from controller.models import json_values
from tests.support import waiting
from tests.support.controller import Controller, controller_processes

NS = "default"
ACCOUNT = "bot-sa"
SECRET_KEY = "sk-test-hostile-2b71"


@pytest.fixture(scope="module")
def keyed_judge() -> Iterator[ScriptedJudge]:
    """The scripted judge, refusing any key but the Secret's (401 echoes it, like some
    servers): a key in the wrong place shows up in the logs checked below."""
    with ScriptedJudge(api_key=SECRET_KEY) as server:
        yield server


@pytest.fixture
def judge(keyed_judge: ScriptedJudge) -> ScriptedJudge:
    keyed_judge.reset()
    return keyed_judge


@pytest.fixture
def emu(emulator: EmulatorHandle) -> EmulatorHandle:
    emulator.reset()
    return emulator


@pytest.fixture
def kube(emu: EmulatorHandle) -> Iterator[Kube]:
    k = connect(emu.kubeconfig)
    for name, marked in (("judge-key", True), ("db-password", False)):
        labels = {"canary.llmops.dev/judge-key": "true"} if marked else {}
        k.request("POST", f"/api/v1/namespaces/{NS}/secrets", body={
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "labels": labels},
            "stringData": {"api-key": SECRET_KEY}})
    k.request("POST", f"/apis/apps/v1/namespaces/{NS}/deployments", body={
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bot"},
        "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "bot"}},
                 "template": {"metadata": {"labels": {"app": "bot"}},
                              "spec": {"serviceAccountName": ACCOUNT,
                                       "containers": [{"name": "app", "image": "bot:1"}]}}}})
    yield k
    k.close()


def token(emu: EmulatorHandle, account: str = f"{NS}/{ACCOUNT}") -> str:
    return emu.issue_token(service_account=account, audiences=["llm-canary"])


@pytest.fixture
def controllers(emu: EmulatorHandle, tmp_path: Path, judge: ScriptedJudge
                ) -> Iterator[Callable[..., Controller]]:
    """Controllers whose clients authenticate with the target's ServiceAccount token."""
    with controller_processes(emu, tmp_path, secret=SECRET_KEY, judge_url=judge.base_url,
                              insecure=False, token=token(emu)) as start:
        yield start


def apply_rule(kube: Kube, judge: ScriptedJudge, *, name: str = "bot",
               judge_spec: dict[str, Any] | None = None, **extra_guards: Any) -> None:
    guards: list[dict[str, Any]] = [
        {"name": "success", "metric": "taskSuccess", "tolerance": -0.1},
        {"name": "latency", "metric": "latency", "tolerance": 0.5, "relative": True},
    ]
    rules.apply_rule(kube, {
        "apiVersion": "canary.llmops.dev/v1alpha1", "kind": "CanaryRule",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "targetRef": {"name": "bot"},
            "canary": {"container": "app", "image": "bot:2"},
            "steps": [{"weight": 50}],
            "analysis": {"interval": "1m", "minSamplesPerCohort": 60, "maxDuration": "1h",
                         "settle": "1s", "guards": guards, **extra_guards},
            "judge": judge_spec or {
                "model": "judge-model", "baseUrl": judge.base_url,
                "apiKeySecretRef": {"name": "judge-key", "key": "api-key"},
                "samplesPerInterval": 1000, "concurrency": 16},
        },
    })


def progressing(kube: Kube, judge: ScriptedJudge, controllers: Callable[..., Controller],
                **rule: Any) -> Controller:
    """The rule applied, the controller started, the rollout at its first step with all
    its pods available (the step's evidence counts from then)."""
    apply_rule(kube, judge, **rule)
    c = controllers(name="c")
    wait_for("the first step's pods available", lambda: phase(kube) == "Progressing"
             and bool(status_of(kube).get("stepReadyAt")), c)
    time.sleep(1.5)  # the rule's settle time: canary samples count from then
    return c


def records(n: int, *, verdict: str = "fully,mostly", start: int = 0, prefix: str = "s",
            rule: str = "bot", **fields: Any) -> list[dict[str, Any]]:
    """Baseline and canary samples; the scripted judge answers ``verdict`` for the canary."""
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 5))
    return [{"id": f"{prefix}-{cohort}-{i}", "rule": rule, "cohort": cohort, "ts": ts,
             "input": f"question {i}",
             "output": f"answer {i} [[judge: {verdict if cohort == 'canary' else 'fully'}]]",
             "latency_ms": 100 + i % 7, "cost_usd": 0.001, "fallback": False, **fields}
            for i in range(start, start + n) for cohort in ("baseline", "canary")]


def status_of(kube: Kube, name: str = "bot") -> dict[str, Any]:
    return rules.get_rule(kube, NS, name).get("status") or {}


def wait_for(what: str, check: Callable[[], bool], c: Controller, timeout: float = 60.0
             ) -> None:
    waiting.wait_for(check, timeout, what, every=0.2, logs=lambda: _tail(c))


def _tail(c: Controller) -> str:
    """The controller's log without the HTTP client's debug chatter."""
    lines = [x for x in c.logs().splitlines()
             if '"logger": "httpcore' not in x and '"logger": "httpx' not in x]
    return "\n".join(lines[-40:])


def phase(kube: Kube, name: str = "bot") -> str | None:
    return status_of(kube, name).get("phase")


def reasons(kube: Kube, name: str = "bot") -> set[str]:
    return {e["reason"] for e in events.list_events(kube, NS, name)}


def literal(record: dict[str, Any], field: str, text: str) -> str:
    """The record as JSON with ``field`` set to a raw literal json.dumps cannot write."""
    return json.dumps({**record, field: "__X__"}).replace('"__X__"', text)


def first_reject(r: httpx.Response) -> dict[str, Any]:
    errors: list[dict[str, Any]] = r.json()["errors"]
    return errors[0]


def raw_http(c: Controller, request: bytes) -> tuple[int, dict[str, Any]]:
    """Raw bytes in; the status and JSON body out (the server must answer)."""
    with socket.create_connection(("127.0.0.1", c.port), timeout=30) as s:
        s.sendall(request)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = [int(h.split(b":")[1]) for h in head.split(b"\r\n")
                      if h.lower().startswith(b"content-length:")]
            if length and len(body) >= length[0]:
                break
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"application/json" in head.lower(), data[:300]
    return int(head.split(b" ")[1]), json.loads(body)


# --------------------------------------------------------------------------- attacks 1, 3


def test_non_finite_numbers_and_a_poisoned_row_never_halt_the_rollout(
    kube: Kube, judge: ScriptedJudge, controllers: Callable[..., Controller]
) -> None:
    """1e999 / Infinity latencies and Infinity correction minutes are refused at parse time
    naming the field; a row corrupted directly in SQLite is quarantined (event, status,
    metric) and, across a restart, 150 bad canary samples still roll the rule back."""
    c = progressing(kube, judge, controllers)
    good = records(1, prefix="ok")[0]
    for text in ("1e999", "Infinity", "-Infinity", "NaN", "1e308"):
        r = c.post("/v1/samples", literal(good, "latency_ms", text))
        assert r.status_code == 400, r.text
        assert first_reject(r)["field"] == "latency_ms"
    assert c.post_samples([good]).status_code == 200
    r = c.post("/v1/feedback", literal({"id": good["id"], "rule": "bot"},
                                       "correction_minutes", "Infinity"))
    assert r.status_code == 400 and first_reject(r)["field"] == "correction_minutes"

    assert c.post_samples(records(20, prefix="early")).status_code == 200
    wait_for("early samples counted", lambda: any(
        g.get("nCanary", 0) >= 20 for g in status_of(kube).get("guards", [])), c)
    db = sqlite3.connect(c.store)
    db.execute("UPDATE samples SET body = replace(body, '\"latency_ms\":', "
               "'\"latency_ms\":null,\"x\":') WHERE id = ?", (good["id"],))
    db.execute("UPDATE samples SET verdict_kind = NULL, verdict = NULL WHERE id = ?",
               (good["id"],))
    db.commit()
    db.close()
    c.kill()
    c = controllers(name="c")  # a restart on the same store
    assert c.post_samples(records(150, verdict="none", start=20, prefix="bad")).status_code \
        == 200
    wait_for("rollback", lambda: phase(kube) == "RolledBack", c)
    st = status_of(kube)
    assert st["quarantinedSamples"] == 1
    cond = next(x for x in st["conditions"] if x["type"] == "SamplesReadable")
    assert cond["status"] == "False" and good["id"] in cond["message"]
    assert "SamplesQuarantined" in reasons(kube)
    metrics = httpx.get(c.url + "/metrics").text
    assert 'llmcanary_store_quarantined_total{namespace="default",rule="bot"} 1.0' in metrics


# --------------------------------------------------------------------------- attack 2


def test_only_the_rules_workload_may_post_and_forged_verdicts_never_count(
    kube: Kube, judge: ScriptedJudge, controllers: Callable[..., Controller],
    emu: EmulatorHandle,
) -> None:
    c = progressing(kube, judge, controllers)
    forged = {"judge": {"score": 1.0, "model": "forged"}}
    body = json.dumps(records(5, prefix="anon"))
    assert c.post("/v1/samples", body, headers={}).status_code == 401
    intruder = {"Authorization": f"Bearer {token(emu, 'default/intruder')}"}
    r = c.post("/v1/samples", body, headers=intruder)
    assert r.status_code == 403
    assert first_reject(r)["kind"] == "forbidden" and "default/bot" in first_reject(r)["reason"]
    api_token = emu.issue_token(service_account=f"{NS}/{ACCOUNT}")  # for the API server
    assert c.post("/v1/samples", body, headers={"Authorization": f"Bearer {api_token}"}) \
        .status_code == 401
    assert c.post("/v1/samples", json.dumps(records(5, rule="nope"))).status_code == 404
    # the workload itself posts a regressed canary with forged perfect verdicts
    regressed = records(150, verdict="none", prefix="forged", **forged)
    assert c.post_samples(regressed).status_code == 200
    wait_for("rollback despite forged verdicts", lambda: phase(kube) == "RolledBack", c)
    success = next(g for g in status_of(kube)["guards"] if g["name"] == "success")
    assert success["verdicts"] == "judge" and success["outcome"] == "fail"
    texts = list(judge.request_texts())
    assert sum("forged-canary" in t or "answer" in t for t in texts) > 0
    assert judge.calls >= 300  # every sample judged, none spared by its client verdict


def test_forged_failures_cannot_force_a_rollback(
    kube: Kube, judge: ScriptedJudge, controllers: Callable[..., Controller]
) -> None:
    c = progressing(kube, judge, controllers)
    sabotage = [{**s, "judge": {"score": 0.0 if s["cohort"] == "canary" else 1.0}}
                for s in records(150, prefix="sabotage")]
    assert c.post_samples(sabotage).status_code == 200
    wait_for("promotion", lambda: phase(kube) == "Succeeded", c)


# --------------------------------------------------------------------------- attacks 4, 5, 7


def test_broken_framing_odd_tokens_and_deep_records_are_answered(
    kube: Kube, judge: ScriptedJudge, controllers: Callable[..., Controller],
    emu: EmulatorHandle,
) -> None:
    c = progressing(kube, judge, controllers)
    auth = f"Authorization: Bearer {c.token}\r\n".encode()
    code, body = raw_http(c, b"POST /v1/samples HTTP/1.1\r\nHost: x\r\n" + auth +
                          b"Content-Length: -1\r\n\r\n[]")
    assert code == 400 and body["error"]
    code, body = raw_http(c, "POST /v1/samples HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                             "t\u00e9\r\nContent-Length: 2\r\n\r\n[]".encode())
    assert code == 401 and "ASCII" in body["error"]
    deep = json.dumps({**records(1)[0], "x": 0}).replace('"x": 0', '"x": ' + "[" * 900 +
                                                         "]" * 900)
    r = c.post("/v1/samples", deep)
    assert r.status_code == 400 and "nested deeper" in first_reject(r)["reason"]

    def chunks() -> Iterator[bytes]:
        for _ in range(11 * 1024):
            yield b" " * 1024

    big = httpx.post(c.url + "/v1/samples", content=chunks(), headers=c.headers(), timeout=60)
    assert big.status_code == 413
    for value in (-5.0, 1e308, 86_400_001):
        r = c.post_samples([{**records(1, prefix=f"v{value}")[0], "latency_ms": value}])
        assert r.status_code == 400 and first_reject(r)["field"] == "latency_ms"
    r = c.post_samples([{**records(1, prefix="srv")[0], "feedback_closed": True}])
    assert r.status_code == 400 and first_reject(r)["field"] == "feedback_closed"
    assert c.post_samples(records(150, prefix="fine")).status_code == 200
    wait_for("promotion after the attacks", lambda: phase(kube) == "Succeeded", c)


# --------------------------------------------------------------------------- attack 9


@pytest.mark.parametrize("case", ["unmarked-secret", "foreign-url"])
def test_a_rule_cannot_send_a_secret_where_it_likes(
    case: str, kube: Kube, judge: ScriptedJudge, controllers: Callable[..., Controller]
) -> None:
    spec: dict[str, Any] = {"model": "judge-model", "samplesPerInterval": 1000,
                            "baseUrl": judge.base_url,
                            "apiKeySecretRef": {"name": "db-password", "key": "api-key"}}
    if case == "foreign-url":
        spec["baseUrl"] = "http://127.0.0.1:9/v1"  # anyone's server, not on the allow-list
        spec["apiKeySecretRef"]["name"] = "judge-key"
    c = progressing(kube, judge, controllers, judge_spec=spec)
    assert c.post_samples(records(80, prefix="k")).status_code == 200
    wait_for("judge condition", lambda: any(
        x["type"] == "JudgeAvailable" and x["status"] == "False"
        for x in status_of(kube).get("conditions", [])), c)
    cond = next(x for x in status_of(kube)["conditions"] if x["type"] == "JudgeAvailable")
    expected = "not marked for llm-canary" if case == "unmarked-secret" else "allow-list"
    assert expected in cond["message"]
    assert "JudgeUnavailable" in reasons(kube)
    success = next(g for g in status_of(kube)["guards"] if g["name"] == "success")
    assert success["outcome"] == "error" and expected in success["reason"]
    assert judge.calls == 0  # nothing left the controller
    assert phase(kube) == "Progressing"  # held, never promoted on the other guards


# --------------------------------------------------------------------------- fuzz


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(),
                      st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
json_value = st.recursive(json_leaf, lambda kids: st.lists(kids, max_size=4)
                          | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                          max_leaves=25)
FIELDS = ["id", "rule", "namespace", "cohort", "ts", "queue", "risk", "input", "output",
          "latency_ms", "cost_usd", "fallback", "correction_minutes", "judge", "label"]


@st.composite
def hostile_body(draw: st.DrawFn) -> bytes:
    base = records(1, prefix=f"f{draw(st.integers(0, 10**6))}")[0]
    kind = draw(st.sampled_from(["record", "array", "lines", "bytes", "literal"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    mutated = dict(base)
    for field in draw(st.lists(st.sampled_from(FIELDS), max_size=3)):
        mutated[field] = draw(json_value)
    text = json.dumps(mutated, allow_nan=True)
    if kind == "literal":
        field = draw(st.sampled_from(["latency_ms", "cost_usd", "correction_minutes", "x"]))
        text = literal(mutated, field, draw(st.sampled_from(
            ["NaN", "Infinity", "-Infinity", "1e999", "1" * 5000, "[" * 200 + "]" * 200])))
    if kind == "array":
        text = "[" + text + "," + json.dumps(base) + "]"
    if kind == "lines":
        text = text + "\n" + json.dumps(base) + "\n{"
    return text.encode()


@pytest.fixture
def fuzz_target(kube: Kube, judge: ScriptedJudge, controllers: Callable[..., Controller]
                ) -> Controller:
    apply_rule(kube, judge)
    c = controllers(name="fuzz")
    wait_for("progressing", lambda: phase(kube) == "Progressing", c)
    return c


def test_fuzzed_bodies_are_always_answered_and_never_store_a_non_finite_value(
    fuzz_target: Controller,
) -> None:
    c = fuzz_target
    client = httpx.Client(base_url=c.url, headers=c.headers(), timeout=30)

    @settings(max_examples=150, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(["/v1/samples", "/v1/feedback"]), hostile_body())
    def one(path: str, body: bytes) -> None:
        r = client.post(path, content=body)  # a dropped connection raises here
        assert r.status_code in (200, 207, 400, 403, 404), (r.status_code, r.text)
        assert isinstance(r.json(), dict)

    try:
        one()
    finally:
        client.close()
    db = sqlite3.connect(c.store)
    rows = db.execute("SELECT body, overlay FROM samples UNION ALL "
                      "SELECT overlay, '{}' FROM pending_feedback").fetchall()
    db.close()
    assert rows, "the fuzz stored nothing at all: the generator is broken"
    for body, overlay in rows:
        json_values.loads(body)  # finite numbers, bounded nesting: else it raises
        json_values.loads(overlay)
        assert "null" not in json.dumps([json.loads(body).get(k) for k in
                                         ("latency_ms", "cost_usd")])
