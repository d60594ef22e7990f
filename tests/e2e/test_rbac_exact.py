"""The chart grants exactly what the controller calls, proved on the wire.

One scenario drives every path of the controller that talks to the API server (leader
election, the judge's Secret, a rollout with promotion, a repeated Event, an HPA lookup,
the finalizer on and off) under the chart's rendered RBAC; the emulator's request log of
the controller's ServiceAccount, as ``(verb, group, resource)``, must equal the chart's
grants. The one grant no request shows - ``update`` on ``canaryrules/finalizers`` - is
what the API server's OwnerReferencesPermissionEnforcement admission checks when the
canary is created with ``blockOwnerDeletion: true``; it is proved needed by taking it away.
"""

from __future__ import annotations

import copy
import re
import urllib.error
from collections.abc import Callable
from typing import Any

import pytest
from canary_playground.kube import EmulatorHandle
from canary_playground.kube.chart import render_chart
from canary_playground.scripted_judge import ScriptedJudge

from controller.actuator import rules
from controller.actuator.client import Kube, connect
from controller.actuator.errors import Forbidden
from controller.conventions import ACTION_ANNOTATION, ACTION_ID_ANNOTATION

from .harness import NS, Controller, canary_revision, phase, records, setup, status_of, wait_for

Grant = tuple[str, str, str]  # (verb, API group, resource[/subresource])

ADMISSION_ONLY = {("update", "canary.llmops.dev", "canaryrules/finalizers")}
"""Checked by admission on the canary's create/patch, never requested as such."""

_PATH = re.compile(r"^/(?:api/v1|apis/(?P<group>[^/]+)/[^/]+)(?:/namespaces/[^/]+)?"
                   r"/(?P<resource>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?$")
_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def as_grant(request: dict[str, Any]) -> Grant | None:
    m = _PATH.match(request["path"])
    if m is None:
        return None
    resource = m["resource"] + (f"/{m['sub']}" if m["sub"] else "")
    if request["method"] == "GET":
        verb = "watch" if request.get("watch") else "get" if m["name"] else "list"
    else:
        verb = _VERBS[request["method"]]
    return verb, m["group"] or "", resource


def chart_grants(docs: list[dict[str, Any]]) -> set[Grant]:
    out: set[Grant] = set()
    for doc in docs:
        if doc.get("kind") not in ("ClusterRole", "Role"):
            continue
        for rule in doc.get("rules") or []:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    out |= {(verb, group, resource) for verb in rule["verbs"]}
    return out


def test_the_chart_grants_exactly_what_the_controller_calls(
    kube: Kube, judge: ScriptedJudge, emu: EmulatorHandle,
    controllers: Callable[..., Controller],
) -> None:
    assert emu.controller is not None
    kube.request("POST", f"/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers",
                 body={"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                       "metadata": {"name": "other"},
                       "spec": {"scaleTargetRef": {"apiVersion": "apps/v1",
                                                   "kind": "Deployment", "name": "other"},
                                "minReplicas": 1, "maxReplicas": 2}})
    setup(kube, judge.base_url, steps=[{"weight": 50}])
    mark = emu.mark()
    # ingestion authenticated as in a cluster: the target's pods' token, checked by TokenReview
    token = emu.issue_token(service_account=f"{NS}/default", audiences=["llm-canary"])
    c = controllers(leader_elect=True, insecure=False, token=token)
    revision = wait_for("analysable", lambda: status_of(kube).get("canaryReadyAt")
                        and canary_revision(kube), c)
    # an unknown action is reported at every reconcile: the repeats patch one Event's count
    rules.set_annotations(kube, NS, "bot", {ACTION_ANNOTATION: "explode",
                                            ACTION_ID_ANNOTATION: "x1"})
    wait_for("a repeated Event", lambda: any(
        r["method"] == "PATCH" and "/events/" in r["path"] for r in emu.requests(mark)), c)
    rules.set_annotations(kube, NS, "bot", {ACTION_ANNOTATION: None, ACTION_ID_ANNOTATION: None})
    assert c.post_samples(records(150, revision=revision)).status_code == 200
    wait_for("promoted and finalizer released", lambda: phase(kube) == "Succeeded" and not
             rules.get_rule(kube, NS, "bot")["metadata"].get("finalizers"), c)
    c.stop()
    called = {g for r in emu.requests(mark) if r.get("user") == emu.controller.username
              and r["status"] < 400 and (g := as_grant(r)) is not None}
    granted = chart_grants(emu.controller.objects)
    assert called | ADMISSION_ONLY == granted, (
        f"granted, never called: {sorted(granted - called - ADMISSION_ONLY)}; "
        f"called, not granted: {sorted(called - granted)}")


def test_the_admission_only_grant_is_needed(emu: EmulatorHandle, kube: Kube) -> None:
    """Without ``update`` on ``canaryrules/finalizers`` the canary cannot be created."""
    assert emu.controller is not None
    role = next(d for d in emu.controller.objects if d["kind"] == "ClusterRole")
    path = f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{role['metadata']['name']}"
    current = emu.api("GET", path)
    reduced = copy.deepcopy(current)
    reduced["rules"] = [r for r in current["rules"] if "canaryrules/finalizers"
                        not in r["resources"]]
    rule = rules.apply_rule(kube, {"apiVersion": "canary.llmops.dev/v1alpha1",
                                   "kind": "CanaryRule", "metadata": {"name": "x",
                                                                      "namespace": NS},
                                   "spec": {"targetRef": {"name": "x"},
                                            "canary": {"image": "x:2"},
                                            "steps": [{"weight": 10}],
                                            "analysis": {"guards": [{
                                                "name": "l", "metric": "latency",
                                                "tolerance": 0.1}]}}})
    body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {
        "name": "x-canary", "ownerReferences": [{
            "apiVersion": "canary.llmops.dev/v1alpha1", "kind": "CanaryRule", "name": "x",
            "uid": rule["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "x"}},
                 "template": {"metadata": {"labels": {"app": "x"}},
                              "spec": {"containers": [{"name": "c", "image": "x:2"}]}}}}
    as_controller = connect(emu.controller.kubeconfig)
    emu.api("PUT", path, reduced)
    try:
        with pytest.raises(Forbidden, match="blockOwnerDeletion"):
            as_controller.request("POST", f"/apis/apps/v1/namespaces/{NS}/deployments",
                                  body=body)
    finally:
        try:
            emu.api("PUT", path, {**current, "metadata": {
                **current["metadata"], "resourceVersion": emu.api("GET", path)["metadata"][
                    "resourceVersion"]}})
        except urllib.error.HTTPError:
            emu.reset()
        as_controller.close()
    as_controller = connect(emu.controller.kubeconfig)
    created = as_controller.request("POST", f"/apis/apps/v1/namespaces/{NS}/deployments",
                                    body=body)
    assert created["metadata"]["name"] == "x-canary"
    as_controller.close()


def test_the_chart_the_emulator_enforces_is_this_one() -> None:
    assert chart_grants(render_chart()) >= {("patch", "apps", "deployments/scale")}
