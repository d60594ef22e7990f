"""Finalizers and garbage collection in the emulator: an object with finalizers stays
(``deletionTimestamp`` set) until they are removed; Background, Foreground and Orphan
propagation over Deployment -> ReplicaSet -> Pod chains; dependents of a gone owner."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from canary_playground.kube import EmulatorHandle, running_emulator
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from tests.playground.kube_support import deployment, error_of, rolled_out
from tests.support.waiting import wait_for

GROUP, VERSION, PLURAL = "canary.llmops.dev", "v1alpha1", "canaryrules"


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorHandle]:
    with running_emulator(tmp_path_factory.mktemp("kube"), readiness_delay=0.05) as handle:
        yield handle


def names(items: list[Any]) -> list[str]:
    return sorted(i.metadata.name for i in items)


def test_finalizer_keeps_the_object_until_removed(core: client.CoreV1Api, ns: str) -> None:
    created = core.create_namespaced_config_map(ns, {"metadata": {
        "name": "held", "finalizers": ["example.com/hold"]}, "data": {"k": "v"}})
    rv = created.metadata.resource_version
    core.delete_namespaced_config_map("held", ns)
    held = core.read_namespaced_config_map("held", ns)
    assert held.metadata.deletion_timestamp is not None
    assert held.metadata.deletion_grace_period_seconds == 0
    assert held.metadata.finalizers == ["example.com/hold"]
    # while deleting, finalizers may go but never come
    with pytest.raises(ApiException) as exc:
        core.patch_namespaced_config_map("held", ns, {"metadata": {
            "finalizers": ["example.com/hold", "example.com/more"]}})
    err = error_of(exc.value)
    assert exc.value.status == 422
    assert err["details"]["causes"][0]["field"] == "metadata.finalizers"
    assert "no new finalizers can be added if the object is being deleted" in err["message"]
    core.patch_namespaced_config_map("held", ns, [
        {"op": "remove", "path": "/metadata/finalizers"}])
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_config_map("held", ns)
    assert exc.value.status == 404
    events = [(e["type"], e["object"].metadata.deletion_timestamp is not None,
               e["object"].metadata.finalizers)
              for e in watch.Watch().stream(core.list_namespaced_config_map, ns,
                                            resource_version=rv, timeout_seconds=1)]
    assert events == [("MODIFIED", True, ["example.com/hold"]), ("MODIFIED", True, None),
                      ("DELETED", True, None)]


def _chain(apps: client.AppsV1Api, core: client.CoreV1Api, ns: str) -> None:
    apps.create_namespaced_deployment(ns, deployment(replicas=2))
    wait_for(lambda: rolled_out(apps, ns, "web"))
    assert len(apps.list_namespaced_replica_set(ns).items) == 1
    assert len(core.list_namespaced_pod(ns).items) == 2


def test_background_deletion_collects_replicasets_and_pods(
        apps: client.AppsV1Api, core: client.CoreV1Api, ns: str) -> None:
    _chain(apps, core, ns)
    apps.delete_namespaced_deployment("web", ns)  # Background is the default
    with pytest.raises(ApiException):
        apps.read_namespaced_deployment("web", ns)  # the owner goes at once
    wait_for(lambda: not apps.list_namespaced_replica_set(ns).items
             and not core.list_namespaced_pod(ns).items)


def test_foreground_deletion_waits_for_dependents(apps: client.AppsV1Api,
                                                  core: client.CoreV1Api, ns: str) -> None:
    _chain(apps, core, ns)
    rv = apps.list_namespaced_deployment(ns).metadata.resource_version
    answer = apps.delete_namespaced_deployment(
        "web", ns, body=client.V1DeleteOptions(propagation_policy="Foreground"))
    assert answer is not None
    wait_for(lambda: not apps.list_namespaced_deployment(ns).items)
    assert not apps.list_namespaced_replica_set(ns).items
    assert not core.list_namespaced_pod(ns).items
    seen = [(e["type"], e["object"].metadata.finalizers) for e in watch.Watch().stream(
        apps.list_namespaced_deployment, ns, resource_version=rv, timeout_seconds=1)]
    assert seen[0] == ("MODIFIED", ["foregroundDeletion"])  # held while dependents go
    assert seen[-1][0] == "DELETED"


def test_orphan_deletion_leaves_dependents_without_owner(
        apps: client.AppsV1Api, core: client.CoreV1Api, ns: str) -> None:
    _chain(apps, core, ns)
    apps.delete_namespaced_deployment("web", ns, propagation_policy="Orphan")
    wait_for(lambda: not apps.list_namespaced_deployment(ns).items)
    (rs,) = wait_for(lambda: (items := apps.list_namespaced_replica_set(ns).items)
                     and not items[0].metadata.owner_references and items)
    assert rs.spec.replicas == 2
    pods = core.list_namespaced_pod(ns).items
    assert len(pods) == 2 and all(p.metadata.owner_references for p in pods)


def test_dependents_of_a_missing_owner_are_collected(core: client.CoreV1Api,
                                                     ns: str) -> None:
    owner = core.create_namespaced_config_map(ns, {"metadata": {"name": "owner"}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
           "uid": owner.metadata.uid}
    core.create_namespaced_config_map(ns, {"metadata": {"name": "dep", "ownerReferences": [
        ref]}})
    two = {**ref, "name": "gone", "uid": "00000000-0000-0000-0000-000000000000"}
    core.create_namespaced_config_map(ns, {"metadata": {"name": "shared",
                                                        "ownerReferences": [ref, two]}})
    # an owner that never existed: the dependent keeps only its live owner
    shared = wait_for(lambda: len((s := core.read_namespaced_config_map("shared", ns))
                                  .metadata.owner_references) == 1 and s)
    assert shared.metadata.owner_references[0].name == "owner"
    core.create_namespaced_config_map(ns, {"metadata": {"name": "orphaned",
                                                        "ownerReferences": [two]}})
    wait_for(lambda: "orphaned" not in names(core.list_namespaced_config_map(ns).items))
    core.delete_namespaced_config_map("owner", ns)
    wait_for(lambda: names(core.list_namespaced_config_map(ns).items) == [])


def test_deleting_a_canary_rule_collects_its_canary(api: client.ApiClient,
                                                    apps: client.AppsV1Api, ns: str) -> None:
    custom = client.CustomObjectsApi(api)
    rule = custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "CanaryRule", "metadata": {"name": "r"},
        "spec": {"targetRef": {"name": "web"}, "canary": {"image": "app:2"},
                 "steps": [{"weight": 10}],
                 "analysis": {"guards": [{"name": "lat", "metric": "latency",
                                          "tolerance": 0.1}]}}})
    canary = deployment("web-canary", replicas=1)
    canary["metadata"]["ownerReferences"] = [{
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "CanaryRule", "name": "r",
        "uid": rule["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]
    apps.create_namespaced_deployment(ns, canary)
    wait_for(lambda: rolled_out(apps, ns, "web-canary"))
    custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "r")
    wait_for(lambda: not apps.list_namespaced_deployment(ns).items
             and not apps.list_namespaced_replica_set(ns).items)
