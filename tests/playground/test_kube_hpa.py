"""The emulator's HorizontalPodAutoscaler controller: it sets its target's replicas to the
desired count (an annotation stands in for metrics) within [minReplicas, maxReplicas],
and fights anyone else who scales the target, as the real one does."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from canary_playground.kube import EmulatorHandle, running_emulator
from kubernetes import client

from tests.playground.kube_support import deployment, new_ns, rolled_out
from tests.support.waiting import wait_for

DESIRED = "emulator.llmops.dev/desired-replicas"


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorHandle]:
    with running_emulator(tmp_path_factory.mktemp("kube"), readiness_delay=0.05,
                          hpa_interval=0.3) as handle:
        yield handle


def hpa(desired: int | None, low: int = 2, high: int = 6) -> dict[str, Any]:
    notes = {DESIRED: str(desired)} if desired is not None else {}
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "annotations": notes},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                        "name": "web"},
                     "minReplicas": low, "maxReplicas": high}}


def conditions(h: client.V2HorizontalPodAutoscaler) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in h.status.conditions or []}


def test_hpa_sets_and_keeps_the_target_scale(api: client.ApiClient) -> None:
    ns = new_ns()
    apps, autoscaling = client.AppsV1Api(api), client.AutoscalingV2Api(api)
    apps.create_namespaced_deployment(ns, deployment(replicas=1))
    created = autoscaling.create_namespaced_horizontal_pod_autoscaler(ns, hpa(desired=None))
    assert created.spec.metrics[0].resource.name == "cpu"  # defaulted
    # no desired count: only the bounds apply (1 -> minReplicas 2)
    wait_for(lambda: apps.read_namespaced_deployment("web", ns).spec.replicas == 2)
    autoscaling.patch_namespaced_horizontal_pod_autoscaler(
        "web", ns, {"metadata": {"annotations": {DESIRED: "4"}}})
    wait_for(lambda: apps.read_namespaced_deployment("web", ns).spec.replicas == 4)
    wait_for(lambda: rolled_out(apps, ns, "web"))
    status = wait_for(lambda: (h := autoscaling.read_namespaced_horizontal_pod_autoscaler(
        "web", ns)).status.current_replicas == 4 and h).status
    assert status.desired_replicas == 4 and status.last_scale_time is not None

    # someone else scales the target: the autoscaler puts it back
    apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 1}})
    wait_for(lambda: apps.read_namespaced_deployment("web", ns).spec.replicas == 4)
    apps.patch_namespaced_deployment("web", ns, {"spec": {"replicas": 9}})
    wait_for(lambda: apps.read_namespaced_deployment("web", ns).spec.replicas == 4)

    # more than maxReplicas wanted: clamped, and said so
    autoscaling.patch_namespaced_horizontal_pod_autoscaler(
        "web", ns, {"metadata": {"annotations": {DESIRED: "50"}}})
    wait_for(lambda: apps.read_namespaced_deployment("web", ns).spec.replicas == 6)
    h = wait_for(lambda: (x := autoscaling.read_namespaced_horizontal_pod_autoscaler(
        "web", ns)).status.desired_replicas == 6 and x)
    found = conditions(h)
    assert found["ScalingLimited"] == ("True", "TooManyReplicas")
    assert found["ScalingActive"] == ("True", "ValidMetricFound")

    # a target scaled to zero disables autoscaling
    autoscaling.patch_namespaced_horizontal_pod_autoscaler(
        "web", ns, {"metadata": {"annotations": {DESIRED: "3"}}})
    wait_for(lambda: apps.read_namespaced_deployment("web", ns).spec.replicas == 3)
    apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 0}})
    h = wait_for(lambda: (x := autoscaling.read_namespaced_horizontal_pod_autoscaler(
        "web", ns)) and conditions(x).get("ScalingActive", ("", ""))[1] == "ScalingDisabled"
        and x)
    assert apps.read_namespaced_deployment("web", ns).spec.replicas == 0
    events = client.CoreV1Api(api).list_namespaced_event(
        ns, field_selector="involvedObject.kind=HorizontalPodAutoscaler").items
    assert any(e.reason == "SuccessfulRescale" and e.message.startswith("New size: 4")
               for e in events)


def test_hpa_without_target_reports_it(api: client.ApiClient) -> None:
    ns = new_ns()
    autoscaling = client.AutoscalingV2Api(api)
    autoscaling.create_namespaced_horizontal_pod_autoscaler(ns, hpa(desired=3))
    h = wait_for(lambda: (x := autoscaling.read_namespaced_horizontal_pod_autoscaler(
        "web", ns)).status and x.status.conditions and x)
    assert conditions(h)["AbleToScale"] == ("False", "FailedGetScale")
