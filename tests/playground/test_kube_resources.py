"""The other resources the controller and the chart use, through the official client:
Events in both API groups (one storage), Secrets, ServiceAccounts, NetworkPolicies,
PodDisruptionBudgets, Leases, Namespaces, dry runs, delete-collection, Table output."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest
from canary_playground.kube import EmulatorHandle, running_emulator
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.playground.kube_support import deployment, new_ns, rolled_out
from tests.support.waiting import wait_for


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorHandle]:
    with running_emulator(tmp_path_factory.mktemp("kube"), readiness_delay=0.05) as handle:
        yield handle


def test_events_are_one_storage_in_two_groups(api: client.ApiClient) -> None:
    ns = new_ns()
    core, events = client.CoreV1Api(api), client.EventsV1Api(api)
    core.create_namespaced_event(ns, {
        "metadata": {"name": "core"}, "involvedObject": {"kind": "CanaryRule", "name": "r"},
        "reason": "Started", "message": "from core", "type": "Normal",
        "eventTime": "2026-11-30T12:00:00.000000Z"})
    events.create_namespaced_event(ns, {
        "metadata": {"name": "new"}, "regarding": {"kind": "CanaryRule", "name": "r"},
        "reason": "Promoted", "note": "from events.k8s.io", "type": "Normal",
        "eventTime": "2026-11-30T12:00:01.000000Z", "action": "Promote",
        "reportingController": "llm-canary", "reportingInstance": "c1"})
    seen = {e.metadata.name: e for e in events.list_namespaced_event(ns).items}
    assert seen["core"].note == "from core" and seen["core"].regarding.name == "r"
    legacy = {e.metadata.name: e for e in core.list_namespaced_event(
        ns, field_selector="involvedObject.kind=CanaryRule").items}
    assert legacy["new"].message == "from events.k8s.io"
    assert legacy["new"].reporting_component == "llm-canary"
    assert [e.metadata.name for e in events.list_namespaced_event(
        ns, field_selector="regarding.name=r,reason=Promoted").items] == ["new"]


def test_secret_string_data_and_labels(api: client.ApiClient) -> None:
    ns = new_ns()
    core = client.CoreV1Api(api)
    core.create_namespaced_secret(ns, {"metadata": {"name": "judge", "labels": {"a": "b"}},
                                       "stringData": {"api-key": "sk-1"}})
    secret = core.read_namespaced_secret("judge", ns)
    assert secret.data == {"api-key": "c2stMQ=="} and secret.type == "Opaque"
    assert secret.string_data is None
    assert [s.metadata.name for s in core.list_namespaced_secret(
        ns, label_selector="a=b").items] == ["judge"]
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_secret(ns, {"metadata": {"name": "bad"},
                                           "data": {"k": "not base64!"}})
    assert exc.value.status == 400


def test_stored_kinds_and_namespaces(api: client.ApiClient) -> None:
    ns = new_ns()
    client.CoreV1Api(api).create_namespaced_service_account(ns, {"metadata": {"name": "sa"}})
    client.NetworkingV1Api(api).create_namespaced_network_policy(ns, {
        "metadata": {"name": "deny"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}})
    client.PolicyV1Api(api).create_namespaced_pod_disruption_budget(ns, {
        "metadata": {"name": "pdb"}, "spec": {"minAvailable": 1,
                                              "selector": {"matchLabels": {"app": "x"}}}})
    client.CoordinationV1Api(api).create_namespaced_lease(ns, {
        "metadata": {"name": "l"}, "spec": {"holderIdentity": "me"}})
    assert client.NetworkingV1Api(api).read_namespaced_network_policy(
        "deny", ns).metadata.generation == 1
    assert client.PolicyV1Api(api).read_namespaced_pod_disruption_budget(
        "pdb", ns).spec.min_available == 1
    names = [n.metadata.name for n in client.CoreV1Api(api).list_namespace().items]
    assert {"default", "kube-system"} <= set(names)


def test_dry_run_and_delete_collection(api: client.ApiClient) -> None:
    ns = new_ns()
    core = client.CoreV1Api(api)
    dry = core.create_namespaced_config_map(ns, {"metadata": {"name": "x"}}, dry_run="All")
    assert dry.metadata.uid and not core.list_namespaced_config_map(ns).items
    for name, tier in (("a", "web"), ("b", "web"), ("c", "db")):
        core.create_namespaced_config_map(ns, {"metadata": {"name": name,
                                                            "labels": {"tier": tier}}})
    core.delete_collection_namespaced_config_map(ns, label_selector="tier=web")
    assert [c.metadata.name for c in core.list_namespaced_config_map(ns).items] == ["c"]


def test_table_output(emu: EmulatorHandle, api: client.ApiClient) -> None:
    ns = new_ns()
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(ns, deployment(replicas=2))
    wait_for(lambda: rolled_out(apps, ns, "web"))
    req = urllib.request.Request(
        f"{emu.url}/apis/apps/v1/namespaces/{ns}/deployments",
        headers={"Authorization": f"Bearer {emu.token}",
                 "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        table = json.loads(resp.read())
    assert table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]][:5] == \
        ["Name", "Ready", "Up-to-date", "Available", "Age"]
    (row,) = table["rows"]
    assert row["cells"][:4] == ["web", "2/2", 2, 2]
    assert row["object"]["kind"] == "PartialObjectMetadata"
