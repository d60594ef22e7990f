"""``canaryctl demo``: the whole loop on one machine, no cluster.

What runs, all on 127.0.0.1, started with the playground's building blocks
(:mod:`.stack`, the same as ``canaryctl playground up``) and stopped when the scenario ends:

- the Kubernetes API emulator (:mod:`.kube`, a separate process) holding a
  ``demo-assistant`` Deployment, a judge-key Secret and a CanaryRule;
- the real controller (``python -m controller``, a separate process) with analysis every
  second instead of every minute;
- the scripted OpenAI-compatible judge (:mod:`.scripted_judge`, a process): verdicts come
  from markers the traffic generator writes into each answer, through the real ``openai``
  client path;
- a real Prometheus scraping a small exporter, when ``prometheus`` is installed (the rule
  then also guards an error rate read through PromQL); otherwise samples only, said so;
- synthetic traffic from both cohorts, posted to the controller's ``/v1/samples`` in the
  proportion of the current canary weight.

Scenarios: ``healthy`` (promotes), ``regression`` (the canary's task success drops:
rolls back), ``fallback-spike`` (the canary falls back far more often in the small
``refunds`` queue while the overall rate looks normal: rolls back on that queue).
"""

from __future__ import annotations

import json
import random
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from controller.actuator import rules
from controller.actuator.client import Kube, connect
from controller.actuator.errors import KubeError
from controller.conventions import INGEST_AUDIENCE, JUDGE_KEY_LABEL
from controller.models import CanaryRuleStatus, Phase

from .exporter import Exporter
from .prometheus_server import prometheus_binary, wait_for_scrape
from .stack import (
    ControllerOptions,
    Stack,
    start_controller,
    start_emulator,
    start_judge,
    start_prometheus,
)

SCENARIOS = ("healthy", "regression", "fallback-spike")
NAME = "demo-assistant"
NS = "default"
QUEUES = {"general": 0.6, "billing": 0.3, "refunds": 0.1}
DEMO_KEY = "sk-demo-local-judge"


@dataclass
class Behaviour:
    """How one cohort behaves in a scenario."""

    success: float = 0.92
    fallback: dict[str, float] | None = None
    error_rate: float = 0.01

    def fallback_in(self, queue: str) -> float:
        return (self.fallback or {}).get(queue, 0.03)


def behaviours(scenario: str) -> dict[str, Behaviour]:
    canary = Behaviour()
    if scenario == "regression":
        canary = Behaviour(success=0.62)
    elif scenario == "fallback-spike":
        canary = Behaviour(fallback={"refunds": 0.45})
    elif scenario != "healthy":
        raise ValueError(f"unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}")
    return {"baseline": Behaviour(), "canary": canary}


def rule_manifest(judge_url: str, prometheus_url: str | None) -> dict[str, Any]:
    guards: list[dict[str, Any]] = [
        {"name": "task-success", "metric": "taskSuccess", "tolerance": -0.05},
        {"name": "fallback", "metric": "fallbackRate", "tolerance": 0.05,
         "groupBy": ["queue"]},
        {"name": "latency", "metric": "latency", "tolerance": 0.2, "relative": True},
    ]
    spec: dict[str, Any] = {
        "targetRef": {"name": NAME},
        "canary": {"container": "assistant", "env": [
            {"name": "MODEL_NAME", "value": "assistant-v2"}]},
        "steps": [{"weight": 20}, {"weight": 50}],
        "analysis": {"interval": "1m", "minSamplesPerCohort": 150, "maxDuration": "1h",
                     "alpha": 0.05, "guards": guards},
        "judge": {"model": "demo-judge", "baseUrl": judge_url,
                  "apiKeySecretRef": {"name": "judge-key", "key": "api-key"},
                  "samplesPerInterval": 400, "concurrency": 16},
    }
    if prometheus_url:
        guards.append({"name": "http-errors", "metric": "prometheus", "query": "errors",
                       "tolerance": 0.03})
        spec["metrics"] = {"prometheusUrl": prometheus_url, "timeoutSeconds": 2, "queries": [{
            "name": "errors",
            "events": 'sum(increase(llm_policy_violations_total{cohort="${cohort}"}'
                      '[${interval}]))',
            "total": 'sum(increase(llm_requests_total{cohort="${cohort}"}[${interval}]))',
        }]}
    return {"apiVersion": "canary.llmops.dev/v1alpha1", "kind": "CanaryRule",
            "metadata": {"name": NAME, "namespace": NS}, "spec": spec}


def target_deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": NS},
        "spec": {
            "replicas": 10,
            "selector": {"matchLabels": {"app": NAME}},
            "template": {"metadata": {"labels": {"app": NAME}}, "spec": {"containers": [{
                "name": "assistant", "image": "registry.example.com/assistant:1.0",
                "env": [{"name": "MODEL_NAME", "value": "assistant-v1"}]}]}},
        },
    }


class Traffic:
    """Posts samples from both cohorts in proportion to the canary's share of available
    pods (what a Service in front of both Deployments does), and counts requests in the
    exporter; stops by itself at ``stop`` or after ten minutes."""

    def __init__(self, url: str, scenario: str, share: Callable[[], float],
                 exporter: Exporter | None, seed: int = 7, rate: int = 160,
                 revision: Callable[[], str | None] = lambda: None,
                 token: str | None = None) -> None:
        self.url, self.share, self.exporter = url, share, exporter
        self.revision = revision  # what a canary pod reads from CANARY_REVISION
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.behaviour = behaviours(scenario)
        self.rng = random.Random(seed)
        self.rate = rate  # samples per second over both cohorts
        self.stop = threading.Event()
        self.sent = 0
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self.stop.set()
        self._thread.join(5)

    def _record(self, i: int, cohort: str) -> dict[str, Any]:
        b = self.behaviour[cohort]
        queue = self.rng.choices(list(QUEUES), weights=list(QUEUES.values()))[0]
        ok = self.rng.random() < b.success
        verdict = "fully,mostly" if ok else "partially,none"
        fallback = self.rng.random() < b.fallback_in(queue)
        if self.exporter is not None:
            self.exporter.record(cohort, queue, requests=1,
                                 violations=int(self.rng.random() < b.error_rate))
        record: dict[str, Any] = {
            "id": f"demo-{cohort}-{i}", "rule": NAME, "cohort": cohort,
            "ts": datetime.now(UTC).isoformat(), "queue": queue,
            "input": f"customer question {i} about {queue}",
            "output": f"assistant answer {i} [[judge: {verdict}]]",
            "latency_ms": round(self.rng.lognormvariate(6.9, 0.3), 1),
            "cost_usd": 0.002, "fallback": fallback,
        }
        revision = self.revision() if cohort == "canary" else None
        if revision:
            record["revision"] = revision
        return record

    def _run(self) -> None:
        i = 0
        deadline = time.monotonic() + 600
        while not self.stop.is_set() and time.monotonic() < deadline:
            share = self.share()
            # the judge samples both cohorts equally; traffic follows the pods
            batch = []
            for _ in range(max(2, self.rate // 4)):
                cohort = "canary" if self.rng.random() < share else "baseline"
                batch.append(self._record(i, cohort))
                i += 1
            try:
                httpx.post(self.url + "/v1/samples", content=json.dumps(batch), timeout=5,
                           headers=self.headers)
                self.sent += len(batch)
            except httpx.HTTPError:
                pass
            self.stop.wait(0.25)


def _available(kube: Kube, name: str) -> int:
    try:
        dep = kube.request("GET", f"/apis/apps/v1/namespaces/{NS}/deployments/{name}")
    except KubeError:
        return 0
    return int((dep.get("status") or {}).get("availableReplicas") or 0)


def _canary_share(kube: Kube) -> float:
    """The canary's share of available pods: its share of the Service's traffic."""
    canary, target = _available(kube, f"{NAME}-canary"), _available(kube, NAME)
    return canary / (canary + target) if canary + target else 0.0


@dataclass
class DemoResult:
    phase: Phase
    status: dict[str, Any]
    prometheus: bool
    samples_sent: int
    seconds: float
    """Wall time in all, start-up (emulator, judge, Prometheus, controller) included."""
    rollout_seconds: float
    """From the rule's apply to the end: what ``timeout`` limits."""


def run_demo(scenario: str, *, on_update: Callable[[dict[str, Any]], None] | None = None,
             timeout: float = 120.0, keep: Path | None = None,
             say: Callable[[str], None] = print) -> DemoResult:
    """Run one scenario to a terminal phase (or ``timeout`` seconds after the rule is
    applied: start-up is not counted); everything is stopped after."""
    behaviours(scenario)  # validate early
    started = time.monotonic()
    with ExitStack() as cleanup:
        workdir = keep or Path(cleanup.enter_context(tempfile.TemporaryDirectory(
            prefix="llm-canary-demo-")))
        procs = Stack(workdir)  # attached: stopped when the scenario ends
        cleanup.callback(procs.stop_all)
        say("starting the Kubernetes API emulator ...")
        emu = start_emulator(procs, readiness_delay=0.2)
        judge_url = start_judge(procs, DEMO_KEY)
        exporter: Exporter | None = None
        prom_url: str | None = None
        if prometheus_binary() is not None:
            exporter = Exporter()
            exporter.start()
            cleanup.callback(exporter.stop)
            for cohort in ("baseline", "canary"):
                for queue in QUEUES:
                    exporter.touch(cohort, queue)
            say("starting Prometheus (scraping the demo's exporter every second) ...")
            prom_url = start_prometheus(procs, [exporter.target])
            if prom_url is not None:
                wait_for_scrape(prom_url)
        else:
            say("prometheus is not installed: guards use samples only "
                "(apt-get install prometheus to add a PromQL guard)")
        kube = connect(emu.kubeconfig)
        cleanup.callback(kube.close)
        kube.request("POST", f"/api/v1/namespaces/{NS}/secrets", body={
            "apiVersion": "v1", "kind": "Secret", "metadata": {
                "name": "judge-key", "labels": {JUDGE_KEY_LABEL: "true"}},
            "stringData": {"api-key": DEMO_KEY}})
        kube.request("POST", f"/apis/apps/v1/namespaces/{NS}/deployments",
                     body=target_deployment())
        say("starting the controller and applying the CanaryRule ...")
        url = start_controller(procs, ControllerOptions(
            kubeconfig=emu.kubeconfig, store=str(workdir / "samples.db"),
            analysis_interval="1s", resync=5, judge_base_url=judge_url))
        rules.apply_rule(kube, rule_manifest(judge_url, prom_url))
        # the traffic reports as the target's pods would: their ServiceAccount's token
        token = emu.issue_token(f"{NS}/default", audiences=[INGEST_AUDIENCE])

        current: dict[str, Any] = {}
        pods = {"share": 0.0}

        def revision() -> str | None:
            return (current.get("status") or {}).get("canaryRevision")

        traffic = Traffic(url, scenario, lambda: pods["share"], exporter, revision=revision,
                          token=token)
        traffic.start()
        cleanup.callback(traffic.join)
        rollout_started = time.monotonic()
        deadline = rollout_started + timeout
        while True:
            current = rules.get_rule(kube, NS, NAME)
            pods["share"] = _canary_share(kube)
            if on_update is not None:
                on_update(current)
            phase = _phase(current)
            if phase.terminal or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        traffic.join()
        # let the controller finish converging (the canary scaled to zero)
        time.sleep(1.0)
        current = rules.get_rule(kube, NS, NAME)
        ended = time.monotonic()
        return DemoResult(_phase(current), current.get("status") or {}, prom_url is not None,
                          traffic.sent, ended - started, ended - rollout_started)


def _phase(obj: dict[str, Any]) -> Phase:
    try:
        return CanaryRuleStatus.model_validate(obj.get("status") or {}).phase
    except ValueError:
        return Phase.PENDING


def summary(result: DemoResult) -> dict[str, Any]:
    st = result.status
    return {
        "phase": result.phase.value,
        "seconds": round(result.seconds, 1),
        "prometheus": result.prometheus,
        "samplesSent": result.samples_sent,
        "history": st.get("history", []),
        "guards": st.get("guards", []),
        "message": st.get("message", ""),
    }
