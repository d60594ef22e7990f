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
from hypothesis import given
from hypothesis import strategies as st

from controller.actuator import deployments as dp
from controller.actuator import events, rules, secrets
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
from controller.conventions import JUDGE_KEY_LABEL
from controller.engine import canary_revision
from controller.models import CanaryRule

GV = "canary.llmops.dev/v1alpha1"


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


def wait_for(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def make_target(kube: Kube, ns: str, replicas: int = 4, name: str = "web") -> dict[str, Any]:
    body = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate"},
            "template": {"metadata": {"labels": {"app": name, "version": "v1"}}, "spec": {
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


# --------------------------------------------------------------------------- split


SPLITS = [  # (total, weight) -> (target, canary)
    (10, 10, (9, 1)), (10, 25, (7, 3)), (10, 50, (5, 5)), (10, 99, (1, 9)),
    (10, 100, (0, 10)), (10, 0, (10, 0)), (4, 10, (3, 1)), (4, 50, (2, 2)),
    (4, 90, (1, 3)), (3, 50, (1, 2)), (2, 1, (1, 1)), (2, 99, (1, 1)), (1, 10, (1, 1)),
    (1, 100, (0, 1)), (20, 5, (19, 1)), (20, 12, (18, 2)),
]


@pytest.mark.parametrize(("total", "weight", "expected"), SPLITS)
def test_split_table(total: int, weight: int, expected: tuple[int, int]) -> None:
    assert dp.split(weight, total) == expected


@given(st.integers(min_value=2, max_value=500), st.integers(min_value=1, max_value=99))
def test_split_invariants(total: int, weight: int) -> None:
    target, canary = dp.split(weight, total)
    assert target + canary == total
    assert canary >= 1 and target >= 1
    # nearest pod unless the clamps forced a pod onto a cohort
    if 1 < total * weight / 100 < total - 1:
        assert abs(canary - total * weight / 100) <= 0.5


@pytest.mark.parametrize(("total", "weight"), [(4, 10), (10, 25), (1, 50), (3, 100)])
def test_set_weight_scales_both(kube: Kube, emu: EmulatorHandle, ns: str, total: int,
                                weight: int) -> None:
    make_target(kube, ns, replicas=total)
    rule, _ = make_rule(kube, ns)
    dp.ensure_canary(kube, rule, canary_revision(rule.spec))
    dp.set_weight(kube, rule, weight, total)
    want = dp.split(weight, total)
    assert (dp.replicas_of(get_dep(kube, ns, "web")),
            dp.replicas_of(get_dep(kube, ns, "web-canary"))) == want
    observed = wait_for(lambda: (o := dp.observe(kube, rule, total)).canary_ready and o)
    assert (observed.target_replicas, observed.canary_replicas) == want
    mark = emu.mark()
    dp.set_weight(kube, rule, weight, total)
    assert emu.requests(mark, writes=True) == []


# --------------------------------------------------------------------------- canary


def test_ensure_canary_builds_owned_canary(kube: Kube, emu: EmulatorHandle, ns: str) -> None:
    target = make_target(kube, ns)
    rule, obj = make_rule(kube, ns)
    revision = canary_revision(rule.spec)
    assert dp.observe(kube, rule, None).canary_replicas == 0
    dp.ensure_canary(kube, rule, revision)
    canary = get_dep(kube, ns, "web-canary")
    meta, spec = canary["metadata"], canary["spec"]
    assert meta["ownerReferences"] == [{
        "apiVersion": GV, "kind": "CanaryRule", "name": "assistant",
        "uid": obj["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]
    assert meta["annotations"][dp.REVISION_ANNOTATION] == revision
    assert meta["labels"][dp.COHORT_LABEL] == "canary"
    # the target's strategy, as the API server defaulted it (RollingUpdate 25%/25%)
    assert spec["replicas"] == 0 and spec["strategy"] == target["spec"]["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
    assert spec["selector"] == {"matchLabels": {"app": "web", dp.COHORT_LABEL: "canary"}}
    tpl = spec["template"]
    assert tpl["metadata"]["labels"] == {"app": "web", "version": "v1", "prompt": "v7",
                                         dp.COHORT_LABEL: "canary"}
    app, proxy = tpl["spec"]["containers"]
    assert app["image"] == "assistant:2" and proxy["image"] == "envoy:1"
    assert env_of(app) == {"MODEL": "large", "X": "1", "PROMPT": "v7", "CANARY_COHORT": "canary",
                           "CANARY_REVISION": revision}
    assert env_of(proxy) == {"CANARY_COHORT": "canary", "CANARY_REVISION": revision}
    # the target is untouched, and its selector (the Service's) matches canary pods too
    assert get_dep(kube, ns, "web")["spec"] == target["spec"]

    mark = emu.mark()
    dp.ensure_canary(kube, rule, revision)
    assert emu.requests(mark, writes=True) == []


def test_ensure_canary_follows_changes(kube: Kube, emu: EmulatorHandle, ns: str) -> None:
    make_target(kube, ns)
    rule, _ = make_rule(kube, ns)
    dp.ensure_canary(kube, rule, canary_revision(rule.spec))
    dp.set_weight(kube, rule, 10, 4)
    # a new canary revision and a changed baseline both reach the canary, in one patch
    manifest = rule.model_dump(mode="json", by_alias=True, exclude_none=True)
    manifest["spec"]["canary"] = {"container": "proxy", "image": "envoy:2"}
    obj = rules.apply_rule(kube, manifest)
    rule = CanaryRule.model_validate({k: v for k, v in obj.items() if k != "status"})
    kube.request("PATCH", path_of("apps/v1", "deployments", ns, "web"),
                 body={"spec": {"template": {"metadata": {"labels": {"version": "v2"}}}}},
                 content_type="application/merge-patch+json")
    mark = emu.mark()
    dp.ensure_canary(kube, rule, canary_revision(rule.spec))
    assert [r["method"] for r in emu.requests(mark, writes=True)] == ["PATCH"]
    canary = get_dep(kube, ns, "web-canary")
    app, proxy = canary["spec"]["template"]["spec"]["containers"]
    assert app["image"] == "assistant:1" and env_of(app)["MODEL"] == "small"
    assert proxy["image"] == "envoy:2"
    assert canary["spec"]["template"]["metadata"]["labels"]["version"] == "v2"
    assert "prompt" not in canary["spec"]["template"]["metadata"]["labels"]
    assert canary["spec"]["replicas"] == 1  # replicas are set_weight's business


def test_ensure_canary_errors(kube: Kube, ns: str) -> None:
    rule, _ = make_rule(kube, ns, canary={"container": "nope", "image": "x:1"})
    with pytest.raises(NotFound):
        dp.ensure_canary(kube, rule, "r")  # no target yet
    with pytest.raises(NotFound):
        dp.observe(kube, rule, None)
    make_target(kube, ns)
    with pytest.raises(Invalid, match="nope"):
        dp.ensure_canary(kube, rule, "r")
    # a Deployment named like the canary that we did not make is not taken over
    make_target(kube, ns, name="api")
    kube.request("POST", path_of("apps/v1", "deployments", ns), body={
        "metadata": {"name": "api-canary"}, "spec": {
            "selector": {"matchLabels": {"app": "x"}},
            "template": {"metadata": {"labels": {"app": "x"}},
                         "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
    other, _ = make_rule(kube, ns, name="other", target="api")
    with pytest.raises(Invalid, match="refusing"):
        dp.ensure_canary(kube, other, canary_revision(other.spec))


def test_conflicts_are_retried_then_reported(kube: Kube, emu: EmulatorHandle, ns: str) -> None:
    make_target(kube, ns)
    rule, _ = make_rule(kube, ns)
    dp.ensure_canary(kube, rule, canary_revision(rule.spec))
    # the deployment controller writes the target's status while it rolls out: let it
    # settle, so that the only conflicts are the injected ones
    wait_for(lambda: dp.is_available(get_dep(kube, ns, "web")))
    emu.wait_idle()
    emu.add_fault(f"/namespaces/{ns}/deployments/web-canary/scale$", method="PATCH",
                  status=409, count=2)
    mark = emu.mark()
    dp.set_weight(kube, rule, 50, 4)
    scale_writes = [r for r in emu.requests(mark, writes=True) if r["path"].endswith("/scale")]
    assert [r["status"] for r in scale_writes] == [409, 409, 200, 200]
    assert dp.replicas_of(get_dep(kube, ns, "web-canary")) == 2

    # a real conflict: someone else changes the target between our read and our write
    emu.add_fault(f"/namespaces/{ns}/deployments/web$", method="PATCH", status=409, count=-1)
    with pytest.raises(Conflict):
        dp.promote(kube, rule, canary_revision(rule.spec), 4)
    emu.clear_faults()
    assert dp.replicas_of(get_dep(kube, ns, "web")) == 2


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


# --------------------------------------------------------------------------- promote, rollback


def test_promote_then_scale_down(kube: Kube, emu: EmulatorHandle, ns: str) -> None:
    make_target(kube, ns)
    rule, _ = make_rule(kube, ns)
    revision = canary_revision(rule.spec)
    dp.ensure_canary(kube, rule, revision)
    dp.set_weight(kube, rule, 50, 4)
    wait_for(lambda: dp.observe(kube, rule, 4).canary_ready)
    canary_tpl = get_dep(kube, ns, "web-canary")["spec"]["template"]

    emu.configure(readinessDelay=0.4)
    try:
        dp.promote(kube, rule, revision, 4)
        assert not dp.observe(kube, rule, 4).target_promoted  # not rolled out yet
        observed = wait_for(lambda: (o := dp.observe(kube, rule, 4)).target_promoted and o)
    finally:
        emu.configure(readinessDelay=0.02)
    assert observed.target_replicas == 4
    target = get_dep(kube, ns, "web")
    tpl = target["spec"]["template"]
    assert tpl == dp.promoted_template(canary_tpl)
    assert dp.COHORT_LABEL not in tpl["metadata"]["labels"]
    assert tpl["metadata"]["labels"]["prompt"] == "v7"
    assert all("CANARY_COHORT" not in env_of(c) and "CANARY_REVISION" not in env_of(c)
               for c in tpl["spec"]["containers"])
    assert tpl["spec"]["containers"][0]["image"] == "assistant:2"
    assert target["metadata"]["annotations"][dp.PROMOTED_ANNOTATION] == revision

    mark = emu.mark()
    dp.ensure_canary(kube, rule, revision)  # the engine keeps ensuring while promoting
    dp.promote(kube, rule, revision, 4)
    assert emu.requests(mark, writes=True) == []

    dp.scale_down_canary(kube, rule, 4)
    observed = wait_for(lambda: (o := dp.observe(kube, rule, 4)).canary_replicas == 0 and o)
    assert observed.target_promoted and observed.target_replicas == 4
    mark = emu.mark()
    dp.scale_down_canary(kube, rule, 4)
    assert emu.requests(mark, writes=True) == []


def test_promote_refuses_a_stale_canary(kube: Kube, ns: str) -> None:
    make_target(kube, ns)
    rule, _ = make_rule(kube, ns)
    dp.ensure_canary(kube, rule, "old-revision")
    with pytest.raises(Conflict, match="old-revision"):
        dp.promote(kube, rule, canary_revision(rule.spec), 4)


def test_rollback_leaves_target_template(kube: Kube, emu: EmulatorHandle, ns: str) -> None:
    before = make_target(kube, ns, replicas=5)
    rule, _ = make_rule(kube, ns)
    dp.ensure_canary(kube, rule, canary_revision(rule.spec))
    dp.set_weight(kube, rule, 50, 5)
    assert dp.replicas_of(get_dep(kube, ns, "web")) == 2
    mark = emu.mark()
    dp.scale_down_canary(kube, rule, 5)
    writes = emu.requests(mark, writes=True)
    assert [r["path"].rsplit("/", 2)[-2] for r in writes] == ["web", "web-canary"]  # grow first
    target = get_dep(kube, ns, "web")
    assert target["spec"]["replicas"] == 5
    assert target["spec"]["template"] == before["spec"]["template"]
    assert wait_for(lambda: dp.observe(kube, rule, 5).canary_replicas == 0)
    dp.scale_down_canary(kube, rule, 5)  # idempotent, and fine without a canary
    kube.request("DELETE", path_of("apps/v1", "deployments", ns, "web-canary"))
    dp.scale_down_canary(kube, rule, 5)


def test_deleting_the_rule_collects_the_canary(kube: Kube, ns: str) -> None:
    make_target(kube, ns)
    rule, _ = make_rule(kube, ns)
    dp.ensure_canary(kube, rule, canary_revision(rule.spec))
    rules.delete_rule(kube, ns, "assistant")
    # the garbage collector works in the background, as in a real cluster
    names = wait_for(lambda: (n := [d["metadata"]["name"] for d in
                                    dp.list_deployments(kube, ns)[0]]) == ["web"] and n)
    assert names == ["web"]


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


def test_watch_deployments(kube: Kube, ns: str) -> None:
    _, rv = dp.list_deployments(kube, ns)
    threading.Timer(0.1, make_target, (kube, ns)).start()
    for kind, obj in dp.watch_deployments(kube, ns, rv, 5):
        assert (kind, obj["metadata"]["name"]) == ("ADDED", "web")
        break


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
    assert secrets.read_secret_key(kube, ns, "judge", "api-key") == "sk-test-123"
    kube.request("POST", path_of("v1", "secrets", ns), body={
        "metadata": {"name": "db-password"},
        "data": {"api-key": base64.b64encode(b"hunter2-db").decode()}})
    with pytest.raises(Forbidden) as refused:  # not marked for the judge: never used
        secrets.read_secret_key(kube, ns, "db-password", "api-key")
    assert "not marked for llm-canary" in str(refused.value)
    assert "hunter2" not in str(refused.value)
    with pytest.raises(NotFound) as exc:
        secrets.read_secret_key(kube, ns, "judge", "other")
    assert exc.value.reason == "KeyMissing" and "sk-test" not in str(exc.value)
    with pytest.raises(NotFound):
        secrets.read_secret_key(kube, ns, "missing", "api-key")


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
    with pytest.raises(KubeError, match="cannot load"):
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
