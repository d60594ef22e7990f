"""``canaryctl playground up|down``: a local llm-canary installation to try things on.

``up`` starts, detached, with pid files and logs in one directory: the Kubernetes API
emulator over TLS with the Helm chart's RBAC enforced, the controller as its
ServiceAccount (leader election in ``llm-canary``, as the chart runs it), the scripted
judge, and Prometheus when installed (scraping the controller). It creates what
``rules/support-assistant.yaml`` expects: the ``support-assistant`` Deployment (10
replicas, container ``assistant``) with its Service and ServiceAccount, and the
``judge-openai`` Secret; then writes ``<dir>/kubeconfig`` (admin) and ``<dir>/env``.
``down`` stops whatever is recorded there.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.conventions import JUDGE_KEY_LABEL

from .kube.chart import load_chart_rbac
from .kube.handle import EmulatorHandle
from .net import free_port
from .stack import (
    ControllerOptions,
    Stack,
    start_controller,
    start_emulator,
    start_judge,
)
from .stack import start_prometheus as start_prom

NS = "default"
APP = "support-assistant"
JUDGE_KEY = "sk-playground-local-judge"
INGEST_AUDIENCE = "llm-canary"
TOKEN_SECONDS = 30 * 24 * 3600.0


@dataclass
class Playground:
    directory: Path
    kubeconfig: str
    controller_url: str
    judge_url: str
    prometheus_url: str | None
    ingest_token: str

    def env(self) -> dict[str, str]:
        out = {"KUBECONFIG": self.kubeconfig, "CANARY_INGEST_URL": self.controller_url,
               "CANARY_INGEST_TOKEN": self.ingest_token, "JUDGE_URL": self.judge_url}
        if self.prometheus_url:
            out["PROMETHEUS_URL"] = self.prometheus_url
        return out

    def env_text(self) -> str:
        return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in self.env().items())


def target_objects(replicas: int = 10) -> list[tuple[str, dict[str, Any]]]:
    """(collection path, body) of what the sample rule needs in ``default``."""
    labels = {"app": APP}
    return [
        (f"/api/v1/namespaces/{NS}/serviceaccounts", {"metadata": {"name": APP}}),
        (f"/api/v1/namespaces/{NS}/secrets", {
            "metadata": {"name": "judge-openai", "labels": {JUDGE_KEY_LABEL: "true"}},
            "stringData": {"api-key": JUDGE_KEY}}),
        (f"/api/v1/namespaces/{NS}/services", {
            "metadata": {"name": APP, "labels": labels},
            "spec": {"selector": labels, "ports": [{"name": "http", "port": 80,
                                                    "targetPort": 8000}]}}),
        (f"/apis/apps/v1/namespaces/{NS}/deployments", {
            "metadata": {"name": APP, "labels": labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {
                         "serviceAccountName": APP,
                         "containers": [{
                             "name": "assistant",
                             "image": "registry.example.com/support-assistant:1.0",
                             "ports": [{"containerPort": 8000}],
                             "env": [{"name": "MODEL_NAME", "value": "gpt-4.1"},
                                     {"name": "PROMPT_VERSION", "value": "2026-10-01"}]}]}}}}),
    ]


def _wait_available(emu: EmulatorHandle, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        dep = emu.api("GET", f"/apis/apps/v1/namespaces/{NS}/deployments/{APP}")
        st, want = dep.get("status") or {}, dep["spec"]["replicas"]
        if st.get("availableReplicas") == want and st.get("updatedReplicas") == want:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the {APP} Deployment did not become available")
        time.sleep(0.1)


def up(directory: Path, *, controller_rbac: str = "chart",
       analysis_interval: str | None = None) -> Playground:
    """Start everything detached; on any failure, stop what was started and raise."""
    stack = Stack(directory, detached=True)
    if stack.running():
        raise RuntimeError(f"a playground already runs in {stack.directory} (stop it with "
                           f"`canaryctl playground down --dir {directory}`)")
    try:
        emu = start_emulator(stack, tls=True, rbac=True)
        identity = load_chart_rbac(emu, stack.directory)
        for path, body in target_objects():
            emu.api("POST", path, body)
        emu.baseline()
        token = emu.issue_token(f"{NS}/{APP}", audiences=[INGEST_AUDIENCE],
                                expiration_seconds=TOKEN_SECONDS)
        judge = start_judge(stack, JUDGE_KEY)
        port = free_port()
        prometheus = start_prom(stack, [f"127.0.0.1:{port}"], scrape_interval="5s")
        kubeconfig = identity.kubeconfig if controller_rbac == "chart" else emu.kubeconfig
        url = start_controller(stack, ControllerOptions(
            kubeconfig=kubeconfig, port=port, judge_base_url=judge,
            prometheus_url=prometheus, leader_elect=True, lease_name=identity.lease_name,
            lease_namespace=identity.namespace, identity="playground-controller",
            analysis_interval=analysis_interval))
        _wait_available(emu)
    except BaseException:
        stack.stop_all()
        raise
    playground = Playground(stack.directory, emu.kubeconfig, url, judge, prometheus, token)
    (stack.directory / "env").write_text(playground.env_text())
    return playground


def down(directory: Path) -> list[str]:
    """Stop every process recorded in ``directory``; the names of those that ran."""
    if not Path(directory).exists():
        return []
    return Stack(directory).stop_all()
