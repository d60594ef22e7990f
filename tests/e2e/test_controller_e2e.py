"""The controller as its own process against the Kubernetes API emulator (official client,
HTTP on 127.0.0.1), the local OpenAI-compatible judge, and samples posted to its
ingestion API. Each scenario asserts on Deployments, status and events.

Analysis runs every second (``--analysis-interval 1s``) so a rollout takes seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from canary_playground.kube import EmulatorHandle, running_emulator
from canary_playground.scripted_judge import ScriptedJudge

from controller.actuator import deployments as deps_api
from controller.actuator import events, rules
from controller.actuator.client import Kube, connect
from controller.actuator.errors import NotFound
from tests.support.controller import Controller

NS = "default"
SECRET_KEY = "sk-test-do-not-log-7f3a9c"


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorHandle]:
    with running_emulator(tmp_path_factory.mktemp("kube")) as handle:
        yield handle


@pytest.fixture(scope="module")
def judge() -> Iterator[ScriptedJudge]:
    server = ScriptedJudge(api_key=SECRET_KEY).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def kube(emu: EmulatorHandle) -> Iterator[Kube]:
    emu.reset()
    k = connect(emu.kubeconfig)
    k.request("POST", f"/api/v1/namespaces/{NS}/secrets", body={
        "apiVersion": "v1", "kind": "Secret", "metadata": {
            "name": "judge-key", "labels": {"canary.llmops.dev/judge-key": "true"}},
        "stringData": {"api-key": SECRET_KEY}})
    yield k
    k.close()


@pytest.fixture
def controllers(emu: EmulatorHandle, tmp_path: Path, judge: ScriptedJudge
                ) -> Iterator[Callable[..., Controller]]:
    started: list[Controller] = []

    def start(**kw: Any) -> Controller:
        c = Controller(emu.kubeconfig, tmp_path, judge_url=judge.base_url, **kw)
        started.append(c)
        return c

    yield start
    for c in started:
        c.stop()
    for c in started:
        assert SECRET_KEY not in c.log_path.read_text(errors="replace"), "API key in logs"


def target_deployment(replicas: int = 4) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "bot", "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "bot"}},
            "template": {
                "metadata": {"labels": {"app": "bot"}},
                "spec": {"containers": [{"name": "app", "image": "bot:1", "env": [
                    {"name": "MODEL_NAME", "value": "old-model"}]}]},
            },
        },
    }


def rule_manifest(judge_url: str, **analysis: Any) -> dict[str, Any]:
    base_analysis: dict[str, Any] = {
        "interval": "1m", "minSamplesPerCohort": 60, "maxDuration": "1h",
        "guards": [
            {"name": "success", "metric": "taskSuccess", "tolerance": -0.1},
            {"name": "fallback", "metric": "fallbackRate", "tolerance": 0.1,
             "groupBy": ["queue"]},
        ],
    }
    base_analysis.update(analysis)
    return {
        "apiVersion": "canary.llmops.dev/v1alpha1", "kind": "CanaryRule",
        "metadata": {"name": "bot", "namespace": NS},
        "spec": {
            "targetRef": {"name": "bot"},
            "canary": {"container": "app", "env": [{"name": "MODEL_NAME",
                                                     "value": "new-model"}]},
            "steps": [{"weight": 25}, {"weight": 50}],
            "analysis": base_analysis,
            "judge": {"model": "judge-model", "baseUrl": judge_url,
                      "apiKeySecretRef": {"name": "judge-key", "key": "api-key"},
                      "samplesPerInterval": 1000, "concurrency": 16},
        },
    }


def records(n: int, *, canary_verdict: str = "fully,mostly", start: int = 0,
            prefix: str = "s", baseline_per_canary: int = 1) -> list[dict[str, Any]]:
    """``n`` canary samples and ``baseline_per_canary`` baseline samples for each: traffic
    splits as the pods do (a 25% canary sees one request in four)."""
    out = []
    now = time.time()
    for i in range(start, start + n):
        cohorts = [("canary", f"{prefix}-canary-{i}")] + [
            ("baseline", f"{prefix}-baseline-{i}" + (f"-{j}" if j else ""))
            for j in range(baseline_per_canary)]
        for cohort, sid in cohorts:
            verdict = canary_verdict if cohort == "canary" else "fully,mostly"
            out.append({
                "id": sid, "rule": "bot", "cohort": cohort,
                "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 5)),
                "queue": ("billing", "general")[i % 2],
                "input": f"question {i}", "output": f"answer {i} [[judge: {verdict}]]",
                "latency_ms": 100, "cost_usd": 0.001, "fallback": False,
            })
    return out


def status_of(kube: Kube) -> dict[str, Any]:
    return rules.get_rule(kube, NS, "bot").get("status") or {}


def wait_for(what: str, check: Callable[[], bool], c: Controller | None = None,
             timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            logs = c.logs()[-4000:] if c else ""
            raise AssertionError(f"timed out waiting for {what}\n{logs}")
        time.sleep(0.2)


def phase(kube: Kube) -> str | None:
    return status_of(kube).get("phase")


def feed_until_promoted(c: Controller, kube: Kube, n: int = 150, *, start: int = 0,
                        timeout: float = 60.0) -> int:
    """Post a batch at every step until the rollout succeeds (a step advances only on
    evidence gathered at its own weight); returns how many per cohort were posted."""
    deadline = time.monotonic() + timeout
    posted, step = 0, None
    while phase(kube) != "Succeeded":
        current = status_of(kube).get("currentStep", 0)
        if current != step and phase(kube) == "Progressing":
            weight = max(1, int(status_of(kube).get("weight") or 50))
            per = max(1, round((100 - weight) / weight))
            assert c.post_samples(records(n, start=start + posted,
                                          baseline_per_canary=per)).status_code == 200
            posted, step = posted + n, current
        if time.monotonic() > deadline:
            st = status_of(kube)
            raise AssertionError(f"timed out waiting for promotion: {st.get('message')}\n"
                                 f"{c.logs()[-4000:]}")
        time.sleep(0.2)
    return posted


def deployment(kube: Kube, name: str) -> dict[str, Any]:
    return deps_api.get_deployment(kube, NS, name)


def replicas(kube: Kube, name: str) -> int | None:
    try:
        return int(deployment(kube, name)["spec"]["replicas"])
    except NotFound:
        return None


def env_of(dep: dict[str, Any]) -> dict[str, str]:
    container = dep["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def setup(kube: Kube, judge: ScriptedJudge, **analysis: Any) -> None:
    kube.request("POST", f"/apis/apps/v1/namespaces/{NS}/deployments",
                 body=target_deployment())
    rules.apply_rule(kube, rule_manifest(judge.base_url, **analysis))


def test_healthy_canary_is_promoted_step_by_step(
    kube: Kube, judge: ScriptedJudge, controllers: Callable[..., Controller]
) -> None:
    setup(kube, judge)
    c = controllers()
    wait_for("canary at step 1", lambda: phase(kube) == "Progressing", c)
    wait_for("canary pods", lambda: replicas(kube, "bot-canary") == 1, c)
    canary = deployment(kube, "bot-canary")
    assert deployment(kube, "bot")["spec"]["replicas"] == 3  # 25% of 4 pods
    labels = canary["spec"]["template"]["metadata"]["labels"]
    assert labels["app"] == "bot" and labels["canary.llmops.dev/cohort"] == "canary"
    assert env_of(canary)["CANARY_COHORT"] == "canary"
    assert env_of(canary)["MODEL_NAME"] == "new-model"
    assert canary["metadata"]["ownerReferences"][0]["kind"] == "CanaryRule"

    feed_until_promoted(c, kube)
    target = deployment(kube, "bot")
    assert env_of(target)["MODEL_NAME"] == "new-model"
    assert "CANARY_COHORT" not in env_of(target)
    assert target["spec"]["replicas"] == 4
    wait_for("canary scaled to zero", lambda: replicas(kube, "bot-canary") == 0, c, timeout=10)
    st = status_of(kube)
    actions = [h["action"] for h in st["history"]]
    assert actions[0] == "start" and "advance" in actions
    assert actions.count("promote") == 1 and actions[-1] == "promoted"
    guards = {g["name"]: g for g in st["guards"] if not g.get("queue")}
    assert guards["success"]["outcome"] == "pass"
    assert guards["success"]["nCanary"] >= 60
    reasons = {e["reason"] for e in events.list_events(kube, NS, "bot")}
    assert {"RolloutStarted", "StepAdvanced", "Promoting", "Promoted"} <= reasons
    assert judge.calls > 0


def test_regression_is_rolled_back_and_the_target_untouched(
    kube: Kube, judge: ScriptedJudge, controllers: Callable[..., Controller]
) -> None:
    setup(kube, judge)
    c = controllers()
    wait_for("progressing", lambda: phase(kube) == "Progressing", c)
    c.post_samples(records(150, canary_verdict="none"))
    wait_for("rollback", lambda: phase(kube) == "RolledBack", c)
    assert replicas(kube, "bot-canary") == 0  # RolledBack is observed only after the scale
    target = deployment(kube, "bot")
    assert env_of(target)["MODEL_NAME"] == "old-model" and target["spec"]["replicas"] == 4
    st = status_of(kube)
    rollback = next(h for h in st["history"] if h["action"] == "rollback")
    assert "success" in rollback["reason"] and rollback["failingGuards"] == ["success"]
    warnings = [e for e in events.list_events(kube, NS, "bot") if e["type"] == "Warning"]
    assert any(e["reason"] == "RollbackTriggered" for e in warnings)
    # a rolled-back rule does not restart by itself
    time.sleep(2)
    assert phase(kube) == "RolledBack"
    assert deployment(kube, "bot-canary")["spec"]["replicas"] == 0


def test_manual_rollback_is_acted_on_within_one_reconcile(
    kube: Kube, judge: ScriptedJudge, controllers: Callable[..., Controller], emu: EmulatorHandle
) -> None:
    setup(kube, judge)
    c = controllers()
    wait_for("progressing", lambda: phase(kube) == "Progressing", c)
    cli = subprocess.run(
        [sys.executable, "-m", "controller.cli", "rollback", "bot", "--reason", "pager went off",
         "--kubeconfig", emu.kubeconfig], capture_output=True, text=True, timeout=30,
    )
    assert cli.returncode == 0, cli.stderr
    started = time.monotonic()
    wait_for("manual rollback", lambda: phase(kube) == "RolledBack", c, timeout=10)
    assert time.monotonic() - started < 10
    rec = next(h for h in status_of(kube)["history"] if h["action"] == "rollback")
    assert rec["manual"] is True and "pager went off" in rec["reason"]
    # the same request again is refused with a clear line (nothing left to roll back)
    again = subprocess.run(
        [sys.executable, "-m", "controller.cli", "rollback", "bot", "--kubeconfig",
         emu.kubeconfig], capture_output=True, text=True, timeout=30,
    )
    assert again.returncode == 8 and "cannot rollback in phase RolledBack" in again.stderr
    assert "Traceback" not in again.stderr


def test_restart_mid_rollout_resumes_without_double_acting(
    kube: Kube, judge: ScriptedJudge, controllers: Callable[..., Controller], emu: EmulatorHandle
) -> None:
    setup(kube, judge, minSamplesPerCohort=150)
    first = controllers(name="first")
    wait_for("progressing", lambda: phase(kube) == "Progressing", first)
    first.post_samples(records(80, baseline_per_canary=3))
    wait_for("samples counted", lambda: any(
        g.get("nCanary", 0) >= 80 for g in status_of(kube).get("guards", [])), first)
    first.kill()
    history_before = status_of(kube)["history"]
    # the second controller shares the store file (a volume surviving the pod)
    second = controllers(name="first")
    mark = emu.mark()
    time.sleep(2)
    writes = [r for r in emu.requests(mark, writes=True) if "/deployments" in r["path"]]
    assert writes == [], "a converged rollout must not be re-applied after a restart"
    second.post_samples(records(80, start=80, baseline_per_canary=3))
    wait_for("step 2", lambda: status_of(kube).get("currentStep") == 1, second)
    more = feed_until_promoted(second, kube, 40, start=160)
    st = status_of(kube)
    def decisions(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [h for h in history if h["action"] != "hold"]  # holds collapse into one

    assert decisions(st["history"])[:len(decisions(history_before))] == \
        decisions(history_before)
    assert [h["action"] for h in st["history"]].count("start") == 1
    assert [h["action"] for h in st["history"]].count("promote") == 1
    success = next(g for g in st["guards"] if g["name"] == "success")
    assert success["nCanary"] == 160 + more  # nothing counted twice, nothing lost


def test_prometheus_outage_holds_then_pauses_and_never_promotes(
    kube: Kube, judge: ScriptedJudge, controllers: Callable[..., Controller]
) -> None:
    manifest = rule_manifest(judge.base_url, errorLimit=3, onErrorLimit="pause")
    manifest["spec"]["analysis"]["guards"].append(
        {"name": "http-errors", "metric": "prometheus", "query": "errors", "tolerance": 0.01})
    manifest["spec"]["metrics"] = {
        "prometheusUrl": "http://127.0.0.1:9", "timeoutSeconds": 1,
        "queries": [{"name": "errors", "events": 'sum(errors{cohort="${cohort}"})',
                     "total": 'sum(requests{cohort="${cohort}"})'}]}
    kube.request("POST", f"/apis/apps/v1/namespaces/{NS}/deployments",
                 body=target_deployment())
    rules.apply_rule(kube, manifest)
    c = controllers()
    wait_for("progressing", lambda: phase(kube) == "Progressing", c)
    c.post_samples(records(150, baseline_per_canary=3))
    wait_for("paused", lambda: phase(kube) == "Paused", c)
    st = status_of(kube)
    assert "promote" not in [h["action"] for h in st["history"]]
    prom = next(g for g in st["guards"] if g["name"] == "http-errors")
    assert prom["outcome"] == "error" and "prometheus" in prom["reason"]
    assert env_of(deployment(kube, "bot"))["MODEL_NAME"] == "old-model"


def test_only_the_leader_acts_and_a_new_leader_takes_over(
    kube: Kube, judge: ScriptedJudge, controllers: Callable[..., Controller]
) -> None:
    setup(kube, judge)
    lease = ["--leader-elect", "--lease-seconds", "3", "--renew-seconds", "2",
             "--retry-seconds", "0.5", "--lease-namespace", NS]
    a = controllers(name="a", extra=lease)
    wait_for("a leads", lambda: phase(kube) == "Progressing", a)
    b = controllers(name="b", extra=lease)
    # both are Ready (a standby must be, or rolling upgrades deadlock); only a stores
    assert httpx.get(a.url + "/readyz").json() == {"status": "ok", "leader": True}
    assert httpx.get(b.url + "/readyz").json() == {"status": "ok", "leader": False}
    refused = httpx.post(b.url + "/v1/samples", content=json.dumps(records(1)))
    assert refused.status_code == 503 and "Retry-After" in refused.headers
    a.kill()
    wait_for("b leads", lambda: httpx.get(b.url + "/readyz").json()["leader"] is True, b,
             timeout=20)
    feed_until_promoted(b, kube)
    assert [h["action"] for h in status_of(kube)["history"]].count("start") == 1
