"""controller.actuator against the Kubernetes API emulator (its own process, on 127.0.0.1).

Idempotency is checked on the wire: the emulator's request log must show no write when
an operation is repeated on a converged cluster.
"""

from __future__ import annotations

import base64
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from canary_playground.kube import EmulatorHandle, running_emulator, write_kubeconfig

from controller.actuator import deployments as dp
from controller.actuator import events, judge_key, rules
from controller.actuator.client import Kube, connect, path_of
from controller.actuator.errors import (
    AlreadyExists,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    KubeError,
    NotFound,
    Transient,
)
from controller.actuator.lease import LeaderElector
from controller.actuator.router import MANAGED_SELECTOR, ReplicaRatioRouter
from controller.conventions import (
    COHORT_LABEL,
    FINALIZER,
    JUDGE_KEY_LABEL,
    PROMOTED_ANNOTATION,
    REVISION_ANNOTATION,
    REVISION_LABEL,
)
from controller.engine import (
    Op,
    Operation,
    Role,
    canary_template,
    promoted_template,
    template_revision,
)
from controller.models import CanaryRule
from tests.support.waiting import wait_for

GV = "canary.llmops.dev/v1alpha1"
UNAVAILABLE = "emulator.llmops.dev/unavailable"


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorHandle]:
    with running_emulator(tmp_path_factory.mktemp("kube"), readiness_delay=0.02) as handle:
        yield handle


@pytest.fixture(scope="module")
def kube(emu: EmulatorHandle) -> Iterator[Kube]:
    k = connect(emu.kubeconfig)
    yield k
    k.close()


@pytest.fixture
def ns() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def make_target(kube: Kube, ns: str, replicas: int = 4, name: str = "web",
                labels: dict[str, str] | None = None,
                selector: dict[str, str] | None = None) -> dict[str, Any]:
    selector = selector or {"app": name}
    body = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": labels or {"app": name}},
        "spec": {
            "replicas": replicas, "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate"},
            "template": {"metadata": {"labels": {**selector, "version": "v1"}}, "spec": {
                "containers": [
                    {"name": "app", "image": "assistant:1",
                     "env": [{"name": "MODEL", "value": "small"}, {"name": "X", "value": "1"}]},
                    {"name": "proxy", "image": "envoy:1"}]}}},
    }
    return kube.request("POST", path_of("apps/v1", "deployments", ns), body=body)


def make_rule(kube: Kube, ns: str, *, name: str = "assistant", target: str = "web",
              canary: dict[str, Any] | None = None) -> tuple[CanaryRule, dict[str, Any]]:
    manifest = {
        "apiVersion": GV, "kind": "CanaryRule", "metadata": {"name": name, "namespace": ns},
        "spec": {"targetRef": {"name": target},
                 "canary": canary or {"image": "assistant:2",
                                      "env": [{"name": "MODEL", "value": "large"},
                                              {"name": "PROMPT", "value": "v7"}],
                                      "podLabels": {"prompt": "v7"}},
                 "steps": [{"weight": 10}, {"weight": 50}, {"weight": 100}],
                 "analysis": {"guards": [{"name": "lat", "metric": "latency",
                                          "tolerance": 0.1}]}},
    }
    obj = rules.apply_rule(kube, manifest)
    model = CanaryRule.model_validate({k: v for k, v in obj.items() if k != "status"})
    return model, obj


def get_dep(kube: Kube, ns: str, name: str) -> dict[str, Any]:
    return dp.get_deployment(kube, ns, name)


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env") or []}


# --------------------------------------------------------------------------- router


def router(kube: Kube) -> ReplicaRatioRouter:
    return ReplicaRatioRouter(kube)


def ensure(r: ReplicaRatioRouter, rule: CanaryRule) -> str:
    """ENSURE the canary for the rule's spec against the target's live template."""
    observed = r.observe(rule)
    template, revision = canary_template(observed.target_template, rule.spec.canary)
    r.apply(rule, Operation(Op.ENSURE, Role.CANARY, revision=revision, template=template))
    return revision


def scale(r: ReplicaRatioRouter, rule: CanaryRule, role: Role, replicas: int) -> None:
    r.apply(rule, Operation(Op.SCALE, role, replicas=replicas))


def test_observe_reports_the_workloads(kube: Kube, ns: str) -> None:
    target = make_target(kube, ns, replicas=3)
    rule, _ = make_rule(kube, ns)
    r = router(kube)
    o = wait_for(lambda: (x := r.observe(rule)).target and x.target.available == 3 and x)
    assert o.canary is None and o.holdback is None and o.autoscaler is None
    assert o.target_template == target["spec"]["template"]
    assert o.target.revision == template_revision(target["spec"]["template"])
    assert o.target.rolled_out and o.progress_deadline_seconds == 600
    revision = ensure(r, rule)
    scale(r, rule, Role.CANARY, 2)
    o = wait_for(lambda: (x := r.observe(rule)).canary and x.canary.rolled_out and x)
    assert o.canary.revision == revision and o.canary.replicas == 2
    kube.request("DELETE", path_of("apps/v1", "deployments", ns, "web"))
    gone = r.observe(rule)
    assert gone.target is None and gone.canary is not None


def test_ensure_builds_an_owned_canary_without_gitops_labels(kube: Kube, emu: EmulatorHandle,
                                                              ns: str) -> None:
    target = make_target(kube, ns, labels={"app": "web", "app.kubernetes.io/instance": "shop",
                                           "argocd.argoproj.io/instance": "shop", "team": "a"})
    rule, obj = make_rule(kube, ns)
    r = router(kube)
    revision = ensure(r, rule)
    canary = get_dep(kube, ns, "web-canary")
    meta, spec = canary["metadata"], canary["spec"]
    assert meta["ownerReferences"] == [{
        "apiVersion": GV, "kind": "CanaryRule", "name": "assistant",
        "uid": obj["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]
    assert meta["labels"] == {"app": "web", "team": "a", COHORT_LABEL: "canary",
                              "canary.llmops.dev/rule": "assistant",
                              "app.kubernetes.io/managed-by": "llm-canary"}
    assert meta["annotations"][REVISION_ANNOTATION] == revision
    # the target's strategy, as the API server defaulted it (RollingUpdate 25%/25%)
    assert spec["replicas"] == 0 and spec["strategy"] == target["spec"]["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
    assert spec["selector"] == {"matchLabels": {"app": "web", COHORT_LABEL: "canary"}}
    tpl = spec["template"]
    assert tpl["metadata"]["labels"] == {"app": "web", "version": "v1", "prompt": "v7",
                                         COHORT_LABEL: "canary", REVISION_LABEL: revision}
    app, proxy = tpl["spec"]["containers"]
    assert app["image"] == "assistant:2" and proxy["image"] == "envoy:1"
    assert env_of(app) == {"MODEL": "large", "X": "1", "PROMPT": "v7", "CANARY_COHORT": "canary",
                           "CANARY_REVISION": revision}
    assert env_of(proxy) == {"CANARY_COHORT": "canary", "CANARY_REVISION": revision}
    assert get_dep(kube, ns, "web")["spec"] == target["spec"]  # the target is untouched
    mark = emu.mark()
    ensure(r, rule)
    assert emu.requests(mark, writes=True) == []  # idempotent on the wire


def test_a_pod_label_override_takes_canary_pods_out_of_the_targets_selector(
        kube: Kube, ns: str) -> None:
    make_target(kube, ns, selector={"app": "web", "track": "stable"},
                labels={"app": "web", "track": "stable"})
    rule, _ = make_rule(kube, ns, canary={"image": "assistant:2",
                                          "podLabels": {"track": "canary"}})
    ensure(router(kube), rule)
    spec = get_dep(kube, ns, "web-canary")["spec"]
    assert spec["selector"]["matchLabels"] == {"app": "web", "track": "canary",
                                               COHORT_LABEL: "canary"}
    assert spec["template"]["metadata"]["labels"]["track"] == "canary"


def test_a_new_revision_replaces_the_canary_template_in_one_patch(
        kube: Kube, emu: EmulatorHandle, ns: str) -> None:
    make_target(kube, ns)
    rule, _ = make_rule(kube, ns)
    r = router(kube)
    ensure(r, rule)
    scale(r, rule, Role.CANARY, 1)
    manifest = rule.model_dump(mode="json", by_alias=True, exclude_none=True)
    manifest["spec"]["canary"] = {"container": "proxy", "image": "envoy:2"}
    obj = rules.apply_rule(kube, manifest)
    rule = CanaryRule.model_validate({k: v for k, v in obj.items() if k != "status"})
    mark = emu.mark()
    revision = ensure(r, rule)
    assert [w["method"] for w in emu.requests(mark, writes=True)] == ["PATCH"]
    canary = get_dep(kube, ns, "web-canary")
    app, proxy = canary["spec"]["template"]["spec"]["containers"]
    assert app["image"] == "assistant:1" and env_of(app)["MODEL"] == "small"
    assert proxy["image"] == "envoy:2" and env_of(proxy)["CANARY_REVISION"] == revision
    assert "prompt" not in canary["spec"]["template"]["metadata"]["labels"]
    assert canary["spec"]["replicas"] == 1  # replicas are SCALE's business


def test_a_deployment_the_rule_does_not_control_is_never_taken_over(kube: Kube, ns: str) -> None:
    make_target(kube, ns, name="api")
    kube.request("POST", path_of("apps/v1", "deployments", ns), body={
        "metadata": {"name": "api-canary"}, "spec": {
            "selector": {"matchLabels": {"app": "x"}},
            "template": {"metadata": {"labels": {"app": "x"}},
                         "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
    other, _ = make_rule(kube, ns, name="other", target="api")
    with pytest.raises(Invalid, match="refusing"):
        ensure(router(kube), other)
    # another rule's canary: refused with the owner named
    make_target(kube, ns)
    first, _ = make_rule(kube, ns, name="first")
    ensure(router(kube), first)
    second, _ = make_rule(kube, ns, name="second")
    with pytest.raises(Invalid, match="CanaryRule first"):
        ensure(router(kube), second)


def test_scale_conflicts_are_retried_then_reported(kube: Kube, emu: EmulatorHandle,
                                                   ns: str) -> None:
    make_target(kube, ns)
    rule, _ = make_rule(kube, ns)
    r = router(kube)
    ensure(r, rule)
    emu.add_fault(f"/namespaces/{ns}/deployments/web-canary/scale$", method="PATCH",
                  status=409, count=2)
    mark = emu.mark()
    scale(r, rule, Role.CANARY, 2)
    writes = [w for w in emu.requests(mark, writes=True) if w["path"].endswith("/scale")]
    assert [w["status"] for w in writes] == [409, 409, 200]
    assert dp.replicas_of(get_dep(kube, ns, "web-canary")) == 2
    emu.add_fault(f"/namespaces/{ns}/deployments/web/scale$", method="PATCH", status=409,
                  count=-1)
    with pytest.raises(Conflict):
        scale(r, rule, Role.TARGET, 3)
    emu.clear_faults()
    assert dp.replicas_of(get_dep(kube, ns, "web")) == 4
    scale(r, rule, Role.HOLDBACK, 0)  # a side that does not exist is already at zero
    with pytest.raises(NotFound):
        scale(r, rule, Role.HOLDBACK, 1)


def test_stale_write_is_a_conflict_not_an_overwrite(kube: Kube, ns: str) -> None:
    make_target(kube, ns)
    stale = get_dep(kube, ns, "web")["metadata"]["resourceVersion"]
    kube.request("PATCH", path_of("apps/v1", "deployments", ns, "web", "scale"),
                 body={"spec": {"replicas": 6}}, content_type="application/merge-patch+json")
    with pytest.raises(Conflict):
        kube.request("PATCH", path_of("apps/v1", "deployments", ns, "web", "scale"),
                     body={"metadata": {"resourceVersion": stale}, "spec": {"replicas": 1}},
                     content_type="application/merge-patch+json")
    assert dp.replicas_of(get_dep(kube, ns, "web")) == 6


def test_promote_then_restore_exactly(kube: Kube, emu: EmulatorHandle, ns: str) -> None:
    before = make_target(kube, ns)
    rule, _ = make_rule(kube, ns)
    r = router(kube)
    revision = ensure(r, rule)
    scale(r, rule, Role.CANARY, 2)
    canary_tpl = get_dep(kube, ns, "web-canary")["spec"]["template"]
    r.apply(rule, Operation(Op.PROMOTE, Role.TARGET, revision=revision))
    target = get_dep(kube, ns, "web")
    tpl = target["spec"]["template"]
    assert tpl == promoted_template(canary_tpl)
    assert COHORT_LABEL not in tpl["metadata"]["labels"]
    assert tpl["metadata"]["labels"][REVISION_LABEL] == revision  # pods keep naming it
    assert tpl["metadata"]["labels"]["prompt"] == "v7"
    assert all("CANARY_COHORT" not in env_of(c) for c in tpl["spec"]["containers"])
    assert env_of(tpl["spec"]["containers"][0])["CANARY_REVISION"] == revision
    assert target["metadata"]["annotations"][PROMOTED_ANNOTATION] == revision
    o = wait_for(lambda: (x := r.observe(rule)).target and x.target.rolled_out and x)
    assert o.target.revision == revision  # the promoted template hashes to the revision
    mark = emu.mark()
    r.apply(rule, Operation(Op.PROMOTE, Role.TARGET, revision=revision))
    assert emu.requests(mark, writes=True) == []
    r.apply(rule, Operation(Op.RESTORE, Role.TARGET, template=before["spec"]["template"]))
    restored = get_dep(kube, ns, "web")
    assert restored["spec"]["template"] == before["spec"]["template"]
    assert PROMOTED_ANNOTATION not in (restored["metadata"].get("annotations") or {})


def test_promote_refuses_a_stale_canary(kube: Kube, ns: str) -> None:
    make_target(kube, ns)
    rule, _ = make_rule(kube, ns)
    r = router(kube)
    ensure(r, rule)
    with pytest.raises(Conflict, match="not other-revision"):
        r.apply(rule, Operation(Op.PROMOTE, Role.TARGET, revision="other-revision"))


def test_an_unavailable_deployment_reports_why(kube: Kube, ns: str) -> None:
    make_target(kube, ns)
    rule, _ = make_rule(kube, ns)
    r = router(kube)
    ensure(r, rule)
    kube.request("PATCH", path_of("apps/v1", "deployments", ns, "web-canary"),
                 body={"metadata": {"annotations": {UNAVAILABLE: "true"}}},
                 content_type="application/merge-patch+json")
    scale(r, rule, Role.CANARY, 1)
    o = wait_for(lambda: (x := r.observe(rule)).canary and x.canary.pods == 1 and x)
    assert o.canary.available == 0 and not o.canary.rolled_out


def test_finalizer_is_added_and_removed(kube: Kube, ns: str) -> None:
    make_rule(kube, ns)
    got = rules.set_finalizer(kube, ns, "assistant", True)
    assert got is not None and got["metadata"]["finalizers"] == [FINALIZER]
    again = rules.set_finalizer(kube, ns, "assistant", True)
    assert again is not None and again["metadata"]["finalizers"] == [FINALIZER]
    gone = rules.set_finalizer(kube, ns, "assistant", False)
    assert gone is not None and not gone["metadata"].get("finalizers")
    assert rules.set_finalizer(kube, ns, "missing", True) is None


def test_watch_deployments_by_label_selector(kube: Kube, ns: str) -> None:
    make_target(kube, ns)
    rule, _ = make_rule(kube, ns)
    items, rv = dp.list_deployments(kube, ns, MANAGED_SELECTOR)
    assert items == []
    threading.Timer(0.1, ensure, (router(kube), rule)).start()
    for kind, obj in dp.watch_deployments(kube, ns, rv, 5, MANAGED_SELECTOR):
        assert (kind, obj["metadata"]["name"]) == ("ADDED", "web-canary")
        break


def test_a_closed_watch_ends_at_once(kube: Kube, ns: str) -> None:
    closers: list[Callable[[], None]] = []
    _, rv = dp.list_deployments(kube, ns)
    started = time.monotonic()
    threading.Timer(0.3, lambda: closers[0]()).start()
    with pytest.raises(KubeError):  # the read fails once its socket is shut down
        for _ in dp.watch_deployments(kube, ns, rv, 30, on_open=closers.append):
            pass
    assert time.monotonic() - started < 5


# --------------------------------------------------------------------------- rules


def test_rule_status_annotations_and_apply(kube: Kube, ns: str) -> None:
    _, obj = make_rule(kube, ns)
    rv = obj["metadata"]["resourceVersion"]
    written = rules.patch_status(kube, ns, "assistant",
                                 {"phase": "Progressing", "weight": 10,
                                  "statistics": {"stats": {"n": 1}, "cursor": 3}}, rv)
    assert written["status"]["phase"] == "Progressing"
    with pytest.raises(Conflict):  # the version we read is stale now
        rules.patch_status(kube, ns, "assistant", {"phase": "Paused"}, rv)
    # the whole status is replaced: keys the new status lacks are gone
    written = rules.patch_status(kube, ns, "assistant", {"phase": "Progressing",
                                                         "statistics": {"cursor": 4}},
                                 written["metadata"]["resourceVersion"])
    assert written["status"]["statistics"] == {"cursor": 4}
    assert written["metadata"]["generation"] == 1

    rules.set_annotations(kube, ns, "assistant", {"canary.llmops.dev/action": "pause",
                                                  "keep": "yes"})
    got = rules.set_annotations(kube, ns, "assistant", {"canary.llmops.dev/action": None})
    assert got["metadata"]["annotations"] == {"keep": "yes"}
    with pytest.raises(Conflict):
        rules.set_annotations(kube, ns, "assistant", {"x": "1"}, resource_version=rv)

    rule = rules.get_rule(kube, ns, "assistant")
    manifest = {k: v for k, v in rule.items() if k != "status"}
    manifest["spec"]["steps"] = [{"weight": 20}]
    assert rules.apply_rule(kube, manifest)["metadata"]["generation"] == 2
    assert rules.get_rule(kube, ns, "assistant")["status"]["phase"] == "Progressing"
    manifest["spec"]["steps"] = [{"weight": 0}]
    with pytest.raises(Invalid) as exc:
        rules.apply_rule(kube, manifest)
    assert [f for f, _ in exc.value.causes] == ["spec.steps[0].weight"]
    items, list_rv = rules.list_rules(kube, ns)
    assert [i["metadata"]["name"] for i in items] == ["assistant"] and int(list_rv) > 0
    assert items[0]["kind"] == "CanaryRule"


def test_watch_rules_resumes_and_raises_gone(kube: Kube, emu: EmulatorHandle, ns: str) -> None:
    _, first = make_rule(kube, ns, name="one")
    make_rule(kube, ns, name="two")
    rules.set_annotations(kube, ns, "one", {"a": "b"})
    seen: list[tuple[str, str]] = []
    for kind, obj in rules.watch_rules(kube, ns, first["metadata"]["resourceVersion"], 5):
        seen.append((kind, obj["metadata"]["name"]))
        if len(seen) == 2:
            break
    assert seen == [("ADDED", "two"), ("MODIFIED", "one")]
    # a list gives the version to watch from; a live change arrives on the stream
    _, rv = rules.list_rules(kube, ns)
    threading.Timer(0.2, rules.set_annotations, (kube, ns, "two", {"c": "d"})).start()
    for kind, obj in rules.watch_rules(kube, None, rv, 5):
        if kind != "BOOKMARK":
            assert (kind, obj["metadata"]["name"]) == ("MODIFIED", "two")
            break
    emu.compact()
    with pytest.raises(Gone):
        for _ in rules.watch_rules(kube, ns, first["metadata"]["resourceVersion"], 5):
            pass


# --------------------------------------------------------------------------- events, secrets


def test_events_about_a_rule(kube: Kube, ns: str) -> None:
    _, obj = make_rule(kube, ns)
    long = "guard trustedCompletion failed " * 100
    events.emit(kube, obj, "Warning", "RollbackTriggered", long)
    events.emit(kube, obj, "Warning", "RollbackTriggered", long)
    events.emit(kube, obj, "Normal", "StepAdvanced", "step 2/3")
    got = events.list_events(kube, ns, "assistant")
    assert [(e["type"], e["reason"], e["count"]) for e in got] == \
        [("Warning", "RollbackTriggered", 2), ("Normal", "StepAdvanced", 1)]
    first = got[0]
    assert len(first["message"]) == events.MAX_MESSAGE and first["message"].endswith("…")
    assert first["involvedObject"] == {
        "apiVersion": GV, "kind": "CanaryRule", "name": "assistant", "namespace": ns,
        "uid": obj["metadata"]["uid"], "resourceVersion": obj["metadata"]["resourceVersion"]}
    with pytest.raises(ValueError):
        events.emit(kube, obj, "Error", "X", "y")


def test_read_secret_key(kube: Kube, ns: str) -> None:
    kube.request("POST", path_of("v1", "secrets", ns), body={
        "metadata": {"name": "judge", "labels": {JUDGE_KEY_LABEL: "true"}},
        "data": {"api-key": base64.b64encode(b"sk-test-123").decode()}})
    assert judge_key.read_secret_key(kube, ns, "judge", "api-key") == "sk-test-123"
    kube.request("POST", path_of("v1", "secrets", ns), body={
        "metadata": {"name": "db-password"},
        "data": {"api-key": base64.b64encode(b"hunter2-db").decode()}})
    with pytest.raises(Forbidden) as refused:  # not marked for the judge: never used
        judge_key.read_secret_key(kube, ns, "db-password", "api-key")
    assert "not marked for llm-canary" in str(refused.value)
    assert "hunter2" not in str(refused.value)
    with pytest.raises(NotFound) as exc:
        judge_key.read_secret_key(kube, ns, "judge", "other")
    assert exc.value.reason == "KeyMissing" and "sk-test" not in str(exc.value)
    with pytest.raises(NotFound):
        judge_key.read_secret_key(kube, ns, "missing", "api-key")


# --------------------------------------------------------------------------- errors, connect


def test_error_mapping(kube: Kube, emu: EmulatorHandle, ns: str) -> None:
    path = path_of("v1", "secrets", ns)
    for status, kind in ((500, Transient), (503, Transient), (429, Transient),
                         (403, Forbidden), (422, Invalid)):
        emu.add_fault(f"/namespaces/{ns}/secrets$", method="GET", status=status)
        with pytest.raises(kind) as exc:
            kube.request("GET", path)
        assert exc.value.status == status
    kube.request("POST", path, body={"metadata": {"name": "s"}})
    with pytest.raises(AlreadyExists):
        kube.request("POST", path, body={"metadata": {"name": "s"}})
    emu.add_fault(f"/namespaces/{ns}/secrets$", method="GET", timeout=True)
    started = time.monotonic()
    with pytest.raises(Transient):  # dropped connection: not retried behind our back
        kube.request("GET", path)
    assert time.monotonic() - started < 2
    assert emu.faults() == []


def test_connect_from_kubeconfig_env_and_unreachable(emu: EmulatorHandle, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config"
    write_kubeconfig(config, emu.url, emu.token, namespace="team-a")
    monkeypatch.setenv("KUBECONFIG", str(config))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    kube = connect()
    assert kube.namespace == "team-a"
    assert kube.request("GET", path_of("v1", "secrets", "team-a"))["items"] == []
    kube.close()
    dead = tmp_path / "dead"
    write_kubeconfig(dead, "http://127.0.0.1:9", None)
    with pytest.raises(Transient):
        connect(str(dead), timeout=(0.5, 1.0)).request("GET", "/api/v1/namespaces/x/secrets")
    with pytest.raises(KubeError, match=r"no Kubernetes configuration: kubeconfig .*missing"):
        connect(str(tmp_path / "missing"))


# --------------------------------------------------------------------------- leader election


def elector(kube: Kube, ns: str, identity: str) -> LeaderElector:
    return LeaderElector(kube, ns, "controller", identity, lease_seconds=2, renew_seconds=1,
                         retry_seconds=0.1)


def test_leader_election_one_wins_and_release_hands_over(kube: Kube, ns: str) -> None:
    a, b = elector(kube, ns, "a"), elector(kube, ns, "b")
    assert a.try_acquire_or_renew() and a.is_leader
    assert not b.try_acquire_or_renew() and not b.is_leader
    assert a.try_acquire_or_renew()  # renewing
    a.release()
    assert not a.is_leader
    assert b.try_acquire_or_renew() and b.is_leader  # no wait after a release
    lease = kube.request("GET", path_of("coordination.k8s.io/v1", "leases", ns, "controller"))
    assert lease["spec"]["holderIdentity"] == "b" and lease["spec"]["leaseTransitions"] == 1


def test_leader_election_takes_over_when_renewals_stop(kube: Kube, ns: str) -> None:
    a, b = elector(kube, ns, "a"), elector(kube, ns, "b")
    assert a.try_acquire_or_renew()
    started = time.monotonic()
    assert not b.try_acquire_or_renew()
    wait_for(lambda: not a.is_leader, timeout=3)  # a stops renewing: deadline passes
    assert time.monotonic() - started >= 0.9
    got = wait_for(b.try_acquire_or_renew, timeout=4)  # after a lease duration unchanged
    assert got and time.monotonic() - started >= 1.9
    assert not a.try_acquire_or_renew() and not a.is_leader


def test_leader_threads_callbacks_and_lost_lease(kube: Kube, emu: EmulatorHandle,
                                                 ns: str) -> None:
    log: list[str] = []
    a, b = elector(kube, ns, "a"), elector(kube, ns, "b")
    try:
        a.start(lambda: log.append("a+"), lambda: log.append("a-"))
        wait_for(lambda: log == ["a+"])
        b.start(lambda: log.append("b+"), lambda: log.append("b-"))
        time.sleep(0.3)
        assert log == ["a+"] and a.is_leader and not b.is_leader

        # a cannot renew any more: it stops acting at its renew deadline (1 s)
        emu.add_fault(f"/namespaces/{ns}/leases/controller$", method="PUT", status=500,
                      count=-1)
        wait_for(lambda: "a-" in log, timeout=3)
        assert not a.is_leader and log == ["a+", "a-"]
        # a dies without releasing; b takes over once the record is a lease duration old
        a.stop(release=False)
        emu.clear_faults()
        wait_for(lambda: "b+" in log, timeout=5)
        assert log == ["a+", "a-", "b+"] and b.is_leader

        # another holder appears: b stops at once, without waiting for its deadline
        path = path_of("coordination.k8s.io/v1", "leases", ns, "controller")
        lease = kube.request("GET", path)
        lease["spec"]["holderIdentity"] = "intruder"
        kube.request("PUT", path, body=lease)
        wait_for(lambda: log[-1] == "b-", timeout=0.8)
        assert not b.is_leader
    finally:
        a.stop()
        b.stop()
    assert log == ["a+", "a-", "b+", "b-"]


def test_leader_reacquires_its_own_lease_after_an_outage(kube: Kube, emu: EmulatorHandle,
                                                         ns: str) -> None:
    log: list[str] = []
    a = elector(kube, ns, "a")
    try:
        a.start(lambda: log.append("+"), lambda: log.append("-"))
        wait_for(lambda: log == ["+"])
        emu.add_fault(f"/namespaces/{ns}/leases/controller$", status=503, count=-1)
        wait_for(lambda: log == ["+", "-"], timeout=3)
        emu.clear_faults()
        wait_for(lambda: log == ["+", "-", "+"], timeout=3)
    finally:
        a.stop()


def test_leader_stop_releases(kube: Kube, ns: str) -> None:
    log: list[str] = []
    a = elector(kube, ns, "a")
    a.start(lambda: log.append("+"), lambda: log.append("-"))
    wait_for(lambda: log == ["+"])
    a.stop()
    assert log == ["+", "-"]
    lease = kube.request("GET", path_of("coordination.k8s.io/v1", "leases", ns, "controller"))
    assert lease["spec"]["holderIdentity"] == ""
    with pytest.raises(ValueError):
        LeaderElector(kube, ns, "x", "y", lease_seconds=5, renew_seconds=6)
