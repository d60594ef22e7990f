"""What the end-to-end scenarios share: the objects a scenario starts from, samples as an
application posts them, and waiting for conditions. The controller process is
:class:`tests.support.controller.Controller`, run under the Helm chart's RBAC (the emulator
enforces the chart's rendered ClusterRole and lease Role for its ServiceAccount), so a call
the chart does not grant fails the scenario with a 403.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from canary_playground.kube import EmulatorHandle

from controller.actuator import deployments as deps_api
from controller.actuator import events, rules
from controller.actuator.client import Kube
from controller.actuator.errors import NotFound
from controller.conventions import REVISION_LABEL
from tests.support import waiting
from tests.support.controller import Controller

NS = "default"
SECRET_KEY = "sk-test-do-not-log-7f3a9c"


# --------------------------------------------------------------------------- objects


def target_deployment(replicas: int = 4, image: str = "bot:1", name: str = "bot",
                      **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image, "env": [
                    {"name": "MODEL_NAME", "value": "old-model"}]}]},
            },
            **spec,
        },
    }


def rule_manifest(judge_url: str, *, name: str = "bot", target: str = "bot",
                  canary: dict[str, Any] | None = None,
                  steps: list[dict[str, Any]] | None = None,
                  judge: dict[str, Any] | None = None, **analysis: Any) -> dict[str, Any]:
    base_analysis: dict[str, Any] = {
        "interval": "1m", "minSamplesPerCohort": 60, "maxDuration": "1h", "settle": "1s",
        "guards": [
            {"name": "success", "metric": "taskSuccess", "tolerance": -0.1},
            {"name": "fallback", "metric": "fallbackRate", "tolerance": 0.1,
             "groupBy": ["queue"]},
        ],
    }
    spec_extra = {k: analysis.pop(k) for k in list(analysis)
                  if k in ("bake", "progressDeadlineSeconds", "onProgressDeadline",
                           "promotionDeadlineSeconds", "onTargetChange")}
    base_analysis.update(analysis)
    return {
        "apiVersion": "canary.llmops.dev/v1alpha1", "kind": "CanaryRule",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "targetRef": {"name": target},
            "canary": canary or {"container": "app", "env": [{"name": "MODEL_NAME",
                                                              "value": "new-model"}]},
            "steps": steps or [{"weight": 25}, {"weight": 50}],
            "analysis": base_analysis,
            "judge": {"model": "judge-model", "baseUrl": judge_url,
                      "apiKeySecretRef": {"name": "judge-key", "key": "api-key"},
                      "samplesPerInterval": 1000, "concurrency": 16, **(judge or {})},
            **spec_extra,
        },
    }


def setup(kube: Kube, judge_url: str, *, replicas: int = 4, image: str = "bot:1",
          **rule: Any) -> None:
    kube.request("POST", f"/apis/apps/v1/namespaces/{NS}/deployments",
                 body=target_deployment(replicas, image))
    rules.apply_rule(kube, rule_manifest(judge_url, **rule))


def records(n: int, *, canary_verdict: str = "fully,mostly", start: int = 0,
            prefix: str = "s", revision: str | None = None, cohorts: tuple[str, ...] = (
                "baseline", "canary"), rule: str = "bot", share: float = 0.5
            ) -> list[dict[str, Any]]:
    """``n`` canary samples and, for a canary ``share`` of the traffic, as many baseline
    samples as the target's pods serve meanwhile (``n`` at 50%, ``3n`` at 25%), as an
    application posts them; a canary sample names its revision when ``revision`` is given,
    as the SDK does from ``CANARY_REVISION``."""
    out = []
    now = time.time()
    per_cohort = {"canary": n, "baseline": round(n * (1 - share) / share)}
    for cohort in cohorts:
        for i in range(start, start + per_cohort[cohort]):
            verdict = canary_verdict if cohort == "canary" else "fully,mostly"
            record: dict[str, Any] = {
                "id": f"{prefix}-{cohort}-{i}", "rule": rule, "cohort": cohort,
                "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 1)),
                "queue": ("billing", "general")[i % 2],
                "input": f"question {i}", "output": f"answer {i} [[judge: {verdict}]]",
                "latency_ms": 100, "cost_usd": 0.001, "fallback": False,
            }
            if revision is not None and cohort == "canary":
                record["revision"] = revision
            out.append(record)
    return out


# --------------------------------------------------------------------------- reading


def status_of(kube: Kube, name: str = "bot") -> dict[str, Any]:
    try:
        return rules.get_rule(kube, NS, name).get("status") or {}
    except NotFound:
        return {}


def phase(kube: Kube, name: str = "bot") -> str | None:
    return status_of(kube, name).get("phase")


def condition(kube: Kube, kind: str, name: str = "bot") -> dict[str, Any]:
    return next((c for c in status_of(kube, name).get("conditions") or []
                 if c["type"] == kind), {})


def deployment(kube: Kube, name: str) -> dict[str, Any]:
    return deps_api.get_deployment(kube, NS, name)


def replicas(kube: Kube, name: str) -> int | None:
    try:
        return int(deployment(kube, name)["spec"]["replicas"])
    except NotFound:
        return None


def available(kube: Kube, name: str) -> int:
    try:
        return int((deployment(kube, name).get("status") or {}).get("availableReplicas") or 0)
    except NotFound:
        return 0


def canary_revision(kube: Kube, name: str = "bot-canary") -> str | None:
    try:
        labels = deployment(kube, name)["spec"]["template"]["metadata"]["labels"]
    except NotFound:
        return None
    return labels.get(REVISION_LABEL)


def env_of(dep: dict[str, Any]) -> dict[str, str]:
    container = dep["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def event_reasons(kube: Kube, name: str = "bot") -> list[str]:
    return [e["reason"] for e in events.list_events(kube, NS, name)]


def actions(kube: Kube, name: str = "bot") -> list[str]:
    return [h["action"] for h in status_of(kube, name).get("history") or []]


def wait_for(what: str, check: Callable[[], Any], c: Controller | None = None,
             timeout: float = 40.0, every: float = 0.1) -> Any:
    """Until ``check()`` holds; a timeout shows the controller's log."""
    return waiting.wait_for(check, timeout, what, every=every,
                            logs=c.logs if c is not None else None)


def step_reached(kube: Kube, step: int, c: Controller | None = None,
                 timeout: float = 40.0) -> None:
    """Until step ``step`` (0-based) has all its pods available: a step's own evidence
    counts from then (samples stamped earlier belong to the step before)."""
    wait_for(f"step {step + 1} reached", lambda: (st := status_of(kube)).get(
        "currentStep") == step and st.get("stepReadyAt"), c, timeout)


def ready_pods(emu: EmulatorHandle, selector: str) -> int:
    """Ready pods matching ``selector`` in NS, read from the emulator's pods."""
    pods = emu.api("GET", f"/api/v1/namespaces/{NS}/pods?labelSelector={quote(selector)}")
    ready = 0
    for pod in pods.get("items") or []:
        conds = {c["type"]: c["status"] for c in (pod.get("status") or {}).get("conditions")
                 or []}
        if conds.get("Ready") == "True" and not pod["metadata"].get("deletionTimestamp"):
            ready += 1
    return ready
