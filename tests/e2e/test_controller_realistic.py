"""The controller process against a realistic cluster started by the playground's stack:
the chart's RBAC enforced, and a canary whose pods never become Ready."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from canary_playground.kube import EmulatorHandle
from canary_playground.scripted_judge import ScriptedJudge
from canary_playground.stack import ControllerOptions, Stack, start_controller, start_emulator

from controller.actuator import rules
from controller.actuator.client import Kube, connect
from controller.actuator.deployments import get_deployment
from controller.actuator.errors import NotFound

NS = "default"
KEY = "sk-realistic"


def target(image: str = "bot:1") -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "bot", "namespace": NS},
            "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "bot"}},
                     "template": {"metadata": {"labels": {"app": "bot"}},
                                  "spec": {"containers": [{"name": "app", "image": image}]}}}}


def rule(judge_url: str, image: str) -> dict[str, Any]:
    return {"apiVersion": "canary.llmops.dev/v1alpha1", "kind": "CanaryRule",
            "metadata": {"name": "bot", "namespace": NS},
            "spec": {"targetRef": {"name": "bot"}, "canary": {"container": "app", "image": image},
                     "steps": [{"weight": 25}, {"weight": 50}],
                     "analysis": {"interval": "1m", "minSamplesPerCohort": 60, "guards": [
                         {"name": "lat", "metric": "latency", "tolerance": 0.5,
                          "relative": True}]},
                     "judge": {"model": "m", "baseUrl": judge_url,
                               "apiKeySecretRef": {"name": "judge-key", "key": "api-key"}}}}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Stack, EmulatorHandle, Kube]]:
    stack = Stack(tmp_path)
    try:
        emu = start_emulator(stack, rbac=True)
        kube = connect(emu.kubeconfig)
        kube.request("POST", f"/api/v1/namespaces/{NS}/secrets", body={
            "metadata": {"name": "judge-key"}, "stringData": {"api-key": KEY}})
        kube.request("POST", f"/apis/apps/v1/namespaces/{NS}/deployments", body=target())
        yield stack, emu, kube
        kube.close()
    finally:
        stack.stop_all()


def test_under_the_charts_rbac_the_controller_creates_its_canary(
        cluster: tuple[Stack, EmulatorHandle, Kube], tmp_path: Path) -> None:
    from canary_playground.kube.chart import load_chart_rbac

    stack, emu, kube = cluster
    me = load_chart_rbac(emu, tmp_path)
    with ScriptedJudge(api_key=KEY) as judge:
        start_controller(stack, ControllerOptions(
            kubeconfig=me.kubeconfig, leader_elect=True, lease_name=me.lease_name,
            lease_namespace=me.namespace, analysis_interval="1s", resync=2))
        rules.apply_rule(kube, rule(judge.base_url, "bot:2"))
        log = stack.log_path("controller")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "Forbidden" not in log.read_text():
            try:
                get_deployment(kube, NS, "bot-canary")
                return
            except NotFound:
                time.sleep(0.2)
        raise AssertionError("no canary Deployment: " + log.read_text()[-600:])


def test_the_target_keeps_its_capacity_until_the_canary_is_available(
        cluster: tuple[Stack, EmulatorHandle, Kube]) -> None:
    stack, _, kube = cluster
    with ScriptedJudge(api_key=KEY) as judge:
        start_controller(stack, ControllerOptions(kubeconfig=str(stack.directory /
                                                                  "kubeconfig"),
                                                  analysis_interval="1s", resync=2))
        rules.apply_rule(kube, rule(judge.base_url, "bot:never-ready"))
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            replicas = get_deployment(kube, NS, "bot")["spec"]["replicas"]
            assert replicas == 4, "the target was shrunk with no canary pod available"
            time.sleep(0.2)
