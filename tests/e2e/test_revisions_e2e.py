"""Evidence belongs to the revision and the baseline that earned it, end to end: a canary
change, a canary equal to the running template, a canary set back to stable, an edit of
the target mid-rollout, a judge outage, and what an operator does afterwards (retry,
undo, a bake after promotion).
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
from canary_playground.kube import EmulatorHandle
from canary_playground.scripted_judge import ScriptedJudge

from controller.actuator import rules
from controller.actuator.client import Kube

from .harness import (
    NS,
    SECRET_KEY,
    Controller,
    actions,
    canary_revision,
    condition,
    deployment,
    env_of,
    event_reasons,
    phase,
    records,
    replicas,
    rule_manifest,
    setup,
    status_of,
    step_reached,
    wait_for,
)


def canaryctl(emu: EmulatorHandle, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controller.cli", *args, "--kubeconfig",
                           emu.kubeconfig], capture_output=True, text=True, timeout=60)


def reapply(kube: Kube, judge_url: str, **rule: Any) -> None:
    rules.apply_rule(kube, rule_manifest(judge_url, **rule))


def test_old_canary_samples_after_a_canary_change_never_touch_the_new_revision(
    kube: Kube, judge: ScriptedJudge, controllers: Callable[..., Controller],
) -> None:
    setup(kube, judge.base_url, steps=[{"weight": 50}])
    c = controllers()
    old = wait_for("first revision ready", lambda: status_of(kube).get("canaryReadyAt")
                   and canary_revision(kube), c)
    reapply(kube, judge.base_url, steps=[{"weight": 50}],
            canary={"container": "app", "image": "bot:2"})
    new = wait_for("new revision", lambda: (r := status_of(kube).get("canaryRevision"))
                   != old and r, c)
    # 40 failing samples of the old canary, stamped after the change
    c.post_samples(records(40, canary_verdict="none", revision=old, prefix="old",
                           cohorts=("canary",)))
    wait_for("new revision available", lambda: status_of(kube).get("canaryReadyAt"), c)
    assert canary_revision(kube) == new
    c.post_samples(records(150, revision=new))
    wait_for("the new revision is promoted", lambda: phase(kube) == "Succeeded", c)
    st = status_of(kube)
    assert "rollback" not in actions(kube)
    restart = next(h for h in st["history"] if h["action"] == "restart")
    assert restart["revision"] == new and "spec.canary changed mid-rollout" in restart["reason"]
    success = next(g for g in st["guards"] if g["name"] == "success")
    assert success["nCanary"] == 150  # only the new revision's samples
    assert env_of(deployment(kube, "bot"))["CANARY_REVISION"] == new


def test_a_canary_equal_to_the_running_template_does_nothing(
    kube: Kube, judge: ScriptedJudge, emu: EmulatorHandle,
    controllers: Callable[..., Controller],
) -> None:
    setup(kube, judge.base_url, canary={"container": "app", "image": "bot:1"})
    mark = emu.mark()
    c = controllers()
    wait_for("no-op", lambda: phase(kube) == "Succeeded", c)
    assert "nothing to roll out" in status_of(kube)["message"]
    assert replicas(kube, "bot-canary") is None
    user = emu.controller.username if emu.controller else ""
    writes = [r for r in emu.requests(mark, writes=True) if r.get("user") == user
              and "/deployments" in r["path"]]
    assert writes == []
    assert actions(kube) == ["no-op"]
    wait_for("the Event", lambda: "NothingToRollOut" in event_reasons(kube), c)


def test_setting_the_canary_back_to_stable_aborts_without_analysis_or_a_new_rollout(
    kube: Kube, judge: ScriptedJudge, controllers: Callable[..., Controller],
) -> None:
    setup(kube, judge.base_url, steps=[{"weight": 50}])
    c = controllers()
    wait_for("step reached", lambda: status_of(kube).get("stepReadyAt"), c)
    assert replicas(kube, "bot") == 2
    reapply(kube, judge.base_url, steps=[{"weight": 50}],
            canary={"container": "app", "env": [{"name": "MODEL_NAME", "value": "old-model"}]})
    wait_for("aborted", lambda: phase(kube) == "RolledBack", c)
    assert replicas(kube, "bot") == 4 and replicas(kube, "bot-canary") == 0
    done = actions(kube)
    assert done.count("start") == 1 and "abort" in done and "restart" not in done
    assert "back to the stable template" in status_of(kube)["message"]
    assert "BackToStable" in event_reasons(kube)
    assert judge.calls == 0  # no analysis
    time.sleep(1.5)
    assert phase(kube) == "RolledBack" and actions(kube) == done


def test_a_target_edit_mid_rollout_raises_drift_and_restarts_with_fresh_evidence(
    kube: Kube, judge: ScriptedJudge, controllers: Callable[..., Controller],
) -> None:
    setup(kube, judge.base_url, steps=[{"weight": 50}], minSamplesPerCohort=200)
    c = controllers()
    revision = wait_for("analysable", lambda: status_of(kube).get("canaryReadyAt")
                        and canary_revision(kube), c)
    c.post_samples(records(80, revision=revision))
    wait_for("counted", lambda: any(g.get("nCanary", 0) >= 80
                                    for g in status_of(kube).get("guards", [])), c)
    kube.request("PATCH", f"/apis/apps/v1/namespaces/{NS}/deployments/bot", body={
        "spec": {"template": {"metadata": {"annotations": {
            "kubectl.kubernetes.io/restartedAt": "2026-11-30T12:00:00Z"}}}}},
        content_type="application/merge-patch+json")
    drift = wait_for("drift", lambda: condition(kube, "TargetChanged").get("status") == "True"
                     and condition(kube, "TargetChanged"), c)
    assert "pod annotation kubectl.kubernetes.io/restartedAt added" in drift["message"]
    wait_for("a TargetChanged Event", lambda: "TargetChanged" in event_reasons(kube), c)
    st = status_of(kube)
    assert actions(kube).count("restart") == 1 and st["currentStep"] == 0
    assert st["canaryRevision"] != revision
    assert all(g["nCanary"] == 0 for g in st.get("guards") or [])  # fresh evidence
    # the canary follows the new baseline, and evidence starts over with both
    new = wait_for("new canary", lambda: (r := canary_revision(kube)) != revision and r, c)
    canary_tpl = deployment(kube, "bot-canary")["spec"]["template"]
    assert canary_tpl["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
    wait_for("analysable again", lambda: status_of(kube).get("canaryReadyAt")
             and status_of(kube).get("baselineEvidenceSince"), c)
    c.post_samples(records(30, revision=new, prefix="after"))
    wait_for("fresh evidence", lambda: any(g.get("nCanary") == 30 for g in status_of(kube)
                                           .get("guards", [])), c)


def test_a_judge_outage_reaches_the_error_limit_with_the_cause_in_status(
    kube: Kube, emu: EmulatorHandle, controllers: Callable[..., Controller],
) -> None:
    down = ScriptedJudge(api_key=SECRET_KEY).start()
    url = down.base_url
    down.stop()  # the judge is gone: connection refused
    setup(kube, url, errorLimit=1, judge={"maxRetries": 0, "timeoutSeconds": 2})
    c = controllers()
    revision = wait_for("analysable", lambda: status_of(kube).get("canaryReadyAt")
                        and canary_revision(kube), c)
    c.post_samples(records(150, revision=revision))
    first = wait_for("one error", lambda: status_of(kube).get("consecutiveErrors") == 1, c,
                     timeout=60)
    assert first and phase(kube) == "Progressing"  # errorLimit 1: one error is tolerated
    wait_for("paused at the second", lambda: phase(kube) == "Paused", c, timeout=60)
    st = status_of(kube)
    assert st["consecutiveErrors"] == 2 and "errorLimit 1 tolerated" in st["message"]
    judge_cond = condition(kube, "JudgeAvailable")
    assert judge_cond["status"] == "False" and "judge unavailable" in judge_cond["message"]
    success = next(g for g in st["guards"] if g["name"] == "success")
    assert success["outcome"] == "error" and "judge unavailable" in success["reason"]
    assert "JudgeUnavailable" in event_reasons(kube)
    metrics = httpx.get(c.url + "/metrics").text
    assert 'llmcanary_judge_available{namespace="default",rule="bot"} 0.0' in metrics
    shown = canaryctl(emu, "status", "bot")
    assert shown.returncode == 0 and "JudgeAvailable" in shown.stdout
    assert "judge unavailable" in shown.stdout


def test_retry_restarts_a_rolled_back_rule_with_fresh_evidence(
    kube: Kube, judge: ScriptedJudge, emu: EmulatorHandle,
    controllers: Callable[..., Controller],
) -> None:
    setup(kube, judge.base_url, steps=[{"weight": 50}])
    c = controllers()
    revision = wait_for("analysable", lambda: status_of(kube).get("canaryReadyAt")
                        and canary_revision(kube), c)
    c.post_samples(records(100, canary_verdict="none", revision=revision))
    wait_for("rolled back", lambda: phase(kube) == "RolledBack", c)
    refused = canaryctl(emu, "promote", "bot", "--full")
    assert refused.returncode == 8 and "cannot promote-full in phase RolledBack" in \
        refused.stderr
    retried = canaryctl(emu, "retry", "bot", "--reason", "the judge had a bad day")
    assert retried.returncode == 0, retried.stderr
    wait_for("progressing again", lambda: phase(kube) == "Progressing", c)
    st = status_of(kube)
    assert st["canaryRevision"] == revision and st["currentStep"] == 0
    assert all(g["nCanary"] == 0 for g in st.get("guards") or [])  # fresh evidence
    assert "retry" in actions(kube)
    wait_for("analysable", lambda: status_of(kube).get("canaryReadyAt"), c)
    c.post_samples(records(150, revision=revision, prefix="retry"))
    wait_for("promoted on fresh evidence", lambda: phase(kube) == "Succeeded", c)
    success = next(g for g in status_of(kube)["guards"] if g["name"] == "success")
    assert success["nCanary"] == 150


def test_undo_after_success_restores_the_previous_template(
    kube: Kube, judge: ScriptedJudge, emu: EmulatorHandle,
    controllers: Callable[..., Controller],
) -> None:
    setup(kube, judge.base_url, steps=[{"weight": 50}])
    before = copy.deepcopy(deployment(kube, "bot")["spec"]["template"])
    c = controllers()
    revision = wait_for("analysable", lambda: status_of(kube).get("canaryReadyAt")
                        and canary_revision(kube), c)
    c.post_samples(records(150, revision=revision))
    wait_for("promoted", lambda: phase(kube) == "Succeeded"
             and replicas(kube, "bot-canary") == 0, c)
    assert env_of(deployment(kube, "bot"))["MODEL_NAME"] == "new-model"
    undo = canaryctl(emu, "rollback", "bot", "--reason", "complaints")
    assert undo.returncode == 0, undo.stderr
    wait_for("undone", lambda: phase(kube) == "RolledBack", c)
    assert deployment(kube, "bot")["spec"]["template"] == before
    assert actions(kube)[-2:] == ["undo", "rolled-back"]
    wait_for("target back", lambda: (deployment(kube, "bot").get("status") or {}).get(
        "updatedReplicas") == 4, c)


def test_a_bake_failure_restores_the_previous_template(
    kube: Kube, judge: ScriptedJudge, controllers: Callable[..., Controller],
) -> None:
    setup(kube, judge.base_url, steps=[{"weight": 50}],
          bake={"duration": "2m", "holdback": 25})
    before = copy.deepcopy(deployment(kube, "bot")["spec"]["template"])
    c = controllers()
    revision = wait_for("analysable", lambda: status_of(kube).get("canaryReadyAt")
                        and canary_revision(kube), c)
    c.post_samples(records(150, revision=revision))
    wait_for("baking", lambda: phase(kube) == "Baking", c)
    stable = status_of(kube)["stableRevision"]
    holdback = wait_for("holdback", lambda: replicas(kube, "bot-holdback") == 1
                        and deployment(kube, "bot-holdback"), c)
    assert env_of(holdback)["MODEL_NAME"] == "old-model"
    assert env_of(holdback)["CANARY_COHORT"] == "baseline"
    assert env_of(holdback)["CANARY_REVISION"] == stable
    wait_for("bake analysable", lambda: status_of(kube).get("baselineEvidenceSince"), c)
    # the promoted target's pods report no cohort ("baseline") but name their revision
    now = [{**r, "cohort": "baseline"} for r in records(
        100, canary_verdict="none", revision=revision, prefix="new", cohorts=("canary",))]
    held = [{**r, "revision": stable} for r in records(100, prefix="held",
                                                         cohorts=("baseline",))]
    c.post_samples(now + held)
    wait_for("bake failed", lambda: phase(kube) == "RolledBack", c)
    assert "BakeFailed" in event_reasons(kube)
    assert deployment(kube, "bot")["spec"]["template"] == before
    assert replicas(kube, "bot-holdback") == 0 and replicas(kube, "bot") == 4
    body = json.dumps(status_of(kube)["history"])
    assert "bake failed" in body


def test_one_batch_at_the_first_step_cannot_promote_a_multi_step_rule(
    kube: Kube, judge: ScriptedJudge, controllers: Callable[..., Controller],
) -> None:
    setup(kube, judge.base_url, steps=[{"weight": 25}, {"weight": 50}])
    c = controllers()
    revision = wait_for("analysable", lambda: status_of(kube).get("canaryReadyAt")
                        and canary_revision(kube), c)
    c.post_samples(records(150, revision=revision, share=0.25))
    wait_for("step 2", lambda: status_of(kube).get("currentStep") == 1, c)
    waiting = wait_for("held for the step's own samples", lambda: "step 2 has" in status_of(
        kube).get("message", "") and status_of(kube)["message"], c)
    assert "canary samples it needs at its own weight" in waiting
    step_reached(kube, 1, c)
    time.sleep(2)  # several looks: the first step's evidence alone never promotes
    assert phase(kube) == "Progressing" and status_of(kube)["currentStep"] == 1
    c.post_samples(records(40, prefix="step2", revision=revision))
    wait_for("promoted once step 2 has its own evidence", lambda: phase(kube) == "Succeeded", c)
