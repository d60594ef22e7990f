"""Deployments -> ReplicaSets -> Pods in the emulator, through the official client, checked
against what kube-controller-manager does: rolling updates bounded by maxSurge /
maxUnavailable pod by pod, Recreate, readiness by image marker, the progress deadline,
revisions and history, proportional scaling, defaulting and validation."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from canary_playground.kube import EmulatorHandle, running_emulator
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.playground.kube_support import (
    PodHistory,
    condition,
    deployment,
    error_of,
    rolled_out,
    set_image,
)
from tests.support.waiting import wait_for


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorHandle]:
    with running_emulator(tmp_path_factory.mktemp("kube"), readiness_delay=0.1,
                          slow_ready_delay=1.5, crash_loop_interval=0.2) as handle:
        yield handle


def replicasets(apps: client.AppsV1Api, ns: str) -> list[client.V1ReplicaSet]:
    return sorted(apps.list_namespaced_replica_set(ns).items,
                  key=lambda rs: int(rs.metadata.annotations["deployment.kubernetes.io/revision"]))


# --------------------------------------------------------------------------- objects


def test_deployment_makes_replicaset_and_pods(apps: client.AppsV1Api, core: client.CoreV1Api,
                                              ns: str) -> None:
    created = apps.create_namespaced_deployment(ns, deployment(replicas=3))
    wait_for(lambda: rolled_out(apps, ns, "web"))
    (rs,) = apps.list_namespaced_replica_set(ns).items
    pod_hash = rs.metadata.labels["pod-template-hash"]
    assert rs.metadata.name == f"web-{pod_hash}"
    assert rs.spec.selector.match_labels == {"app": "web", "pod-template-hash": pod_hash}
    assert rs.spec.template.metadata.labels == {"app": "web", "pod-template-hash": pod_hash}
    (ref,) = rs.metadata.owner_references
    assert (ref.kind, ref.name, ref.uid, ref.controller, ref.block_owner_deletion) == \
        ("Deployment", "web", created.metadata.uid, True, True)
    assert rs.metadata.annotations["deployment.kubernetes.io/revision"] == "1"
    assert rs.metadata.annotations["deployment.kubernetes.io/desired-replicas"] == "3"
    assert rs.metadata.annotations["deployment.kubernetes.io/max-replicas"] == "4"
    pods = core.list_namespaced_pod(ns, label_selector=f"pod-template-hash={pod_hash}").items
    assert len(pods) == 3
    for pod in pods:
        assert pod.metadata.name.startswith(f"{rs.metadata.name}-")
        assert pod.metadata.owner_references[0].uid == rs.metadata.uid
        assert pod.status.phase == "Running" and pod.spec.node_name
        assert pod.status.container_statuses[0].ready
    dep = apps.read_namespaced_deployment("web", ns)
    assert dep.metadata.annotations["deployment.kubernetes.io/revision"] == "1"
    st = dep.status
    assert (st.replicas, st.updated_replicas, st.ready_replicas, st.available_replicas,
            st.unavailable_replicas, st.observed_generation) == (3, 3, 3, 3, None, 1)
    assert condition(dep, "Available").status == "True"
    progressing = condition(dep, "Progressing")
    assert (progressing.status, progressing.reason, progressing.message) == (
        "True", "NewReplicaSetAvailable", f'ReplicaSet "{rs.metadata.name}" has successfully '
        "progressed.")


def test_defaulting_is_visible_on_read(apps: client.AppsV1Api, ns: str) -> None:
    body = deployment(image="registry.example.com/app")
    del body["spec"]["replicas"]
    apps.create_namespaced_deployment(ns, body)
    spec = apps.read_namespaced_deployment("web", ns).spec
    assert spec.replicas == 1 and spec.revision_history_limit == 10
    assert spec.progress_deadline_seconds == 600
    assert spec.strategy.type == "RollingUpdate"
    assert (spec.strategy.rolling_update.max_surge,
            spec.strategy.rolling_update.max_unavailable) == ("25%", "25%")
    pod_spec = spec.template.spec
    assert (pod_spec.restart_policy, pod_spec.dns_policy, pod_spec.scheduler_name,
            pod_spec.termination_grace_period_seconds) == \
        ("Always", "ClusterFirst", "default-scheduler", 30)
    container = pod_spec.containers[0]
    assert container.termination_message_path == "/dev/termination-log"
    assert container.termination_message_policy == "File"
    assert container.image_pull_policy == "Always"  # no tag means :latest


def test_validation_names_the_field(apps: client.AppsV1Api, core: client.CoreV1Api,
                                    ns: str) -> None:
    body = deployment()
    body["metadata"]["labels"] = {"team": "a" * 64}
    with pytest.raises(ApiException) as exc:
        apps.create_namespaced_deployment(ns, body)
    err = error_of(exc.value)
    assert exc.value.status == 422 and err["reason"] == "Invalid"
    assert err["details"]["causes"] == [{
        "reason": "FieldValueInvalid", "field": "metadata.labels",
        "message": f'Invalid value: "{"a" * 64}": must be no more than 63 characters'}]
    assert err["message"].startswith('Deployment.apps "web" is invalid: metadata.labels: ')

    bad = deployment(name="Web")
    with pytest.raises(ApiException) as exc:
        apps.create_namespaced_deployment(ns, bad)
    assert [c["field"] for c in error_of(exc.value)["details"]["causes"]] == ["metadata.name"]
    assert "RFC 1123 subdomain" in error_of(exc.value)["message"]

    # Services need a DNS-1035 label: no leading digit
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_service(ns, {"metadata": {"name": "1web"}, "spec": {
            "ports": [{"port": 80}]}})
    assert "DNS-1035 label" in error_of(exc.value)["details"]["causes"][0]["message"]

    frozen = deployment(strategy={"type": "RollingUpdate", "rollingUpdate": {
        "maxSurge": 0, "maxUnavailable": "0%"}})
    with pytest.raises(ApiException) as exc:
        apps.create_namespaced_deployment(ns, frozen)
    assert error_of(exc.value)["details"]["causes"][0] == {
        "reason": "FieldValueInvalid", "field": "spec.strategy.rollingUpdate.maxUnavailable",
        "message": 'Invalid value: "0%": may not be 0 when `maxSurge` is 0'}


# --------------------------------------------------------------------------- rollouts


@pytest.mark.parametrize(("replicas", "surge", "unavailable", "most", "fewest"), [
    (10, "25%", "25%", 13, 8),  # surge rounds up (2.5 -> 3), unavailable down (2.5 -> 2)
    (4, 1, 1, 5, 3),
    (3, 0, 1, 3, 2),
    (5, "50%", 0, 8, 5),
])
def test_rolling_update_stays_within_surge_and_unavailable(
        apps: client.AppsV1Api, core: client.CoreV1Api, ns: str, replicas: int,
        surge: int | str, unavailable: int | str, most: int, fewest: int) -> None:
    strategy = {"type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}
    apps.create_namespaced_deployment(ns, deployment(replicas=replicas, strategy=strategy))
    wait_for(lambda: rolled_out(apps, ns, "web"))
    history = PodHistory(core, ns)
    set_image(apps, ns, "web", "app:2")
    wait_for(lambda: rolled_out(apps, ns, "web"), timeout=20)
    states = history.states()
    assert max(pods for pods, _, _ in states) == most
    assert min(ready for _, ready, _ in states) == fewest
    final_pods, final_ready, per_rs = states[-1]
    assert final_pods == final_ready == replicas and len(per_rs) == 1
    old, new = replicasets(apps, ns)
    assert (old.spec.replicas, new.spec.replicas) == (0, replicas)
    dep = apps.read_namespaced_deployment("web", ns)
    assert dep.metadata.annotations["deployment.kubernetes.io/revision"] == "2"
    assert condition(dep, "Progressing").reason == "NewReplicaSetAvailable"


def test_recreate_removes_every_old_pod_first(apps: client.AppsV1Api, core: client.CoreV1Api,
                                              ns: str) -> None:
    apps.create_namespaced_deployment(ns, deployment(replicas=3,
                                                     strategy={"type": "Recreate"}))
    wait_for(lambda: rolled_out(apps, ns, "web"))
    history = PodHistory(core, ns)
    set_image(apps, ns, "web", "app:2")
    wait_for(lambda: rolled_out(apps, ns, "web"))
    states = history.states()
    assert all(len(per_rs) <= 1 for _, _, per_rs in states), "old and new pods coexisted"
    assert min(pods for pods, _, _ in states) == 0
    assert states[-1][:2] == (3, 3)


def test_never_ready_stalls_then_misses_the_progress_deadline(
        apps: client.AppsV1Api, core: client.CoreV1Api, ns: str) -> None:
    apps.create_namespaced_deployment(ns, deployment(replicas=4, progressDeadlineSeconds=2))
    wait_for(lambda: rolled_out(apps, ns, "web"))
    set_image(apps, ns, "web", "app:never-ready")
    dep = wait_for(lambda: (d := apps.read_namespaced_deployment("web", ns)).status
                   .updated_replicas == 2 and d)
    progressing = condition(dep, "Progressing")
    assert progressing.status == "True"
    assert progressing.reason in ("NewReplicaSetCreated", "ReplicaSetUpdated")
    dep = wait_for(lambda: (d := apps.read_namespaced_deployment("web", ns)) and condition(
        d, "Progressing").reason == "ProgressDeadlineExceeded" and d, timeout=15)
    _, new = replicasets(apps, ns)
    progressing = condition(dep, "Progressing")
    assert progressing.status == "False"
    assert progressing.message == f'ReplicaSet "{new.metadata.name}" has timed out progressing.'
    # the rollout stays where maxSurge/maxUnavailable stopped it: 3 old available, 2 new
    assert (dep.status.replicas, dep.status.updated_replicas, dep.status.available_replicas,
            dep.status.unavailable_replicas) == (5, 2, 3, 2)
    assert condition(dep, "Available").status == "True"  # 3 >= 4 - 1
    new_pods = core.list_namespaced_pod(
        ns, label_selector=f"pod-template-hash={new.metadata.labels['pod-template-hash']}")
    for pod in new_pods.items:
        assert pod.status.phase == "Running"
        assert not pod.status.container_statuses[0].ready


def test_slow_ready_takes_its_configured_delay(apps: client.AppsV1Api, core: client.CoreV1Api,
                                               ns: str) -> None:
    apps.create_namespaced_deployment(ns, deployment(replicas=1, image="app:slow-ready"))
    pod = wait_for(lambda: next((p for p in core.list_namespaced_pod(ns).items
                                 if p.status.phase == "Running"), None))
    assert not pod.status.container_statuses[0].ready  # 1.5 s have not passed yet
    assert not rolled_out(apps, ns, "web")
    wait_for(lambda: rolled_out(apps, ns, "web"), timeout=10)


def test_crashloop_restarts_forever(apps: client.AppsV1Api, core: client.CoreV1Api,
                                    ns: str) -> None:
    apps.create_namespaced_deployment(ns, deployment(replicas=1, image="app:crashloop"))
    pod = wait_for(lambda: next((p for p in core.list_namespaced_pod(ns).items
                                 if p.status.container_statuses
                                 and p.status.container_statuses[0].restart_count >= 3), None))
    status = pod.status.container_statuses[0]
    assert status.state.waiting.reason == "CrashLoopBackOff" and not status.ready
    assert status.last_state.terminated.exit_code == 1
    dep = apps.read_namespaced_deployment("web", ns)
    assert not dep.status.available_replicas
    assert condition(dep, "Available").status == "False"


def test_unavailable_annotation_fails_readiness_until_removed(
        apps: client.AppsV1Api, ns: str) -> None:
    apps.create_namespaced_deployment(ns, deployment(replicas=2))
    wait_for(lambda: rolled_out(apps, ns, "web"))
    apps.patch_namespaced_deployment("web", ns, {"metadata": {"annotations": {
        "emulator.llmops.dev/unavailable": "true"}}})
    wait_for(lambda: not apps.read_namespaced_deployment("web", ns).status.ready_replicas)
    apps.patch_namespaced_deployment("web", ns, {"metadata": {"annotations": {
        "emulator.llmops.dev/unavailable": None}}})
    wait_for(lambda: rolled_out(apps, ns, "web"))


# --------------------------------------------------------------------------- scale, history


def test_scale_by_subresource_and_spec(apps: client.AppsV1Api, core: client.CoreV1Api,
                                       ns: str) -> None:
    apps.create_namespaced_deployment(ns, deployment(replicas=2))
    wait_for(lambda: rolled_out(apps, ns, "web"))
    scale = apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 5}})
    assert scale.spec.replicas == 5 and scale.status.selector == "app=web"
    wait_for(lambda: rolled_out(apps, ns, "web"))
    assert len(core.list_namespaced_pod(ns).items) == 5
    apps.patch_namespaced_deployment("web", ns, {"spec": {"replicas": 1}})
    wait_for(lambda: rolled_out(apps, ns, "web"))
    (rs,) = apps.list_namespaced_replica_set(ns).items
    assert rs.spec.replicas == 1
    assert rs.metadata.annotations["deployment.kubernetes.io/desired-replicas"] == "1"
    assert len(core.list_namespaced_pod(ns).items) == 1


def test_resize_mid_rollout_is_proportional(apps: client.AppsV1Api, ns: str) -> None:
    apps.create_namespaced_deployment(ns, deployment(replicas=10))
    wait_for(lambda: rolled_out(apps, ns, "web"))
    set_image(apps, ns, "web", "app:never-ready")
    wait_for(lambda: [rs.spec.replicas for rs in replicasets(apps, ns)] == [8, 5])
    apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 20}})
    # allowed 20 + 5 surge = 25, 12 more: old 8 -> round(8*25/13) = 15 (+7), new 5 ->
    # round(5*25/13) = 10 (+5), nothing left over
    wait_for(lambda: [rs.spec.replicas for rs in replicasets(apps, ns)] == [15, 10])


def test_a_resize_during_a_template_change_still_completes(apps: client.AppsV1Api,
                                                           ns: str) -> None:
    """A new template and a new size in two writes (what a canary promotion does): every
    active ReplicaSet's replicas annotations follow the resize even where its size does
    not change, so the rollout goes on instead of resizing forever."""
    apps.create_namespaced_deployment(ns, deployment(replicas=3))
    wait_for(lambda: rolled_out(apps, ns, "web"))
    set_image(apps, ns, "web", "app:slow-ready")
    wait_for(lambda: len(replicasets(apps, ns)) == 2)
    apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 4}})
    wait_for(lambda: rolled_out(apps, ns, "web"), timeout=20)
    assert [rs.spec.replicas for rs in replicasets(apps, ns)] == [0, 4]


def test_revisions_rollback_and_history_limit(apps: client.AppsV1Api, ns: str) -> None:
    apps.create_namespaced_deployment(ns, deployment(replicas=1, revisionHistoryLimit=1))
    for image in ("app:2", "app:3"):
        wait_for(lambda: rolled_out(apps, ns, "web"))
        set_image(apps, ns, "web", image)
    wait_for(lambda: rolled_out(apps, ns, "web"))
    # revision 1's ReplicaSet is gone; 2 (old, kept by the limit) and 3 remain
    wait_for(lambda: len(replicasets(apps, ns)) == 2)
    images = [rs.spec.template.spec.containers[0].image for rs in replicasets(apps, ns)]
    assert images == ["app:2", "app:3"]
    set_image(apps, ns, "web", "app:2")  # back to an old template: its ReplicaSet returns
    wait_for(lambda: rolled_out(apps, ns, "web"))
    old, new = replicasets(apps, ns)
    assert new.spec.template.spec.containers[0].image == "app:2"
    assert new.metadata.annotations["deployment.kubernetes.io/revision"] == "4"
    assert new.metadata.annotations["deployment.kubernetes.io/revision-history"] == "2"
    dep = apps.read_namespaced_deployment("web", ns)
    assert dep.metadata.annotations["deployment.kubernetes.io/revision"] == "4"
    assert old.spec.replicas == 0


def test_pods_and_replicasets_are_listed_by_selector(apps: client.AppsV1Api,
                                                     core: client.CoreV1Api, ns: str) -> None:
    apps.create_namespaced_deployment(ns, deployment("a", replicas=2))
    apps.create_namespaced_deployment(ns, deployment("b", replicas=1))
    wait_for(lambda: rolled_out(apps, ns, "a") and rolled_out(apps, ns, "b"))
    assert len(core.list_namespaced_pod(ns, label_selector="app=a").items) == 2
    assert len(core.list_namespaced_pod(ns, label_selector="app in (a,b)").items) == 3
    assert [rs.metadata.name.split("-")[0] for rs in
            apps.list_namespaced_replica_set(ns, label_selector="app=b").items] == ["b"]
    one = core.list_namespaced_pod(ns, label_selector="app=b").items[0]
    assert core.read_namespaced_pod(one.metadata.name, ns).metadata.uid == one.metadata.uid
    core.delete_namespaced_pod(one.metadata.name, ns)  # the ReplicaSet replaces it
    wait_for(lambda: [p.metadata.name for p in
                      core.list_namespaced_pod(ns, label_selector="app=b").items]
             not in ([], [one.metadata.name]))
