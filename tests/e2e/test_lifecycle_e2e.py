"""A real Deployment's lifecycle, end to end: pods that never become ready or take their
time, a rule deleted mid-rollout, a target deleted, an autoscaler that owns the target's
replicas, a second rule on the same target, a failing API call, a controller upgrade.

Pods are the emulator's: ``never-ready`` and ``slow-ready`` images behave as their names
say (slow: 3 s here), and availability is read from the pods themselves over time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from canary_playground.kube import EmulatorHandle
from canary_playground.scripted_judge import ScriptedJudge

from controller.actuator import rules
from controller.actuator.client import Kube
from controller.actuator.errors import NotFound

from .harness import (
    NS,
    Controller,
    actions,
    canary_revision,
    condition,
    deployment,
    event_reasons,
    phase,
    ready_pods,
    records,
    replicas,
    rule_manifest,
    setup,
    status_of,
    wait_for,
)

TARGET_PODS = "app=bot,!canary.llmops.dev/cohort"


class PodCounter:
    """Samples the target's ready pods every 50 ms in the background (min and history)."""

    def __init__(self, emu: EmulatorHandle, selector: str = TARGET_PODS) -> None:
        self.emu, self.selector = emu, selector
        self.seen: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.seen.append(ready_pods(self.emu, self.selector))

    def stop(self) -> list[int]:
        self._stop.set()
        self._thread.join(5)
        return self.seen


def rule_gone(kube: Kube) -> bool:
    try:
        rules.get_rule(kube, NS, "bot")
    except NotFound:
        return True
    return False


def test_a_never_ready_canary_rolls_back_at_the_deadline_and_the_target_keeps_its_pods(
    kube: Kube, judge: ScriptedJudge, emu: EmulatorHandle,
    controllers: Callable[..., Controller],
) -> None:
    setup(kube, judge.base_url, canary={"container": "app", "image": "bot:never-ready"},
          progressDeadlineSeconds=4)
    wait_for("target ready", lambda: ready_pods(emu, TARGET_PODS) == 4)
    pods = PodCounter(emu)
    c = controllers()
    wait_for("canary pod running", lambda: replicas(kube, "bot-canary") == 1, c)
    waiting = wait_for("waiting condition", lambda: condition(kube, "CanaryAvailable"), c)
    assert waiting["status"] == "False" and "0 of 1 canary pods available" in waiting["message"]
    wait_for("rolled back", lambda: phase(kube) == "RolledBack", c, timeout=30)
    seen = pods.stop()
    assert min(seen) >= 4, f"the target went below its availability: {seen}"
    assert replicas(kube, "bot") == 4 and replicas(kube, "bot-canary") == 0
    rollback = next(h for h in status_of(kube)["history"] if h["action"] == "rollback")
    assert "canary not available within 4s" in rollback["reason"]
    assert "ProgressDeadlineExceeded" in event_reasons(kube)
    assert status_of(kube).get("guards") in (None, [])  # never analysed


def test_a_slow_canary_is_waited_for_then_the_rollout_proceeds(
    kube: Kube, judge: ScriptedJudge, emu: EmulatorHandle,
    controllers: Callable[..., Controller],
) -> None:
    setup(kube, judge.base_url, canary={"container": "app", "image": "bot:slow-ready"},
          steps=[{"weight": 25}, {"weight": 50}], progressDeadlineSeconds=30)
    wait_for("target ready", lambda: ready_pods(emu, TARGET_PODS) == 4)
    pods = PodCounter(emu, "app=bot")  # every pod the Service sends traffic to
    c = controllers()
    wait_for("canary pod created", lambda: replicas(kube, "bot-canary") == 1, c)
    message = wait_for("waiting", lambda: "waiting for the canary" in status_of(kube).get(
        "message", "") and status_of(kube)["message"], c)
    assert replicas(kube, "bot") == 4  # not shrunk for a pod that is not serving
    revision = canary_revision(kube)
    wait_for("canary available", lambda: status_of(kube).get("stepReadyAt"), c, timeout=20)
    assert replicas(kube, "bot") == 3 and "1 canary pods available" in condition(
        kube, "CanaryAvailable")["message"]
    c.post_samples(records(150, revision=revision, share=0.25))
    wait_for("proceeds to step 2", lambda: status_of(kube).get("currentStep") == 1, c)
    wait_for("step 2's slow pod available", lambda: status_of(kube).get("stepReadyAt"), c,
             timeout=20)
    assert (replicas(kube, "bot"), replicas(kube, "bot-canary")) == (2, 2)
    seen = pods.stop()
    assert min(seen) >= 4, seen  # a target pod goes only once a canary pod serves
    assert "waiting for the canary" in message


def test_deleting_a_rule_mid_rollout_restores_the_target_before_the_finalizer_goes(
    kube: Kube, judge: ScriptedJudge, emu: EmulatorHandle,
    controllers: Callable[..., Controller],
) -> None:
    setup(kube, judge.base_url, steps=[{"weight": 50}])
    c = controllers()
    wait_for("step reached", lambda: status_of(kube).get("stepReadyAt"), c)
    assert replicas(kube, "bot") == 2 and replicas(kube, "bot-canary") == 2
    rules.delete_rule(kube, NS, "bot")
    obj = rules.get_rule(kube, NS, "bot")
    assert obj["metadata"]["deletionTimestamp"]  # held by the finalizer
    seen: list[tuple[int | None, int]] = []

    def gone() -> bool:
        done = rule_gone(kube)
        seen.append((replicas(kube, "bot"), ready_pods(emu, TARGET_PODS)))
        return done

    wait_for("rule deleted", gone, c, timeout=30)
    assert seen[-1] == (4, 4), "the finalizer went before the target was back"
    assert all(r >= 2 for _, r in seen)
    wait_for("canary collected", lambda: replicas(kube, "bot-canary") is None, c)


def test_a_finished_rule_is_deleted_at_once(
    kube: Kube, judge: ScriptedJudge, controllers: Callable[..., Controller],
) -> None:
    setup(kube, judge.base_url, canary={"container": "app", "image": "bot:1"})
    c = controllers()
    wait_for("no-op", lambda: phase(kube) == "Succeeded", c)
    assert not rules.get_rule(kube, NS, "bot")["metadata"].get("finalizers")
    rules.delete_rule(kube, NS, "bot")
    assert rule_gone(kube)


def test_a_target_deleted_mid_rollout_removes_the_canary_then_fails(
    kube: Kube, judge: ScriptedJudge, controllers: Callable[..., Controller],
) -> None:
    setup(kube, judge.base_url)
    c = controllers()
    wait_for("canary", lambda: replicas(kube, "bot-canary") == 1, c)
    kube.request("DELETE", f"/apis/apps/v1/namespaces/{NS}/deployments/bot")
    wait_for("failed", lambda: phase(kube) == "Failed", c)
    assert replicas(kube, "bot-canary") == 0
    assert "deleted during the rollout" in status_of(kube)["message"]
    wait_for("finalizer released", lambda: not rules.get_rule(kube, NS, "bot")["metadata"].get(
        "finalizers"), c)


def hpa(desired: int) -> dict[str, object]:
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "bot", "namespace": NS,
                         "annotations": {"emulator.llmops.dev/desired-replicas": str(desired)}},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                        "name": "bot"},
                     "minReplicas": 2, "maxReplicas": 10}}


def test_an_autoscaler_on_the_target_is_not_fought(
    kube: Kube, judge: ScriptedJudge, emu: EmulatorHandle,
    controllers: Callable[..., Controller],
) -> None:
    setup(kube, judge.base_url, steps=[{"weight": 20}, {"weight": 40}])
    path = f"/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers"
    kube.request("POST", path, body=hpa(6))
    wait_for("HPA scaled the target", lambda: replicas(kube, "bot") == 6)
    mark = emu.mark()
    c = controllers()
    wait_for("canary at its share", lambda: status_of(kube).get("stepReadyAt"), c)
    assert replicas(kube, "bot-canary") == 2  # 6·20/80 = 1.5 -> 2, beside the 6
    assert status_of(kube)["autoscaledBy"] == "bot"
    kube.request("PATCH", f"{path}/bot", body={"metadata": {"annotations": {
        "emulator.llmops.dev/desired-replicas": "8"}}},
        content_type="application/merge-patch+json")
    wait_for("the canary follows the HPA", lambda: replicas(kube, "bot") == 8
             and replicas(kube, "bot-canary") == 2, c)
    time.sleep(1.5)  # a few reconciles and HPA syncs: nobody fights
    user = emu.controller.username if emu.controller else ""
    ours = [r for r in emu.requests(mark, writes=True) if r.get("user") == user]
    assert not [r for r in ours if "/deployments/bot/" in r["path"] + "/"
                and "/deployments/bot-" not in r["path"]], "the controller wrote the target"
    assert replicas(kube, "bot") == 8


def test_a_second_rule_on_a_target_waits_with_the_owner_named(
    kube: Kube, judge: ScriptedJudge, controllers: Callable[..., Controller],
) -> None:
    setup(kube, judge.base_url)
    c = controllers()
    wait_for("first progressing", lambda: phase(kube) == "Progressing", c)
    rules.apply_rule(kube, rule_manifest(judge.base_url, name="bot-two",
                                         canary={"container": "app", "image": "bot:2"}))
    claimed = wait_for("claimed condition", lambda: condition(kube, "Claimed", "bot-two"), c)
    assert claimed["status"] == "False" and "CanaryRule bot" in claimed["message"]
    wait_for("the Event", lambda: "TargetManagedByAnotherRule" in event_reasons(kube, "bot-two"),
             c)
    assert phase(kube, "bot-two") == "Pending"
    assert deployment(kube, "bot-canary")["metadata"]["labels"]["canary.llmops.dev/rule"] == "bot"
    rules.delete_rule(kube, NS, "bot")
    wait_for("the second rule takes over", lambda: phase(kube, "bot-two") == "Progressing", c,
             timeout=30)


def test_a_forbidden_operation_is_visible_and_retried(
    kube: Kube, judge: ScriptedJudge, emu: EmulatorHandle,
    controllers: Callable[..., Controller],
) -> None:
    setup(kube, judge.base_url)
    emu.add_fault(f"/namespaces/{NS}/deployments$", method="POST", status=403, count=-1,
                  message='deployments.apps is forbidden: User "x" cannot create resource '
                          '"deployments" in API group "apps"')
    c = controllers()
    synced = wait_for("Synced=False", lambda: condition(kube, "Synced").get("status") == "False"
                      and condition(kube, "Synced"), c)
    assert synced["reason"] == "Forbidden" and "cannot create resource" in synced["message"]
    wait_for("the Event", lambda: "OperationFailed" in event_reasons(kube), c)
    def attempts() -> list[float]:
        return [r["at"] for r in emu.requests() if r["method"] == "POST"
                and r["path"].endswith("/deployments")]

    times = wait_for("five attempts", lambda: (t := attempts())[4:] and t, c, timeout=90)
    # capped exponential backoff (1 s, 2 s, 4 s, ... +-25%): five attempts take >= 11 s;
    # a hot loop would make them within a second (load can only stretch the spacing)
    assert times[4] - times[0] >= 5.0, f"retried in a hot loop: {times[:5]}"
    emu.clear_faults()
    wait_for("recovered", lambda: condition(kube, "Synced").get("status") == "True", c,
             timeout=60)
    wait_for("canary", lambda: replicas(kube, "bot-canary") == 1, c)


def test_a_controller_upgrade_mid_rollout_loses_nothing_and_acts_once(
    kube: Kube, judge: ScriptedJudge, controllers: Callable[..., Controller],
) -> None:
    """The chart's rolling update (maxSurge 1, maxUnavailable 1): the new pod starts, the
    old one is terminated without waiting for the new one to be Ready, releases the lease
    on SIGTERM, and the new one carries on from the rule's status."""
    setup(kube, judge.base_url, minSamplesPerCohort=120, steps=[{"weight": 50}])
    old = controllers(name="old", leader_elect=True)
    revision = wait_for("old leads", lambda: status_of(kube).get("stepReadyAt")
                        and canary_revision(kube), old)
    old.post_samples(records(70, revision=revision))
    wait_for("counted", lambda: any(g.get("nCanary", 0) >= 70
                                    for g in status_of(kube).get("guards", [])), old)
    new = controllers(name="new", leader_elect=True, env={"CANARY_BUILD": "next"})
    old.stop()  # SIGTERM: releases the lease
    wait_for("new leads", lambda: new.post_samples(records(70, start=70, revision=revision))
             .status_code == 200, new, timeout=30)
    wait_for("promoted", lambda: phase(kube) == "Succeeded", new)
    done = actions(kube)
    assert done.count("start") == 1 and done.count("promote") == 1
    success = next(g for g in status_of(kube)["guards"] if g["name"] == "success")
    assert success["nCanary"] == 140  # the old pod's samples were analysed before it went
