"""The Kubernetes API emulator, driven only through the official ``kubernetes`` client.

These pin the semantics the controller relies on (status subresource, generation,
optimistic concurrency, watch resume and 410, patches, the fake deployment controller,
fault injection), so a controller test that passes here means something.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from canary_playground.kube import (
    EmulatorHandle,
    merge_patch,
    running_emulator,
    strategic_merge,
)
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from tests.support.waiting import wait_for

GROUP, VERSION, PLURAL = "canary.llmops.dev", "v1alpha1", "canaryrules"


@pytest.fixture(scope="module")
def kube_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorHandle]:
    with running_emulator(tmp_path_factory.mktemp("kube")) as emu:
        yield emu


@pytest.fixture(scope="module")
def emu(kube_emulator: EmulatorHandle) -> EmulatorHandle:
    return kube_emulator  # the fixtures in conftest.py build the clients on it


@pytest.fixture
def custom(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


def rule(name: str = "r1", image: str = "img:2") -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "CanaryRule", "metadata": {"name": name},
        "spec": {"targetRef": {"name": "web"}, "canary": {"image": image},
                 "steps": [{"weight": 10}, {"weight": 50}],
                 "analysis": {"guards": [{"name": "lat", "metric": "latency",
                                          "tolerance": 0.1}]}},
    }


def deployment(name: str = "web", replicas: int = 2) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [
                                  {"name": "app", "image": "img:1",
                                   "env": [{"name": "A", "value": "1"}]},
                                  {"name": "sidecar", "image": "proxy:1"}]}}},
    }


def error_of(exc: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.body)
    return body


def create_rule(custom: client.CustomObjectsApi, ns: str, name: str = "r1") -> dict[str, Any]:
    obj: dict[str, Any] = custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL,
                                                                 rule(name))
    return obj


# --------------------------------------------------------------------------- CRUD


def test_typed_crud_and_not_found(apps: client.AppsV1Api, ns: str) -> None:
    created = apps.create_namespaced_deployment(ns, deployment())
    assert created.metadata.uid and created.metadata.generation == 1
    assert created.metadata.namespace == ns
    listed = apps.list_namespaced_deployment(ns)
    assert [d.metadata.name for d in listed.items] == ["web"]
    assert int(listed.metadata.resource_version) >= int(created.metadata.resource_version)
    with pytest.raises(ApiException) as exc:
        apps.create_namespaced_deployment(ns, deployment())
    assert exc.value.status == 409 and error_of(exc.value)["reason"] == "AlreadyExists"
    apps.delete_namespaced_deployment("web", ns)
    with pytest.raises(ApiException) as exc:
        apps.read_namespaced_deployment("web", ns)
    assert exc.value.status == 404 and error_of(exc.value)["reason"] == "NotFound"


def test_label_and_field_selectors(apps: client.AppsV1Api, ns: str) -> None:
    for name, tier in (("a", "x"), ("b", "y"), ("c", "x")):
        body = deployment(name)
        body["metadata"]["labels"] = {"tier": tier}
        apps.create_namespaced_deployment(ns, body)
    names = [d.metadata.name for d in
             apps.list_namespaced_deployment(ns, label_selector="tier=x").items]
    assert names == ["a", "c"]
    names = [d.metadata.name for d in
             apps.list_namespaced_deployment(ns, label_selector="tier notin (x)").items]
    assert names == ["b"]
    names = [d.metadata.name for d in
             apps.list_namespaced_deployment(ns, field_selector="metadata.name=c").items]
    assert names == ["c"]


def test_deployment_validation(apps: client.AppsV1Api, ns: str) -> None:
    body = deployment()
    body["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    with pytest.raises(ApiException) as exc:
        apps.create_namespaced_deployment(ns, body)
    assert exc.value.status == 422
    fields = [c["field"] for c in error_of(exc.value)["details"]["causes"]]
    assert fields == ["spec.template.metadata.labels"]
    apps.create_namespaced_deployment(ns, deployment())
    with pytest.raises(ApiException) as exc:
        apps.patch_namespaced_deployment("web", ns, {"spec": {"selector": {
            "matchLabels": {"app": "web", "x": "y"}}}})
    assert exc.value.status == 422 and "immutable" in error_of(exc.value)["message"]


# --------------------------------------------------------------------------- status, generation


def test_status_subresource_and_generation(custom: client.CustomObjectsApi, ns: str) -> None:
    obj = create_rule(custom, ns)
    assert obj["metadata"]["generation"] == 1 and "status" not in obj

    # writes to /status change only status, and do not bump generation
    patched = custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, ns, PLURAL, "r1",
        {"status": {"phase": "Progressing"}, "spec": {"canary": {"image": "ignored"}}})
    assert patched["status"]["phase"] == "Progressing"
    assert patched["spec"]["canary"]["image"] == "img:2"
    assert patched["metadata"]["generation"] == 1

    # writes to the main resource ignore status; spec changes bump generation
    patched = custom.patch_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, "r1",
        {"status": {"phase": "Failed"}, "spec": {"canary": {"image": "img:3"}}})
    assert patched["status"]["phase"] == "Progressing"
    assert patched["spec"]["canary"]["image"] == "img:3"
    assert patched["metadata"]["generation"] == 2

    # metadata-only changes do not bump generation
    patched = custom.patch_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, "r1", {"metadata": {"annotations": {"a": "b"}}})
    assert patched["metadata"]["generation"] == 2
    assert patched["metadata"]["annotations"] == {"a": "b"}


def test_noop_write_keeps_resource_version(custom: client.CustomObjectsApi, ns: str) -> None:
    obj = create_rule(custom, ns)
    again = custom.patch_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, "r1", {"spec": {"canary": {"image": "img:2"}}})
    assert again["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]


def test_crd_schema_validation_defaults_and_pruning(custom: client.CustomObjectsApi,
                                                    ns: str) -> None:
    bad = rule("bad")
    bad["spec"]["steps"] = [{"weight": 0}]
    with pytest.raises(ApiException) as exc:
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, bad)
    assert exc.value.status == 422
    assert [c["field"] for c in error_of(exc.value)["details"]["causes"]] == \
        ["spec.steps[0].weight"]
    extra = rule("extra")
    extra["spec"]["unknownField"] = 1
    obj = custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, extra)
    assert "unknownField" not in obj["spec"]
    assert obj["spec"]["analysis"]["interval"] == "1m"  # schema default


# --------------------------------------------------------------------------- conflicts


def test_stale_resource_version_conflicts(custom: client.CustomObjectsApi,
                                          apps: client.AppsV1Api, ns: str) -> None:
    obj = create_rule(custom, ns)
    stale = obj["metadata"]["resourceVersion"]
    custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "r1",
                                          {"metadata": {"labels": {"x": "1"}}})
    with pytest.raises(ApiException) as exc:  # PUT with a stale version
        custom.replace_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "r1", obj)
    assert exc.value.status == 409 and error_of(exc.value)["reason"] == "Conflict"
    with pytest.raises(ApiException) as exc:  # merge patch carrying a stale version
        custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, ns, PLURAL, "r1",
            {"metadata": {"resourceVersion": stale}, "status": {"phase": "Paused"}})
    assert exc.value.status == 409
    with pytest.raises(ApiException) as exc:  # custom resources refuse unconditional PUT
        unconditional = dict(obj, metadata={"name": "r1"})
        custom.replace_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "r1",
                                                unconditional)
    assert exc.value.status == 422

    apps.create_namespaced_deployment(ns, deployment())
    dep = apps.read_namespaced_deployment("web", ns)
    apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 3}})
    with pytest.raises(ApiException) as exc:
        apps.patch_namespaced_deployment_scale("web", ns, {
            "metadata": {"resourceVersion": dep.metadata.resource_version},
            "spec": {"replicas": 5}})
    assert exc.value.status == 409
    assert apps.read_namespaced_deployment("web", ns).spec.replicas == 3
    with pytest.raises(ApiException) as exc:
        apps.delete_namespaced_deployment("web", ns, body={
            "preconditions": {"resourceVersion": dep.metadata.resource_version}})
    assert exc.value.status == 409


# --------------------------------------------------------------------------- patches


def test_patch_types(custom: client.CustomObjectsApi, apps: client.AppsV1Api, ns: str) -> None:
    apps.create_namespaced_deployment(ns, deployment())
    # the typed client sends a dict as a strategic merge patch: containers merge by name
    apps.patch_namespaced_deployment("web", ns, {"spec": {"template": {"spec": {
        "containers": [{"name": "sidecar", "image": "proxy:2"}]}}}})
    containers = apps.read_namespaced_deployment("web", ns).spec.template.spec.containers
    assert [(c.name, c.image) for c in containers] == [("app", "img:1"), ("sidecar", "proxy:2")]
    # JSON patch, with a failing test op rejected
    apps.patch_namespaced_deployment("web", ns, [
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "img:9"}])
    assert apps.read_namespaced_deployment("web", ns).spec.template.spec.containers[0].image \
        == "img:9"
    with pytest.raises(ApiException) as exc:
        apps.patch_namespaced_deployment("web", ns, [
            {"op": "test", "path": "/spec/replicas", "value": 99},
            {"op": "replace", "path": "/spec/replicas", "value": 7}])
    assert exc.value.status == 422
    # strategic merge is refused for custom resources, as by a real API server
    create_rule(custom, ns)
    with pytest.raises(ApiException) as exc:
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, "r1", {"spec": {}},
            _content_type="application/strategic-merge-patch+json")
    assert exc.value.status == 415


def test_server_side_apply(custom: client.CustomObjectsApi, ns: str) -> None:
    manifest = rule("applied")
    manifest["metadata"]["labels"] = {"team": "a", "tier": "web"}
    kwargs: dict[str, Any] = {"field_manager": "canaryctl", "force": True,
                              "_content_type": "application/apply-patch+yaml"}
    # (201 Created: the typed client returns None for it, so read the object back)
    custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "applied", manifest,
                                          **kwargs)
    created = custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "applied")
    assert created["metadata"]["generation"] == 1
    custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "applied",
                                          {"metadata": {"labels": {"other": "x"}}})
    manifest["metadata"]["labels"] = {"team": "a"}  # tier no longer applied: removed
    manifest["spec"]["canary"]["image"] = "img:3"
    updated = custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "applied",
                                                    manifest, **kwargs)
    assert updated["metadata"]["labels"] == {"team": "a", "other": "x"}
    assert updated["spec"]["canary"]["image"] == "img:3"
    assert updated["metadata"]["generation"] == 2
    with pytest.raises(ApiException) as exc:
        custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "applied", manifest,
                                              _content_type="application/apply-patch+yaml")
    assert exc.value.status == 400  # fieldManager is required


def test_patch_helpers_unit() -> None:
    assert merge_patch({"a": {"b": 1, "c": 2}}, {"a": {"b": None, "d": 3}}) == \
        {"a": {"c": 2, "d": 3}}
    merged = strategic_merge({"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                             {"env": [{"name": "B", "$patch": "delete"},
                                      {"name": "C", "value": "3"}]})
    assert merged == {"env": [{"name": "A", "value": "1"}, {"name": "C", "value": "3"}]}


# --------------------------------------------------------------------------- watch


def test_watch_resume_and_gone(kube_emulator: EmulatorHandle, custom: client.CustomObjectsApi,
                               ns: str) -> None:
    first = create_rule(custom, ns, "w1")
    create_rule(custom, ns, "w2")
    custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "w1")

    def first_events(count: int, **kwargs: Any) -> list[tuple[str, str]]:
        w, seen = watch.Watch(), []
        for e in w.stream(custom.list_namespaced_custom_object, GROUP, VERSION, ns, PLURAL,
                          timeout_seconds=5, **kwargs):
            seen.append((e["type"], e["object"]["metadata"]["name"]))
            if len(seen) == count:
                w.stop()
        return seen

    # only what came after the version, in order
    assert first_events(2, resource_version=first["metadata"]["resourceVersion"]) == \
        [("ADDED", "w2"), ("DELETED", "w1")]
    # without a resourceVersion: synthetic ADDED for what exists
    assert first_events(1) == [("ADDED", "w2")]
    w = watch.Watch()

    kube_emulator.compact()
    with pytest.raises(ApiException) as exc:
        for _ in w.stream(custom.list_namespaced_custom_object, GROUP, VERSION, ns, PLURAL,
                          resource_version=first["metadata"]["resourceVersion"],
                          timeout_seconds=1):
            pass
    assert exc.value.status == 410


def test_watch_delivers_live_events_and_bookmarks(kube_emulator: EmulatorHandle,
                                                  custom: client.CustomObjectsApi,
                                                  ns: str) -> None:
    kube_emulator.configure(bookmarkInterval=0.2)
    try:
        obj = create_rule(custom, ns, "live")
        resp = custom.list_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, watch=True, allow_watch_bookmarks=True,
            resource_version=obj["metadata"]["resourceVersion"], timeout_seconds=1,
            _preload_content=False)
        custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "live",
                                              {"metadata": {"labels": {"n": "1"}}})
        started = time.monotonic()
        events = [json.loads(line) for line in resp.stream() for line in
                  line.splitlines() if line.strip()]
        assert time.monotonic() - started >= 0.5  # the server held the stream open
        kinds = [e["type"] for e in events]
        assert kinds[0] == "MODIFIED" and "BOOKMARK" in kinds
        assert int(events[-1]["object"]["metadata"]["resourceVersion"]) > \
            int(obj["metadata"]["resourceVersion"])
    finally:
        kube_emulator.configure(bookmarkInterval=5.0)


# --------------------------------------------------------------------------- controllers


def test_fake_deployment_controller(kube_emulator: EmulatorHandle, apps: client.AppsV1Api,
                                    ns: str) -> None:
    apps.create_namespaced_deployment(ns, deployment(replicas=3))
    dep = wait_for(lambda: (d := apps.read_namespaced_deployment("web", ns)).status
                   and d.status.available_replicas == 3 and d)
    assert dep.status.observed_generation == 1 and dep.status.updated_replicas == 3
    apps.patch_namespaced_deployment("web", ns, {"metadata": {"annotations": {
        "emulator.llmops.dev/unavailable": "true"}}, "spec": {"replicas": 4}})
    # (status follows the pods: wait for the whole condition, not just the generation)
    dep = wait_for(lambda: (d := apps.read_namespaced_deployment("web", ns)).status
                   .observed_generation == 2 and d.status.replicas == 4
                   and not d.status.available_replicas and d)
    assert dep.status.replicas == 4 and not dep.status.available_replicas
    apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 0}})
    dep = wait_for(lambda: (d := apps.read_namespaced_deployment("web", ns)).status
                   .observed_generation == 3 and not d.status.replicas and d)
    assert not dep.status.replicas  # zero counts are omitted, as by the API


def test_owner_garbage_collection(custom: client.CustomObjectsApi, apps: client.AppsV1Api,
                                  ns: str) -> None:
    owner = create_rule(custom, ns)
    body = deployment("web-canary")
    body["metadata"]["ownerReferences"] = [{
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "CanaryRule", "name": "r1",
        "uid": owner["metadata"]["uid"], "controller": True}]
    apps.create_namespaced_deployment(ns, body)
    apps.create_namespaced_deployment(ns, deployment("web"))
    custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "r1")
    # background propagation: the garbage collector deletes the dependent shortly after
    wait_for(lambda: [d.metadata.name for d in apps.list_namespaced_deployment(ns).items]
             == ["web"])


def test_events_leases_secrets_services(core: client.CoreV1Api, api: client.ApiClient,
                                        ns: str) -> None:
    core.create_namespaced_secret(ns, {"metadata": {"name": "s"}, "stringData": {"k": "v"}})
    assert core.read_namespaced_secret("s", ns).data == {"k": "dg=="}
    core.create_namespaced_service(ns, {"metadata": {"name": "web"}, "spec": {
        "selector": {"app": "web"}, "ports": [{"port": 80}]}})
    assert core.read_namespaced_service("web", ns).spec.selector == {"app": "web"}
    core.create_namespaced_event(ns, {
        "metadata": {"name": "e1"}, "involvedObject": {"kind": "CanaryRule", "name": "r1"},
        "reason": "Started", "message": "hi", "type": "Normal"})
    events = core.list_namespaced_event(ns, field_selector="involvedObject.name=r1").items
    assert [e.reason for e in events] == ["Started"]
    leases = client.CoordinationV1Api(api)
    lease = leases.create_namespaced_lease(ns, {"metadata": {"name": "l"}, "spec": {
        "holderIdentity": "a", "leaseDurationSeconds": 15}})
    lease.spec.holder_identity = "b"
    leases.replace_namespaced_lease("l", ns, lease)
    with pytest.raises(ApiException) as exc:
        leases.replace_namespaced_lease("l", ns, lease)  # same (now stale) version
    assert exc.value.status == 409


# --------------------------------------------------------------------------- faults, log, auth


def test_fault_injection_and_request_log(kube_emulator: EmulatorHandle,
                                         apps: client.AppsV1Api, ns: str) -> None:
    apps.create_namespaced_deployment(ns, deployment())
    path = f"/namespaces/{ns}/deployments/web$"
    kube_emulator.add_fault(path, method="GET", status=500, count=2)
    mark = kube_emulator.mark()
    for _ in range(2):
        with pytest.raises(ApiException) as exc:
            apps.read_namespaced_deployment("web", ns)
        assert exc.value.status == 500
    assert apps.read_namespaced_deployment("web", ns).metadata.name == "web"
    log = kube_emulator.requests(mark)
    assert [(r["method"], r["status"], r["fault"]) for r in log] == \
        [("GET", 500, True), ("GET", 500, True), ("GET", 200, False)]

    # "after": the write is applied, then the client sees an error (a lost response)
    kube_emulator.add_fault(path, method="PATCH", status=503, after=True)
    with pytest.raises(ApiException) as exc:
        apps.patch_namespaced_deployment("web", ns, {"spec": {"replicas": 5}})
    assert exc.value.status == 503
    assert apps.read_namespaced_deployment("web", ns).spec.replicas == 5

    # timeout: the server sits on the request, then drops the connection (every time:
    # urllib3's default configuration retries a GET three times by itself)
    kube_emulator.add_fault(path, method="GET", timeout=True, delay=0.1, count=-1)
    mark = kube_emulator.mark()
    with pytest.raises(Exception):  # noqa: B017 - urllib3 raises its own protocol error
        apps.read_namespaced_deployment("web", ns, _request_timeout=5)
    assert len(kube_emulator.requests(mark)) == 4
    kube_emulator.clear_faults()
    assert kube_emulator.faults() == []


def test_requests_need_the_token(kube_emulator: EmulatorHandle) -> None:
    cfg = client.Configuration()
    cfg.host = kube_emulator.url
    with client.ApiClient(cfg) as anonymous, pytest.raises(ApiException) as exc:
        client.CoreV1Api(anonymous).list_namespaced_secret("default")
    assert exc.value.status == 401
