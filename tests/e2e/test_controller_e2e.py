"""The controller as its own process against the Kubernetes API emulator (official client,
HTTP on 127.0.0.1, the chart's RBAC enforced), the local OpenAI-compatible judge, and
samples posted to its ingestion API. Each scenario asserts on Deployments, status and
events. Analysis runs every second (``--analysis-interval 1s``) so a rollout takes seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
from canary_playground.kube import EmulatorHandle
from canary_playground.scripted_judge import ScriptedJudge

from controller.actuator import rules
from controller.actuator.client import Kube

from .harness import (
    NS,
    Controller,
    actions,
    canary_revision,
    deployment,
    env_of,
    event_reasons,
    phase,
    records,
    replicas,
    rule_manifest,
    setup,
    status_of,
    step_reached,
    target_deployment,
    wait_for,
)


def test_healthy_canary_is_promoted_step_by_step(
    kube: Kube, judge: ScriptedJudge, controllers: Callable[..., Controller]
) -> None:
    setup(kube, judge.base_url)
    c = controllers()
    wait_for("canary at step 1", lambda: status_of(kube).get("stepReadyAt"), c)
    canary = deployment(kube, "bot-canary")
    assert replicas(kube, "bot-canary") == 1 and replicas(kube, "bot") == 3  # 25% of 4 pods
    labels = canary["spec"]["template"]["metadata"]["labels"]
    assert labels["app"] == "bot" and labels["canary.llmops.dev/cohort"] == "canary"
    revision = labels["canary.llmops.dev/revision"]
    assert env_of(canary)["CANARY_COHORT"] == "canary"
    assert env_of(canary)["CANARY_REVISION"] == revision == status_of(kube)["canaryRevision"]
    assert env_of(canary)["MODEL_NAME"] == "new-model"
    assert canary["metadata"]["ownerReferences"][0]["kind"] == "CanaryRule"
    assert "canary.llmops.dev/rollout" in rules.get_rule(kube, NS, "bot")["metadata"][
        "finalizers"]

    # the traffic at 25%: three baseline samples for each canary one
    assert c.post_samples(records(150, revision=revision, share=0.25)).status_code == 200
    step_reached(kube, 1, c)
    # per-step evidence: the second step gathers its own samples before promoting
    c.post_samples(records(150, prefix="step2", revision=revision))
    wait_for("promotion", lambda: phase(kube) == "Succeeded", c)
    target = deployment(kube, "bot")
    assert env_of(target)["MODEL_NAME"] == "new-model"
    assert "CANARY_COHORT" not in env_of(target)
    assert env_of(target)["CANARY_REVISION"] == revision  # the promoted pods name it
    assert target["spec"]["replicas"] == 4
    wait_for("canary scaled to zero", lambda: replicas(kube, "bot-canary") == 0, c)
    wait_for("finalizer released", lambda: not rules.get_rule(kube, NS, "bot")["metadata"].get(
        "finalizers"), c)
    st = status_of(kube)
    done = actions(kube)
    assert done[0] == "start" and "advance" in done
    assert done.count("promote") == 1 and done[-1] == "promoted"
    guards = {g["name"]: g for g in st["guards"] if not g.get("queue")}
    assert guards["success"]["outcome"] == "pass"
    assert guards["success"]["nCanary"] >= 60
    assert {"RolloutStarted", "StepAdvanced", "Promoting", "Promoted"} <= set(event_reasons(kube))
    assert judge.calls > 0


def test_regression_is_rolled_back_and_the_target_untouched(
    kube: Kube, judge: ScriptedJudge, controllers: Callable[..., Controller]
) -> None:
    setup(kube, judge.base_url)
    c = controllers()
    revision = wait_for("canary", lambda: canary_revision(kube), c)
    wait_for("analysable", lambda: status_of(kube).get("canaryReadyAt"), c)
    c.post_samples(records(150, canary_verdict="none", revision=revision))
    wait_for("rollback", lambda: phase(kube) == "RolledBack", c)
    assert replicas(kube, "bot-canary") == 0  # RolledBack is observed only after the scale
    target = deployment(kube, "bot")
    assert env_of(target)["MODEL_NAME"] == "old-model" and target["spec"]["replicas"] == 4
    st = status_of(kube)
    rollback = next(h for h in st["history"] if h["action"] == "rollback")
    assert "success" in rollback["reason"] and rollback["failingGuards"] == ["success"]
    assert "RollbackTriggered" in event_reasons(kube)
    time.sleep(2)  # a rolled-back rule does not restart by itself
    assert phase(kube) == "RolledBack"
    assert deployment(kube, "bot-canary")["spec"]["replicas"] == 0


def test_manual_rollback_is_acted_on_within_one_reconcile(
    kube: Kube, judge: ScriptedJudge, controllers: Callable[..., Controller], emu: EmulatorHandle
) -> None:
    setup(kube, judge.base_url)
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
    # rollback of a rolled-back rule is refused with a clear line (nothing left to roll back)
    again = subprocess.run(
        [sys.executable, "-m", "controller.cli", "rollback", "bot", "--kubeconfig",
         emu.kubeconfig], capture_output=True, text=True, timeout=30,
    )
    assert again.returncode == 8 and "cannot rollback in phase RolledBack" in again.stderr
    assert "Traceback" not in again.stderr


def test_restart_mid_rollout_resumes_without_double_acting(
    kube: Kube, judge: ScriptedJudge, controllers: Callable[..., Controller], emu: EmulatorHandle
) -> None:
    setup(kube, judge.base_url, minSamplesPerCohort=150, steps=[{"weight": 50}])
    first = controllers(name="first")
    revision = wait_for("canary", lambda: canary_revision(kube), first)
    wait_for("analysable", lambda: status_of(kube).get("stepReadyAt"), first)
    first.post_samples(records(80, revision=revision))
    wait_for("samples counted", lambda: any(
        g.get("nCanary", 0) >= 80 for g in status_of(kube).get("guards", [])), first)
    first.kill()
    history_before = status_of(kube)["history"]
    # the second controller shares the store file (a volume surviving the pod)
    second = controllers(name="first")
    mark = emu.mark()
    time.sleep(2)
    writes = [r for r in emu.requests(mark, writes=True) if "/deployments" in r["path"]
              and r.get("user", "").startswith("system:serviceaccount:")]
    assert writes == [], "a converged rollout must not be re-applied after a restart"
    second.post_samples(records(80, start=80, revision=revision))
    wait_for("promotion", lambda: phase(kube) == "Succeeded", second)
    st = status_of(kube)

    def decisions(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [h for h in history if h["action"] != "hold"]  # holds collapse into one

    assert decisions(st["history"])[:len(decisions(history_before))] == \
        decisions(history_before)
    assert actions(kube).count("start") == 1 and actions(kube).count("promote") == 1
    success = next(g for g in st["guards"] if g["name"] == "success")
    assert success["nCanary"] == 160  # nothing counted twice, nothing lost


def test_prometheus_outage_holds_then_pauses_after_error_limit_and_never_promotes(
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
    revision = wait_for("canary", lambda: canary_revision(kube), c)
    c.post_samples(records(150, revision=revision))
    wait_for("paused", lambda: phase(kube) == "Paused", c)
    st = status_of(kube)
    assert "promote" not in actions(kube)
    assert "4 consecutive analyses with errors" in st["message"]  # 3 tolerated, the 4th acts
    assert "errorLimit 3 tolerated" in st["message"]
    prom = next(g for g in st["guards"] if g["name"] == "http-errors")
    assert prom["outcome"] == "error" and "prometheus" in prom["reason"]
    assert env_of(deployment(kube, "bot"))["MODEL_NAME"] == "old-model"


def test_only_the_leader_acts_and_a_new_leader_takes_over(
    kube: Kube, judge: ScriptedJudge, controllers: Callable[..., Controller]
) -> None:
    setup(kube, judge.base_url)
    a = controllers(name="a", leader_elect=True)
    revision = wait_for("a leads", lambda: canary_revision(kube), a)
    b = controllers(name="b", leader_elect=True)
    # both are Ready (a standby must be, or rolling upgrades deadlock); only a stores
    assert httpx.get(a.url + "/readyz").json() == {"status": "ok", "leader": True}
    assert httpx.get(b.url + "/readyz").json() == {"status": "ok", "leader": False}
    refused = httpx.post(b.url + "/v1/samples", content=json.dumps(records(1)))
    assert refused.status_code == 503 and "Retry-After" in refused.headers
    a.kill()
    wait_for("b leads", lambda: b.post_samples(records(150, revision=revision, share=0.25))
             .status_code == 200, b, timeout=30)
    step_reached(kube, 1, b)
    b.post_samples(records(150, prefix="step2", revision=revision))
    wait_for("promotion by b", lambda: phase(kube) == "Succeeded", b)
    assert actions(kube).count("start") == 1
