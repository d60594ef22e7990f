"""`canaryctl` cluster commands against the Kubernetes API emulator (no controller running:
these test the CLI's own reads, writes and error paths)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from canary_playground.kube import EmulatorHandle, running_emulator
from click.testing import CliRunner

from controller.actuator import rules
from controller.actuator.client import Kube, connect
from controller.cli import cli
from controller.conventions import ACTION_ANNOTATION, ACTION_ID_ANNOTATION
from tests.support import ROOT


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorHandle]:
    with running_emulator(tmp_path_factory.mktemp("kube")) as handle:
        yield handle


@pytest.fixture
def kube(emu: EmulatorHandle) -> Iterator[Kube]:
    emu.reset()
    emu.clear_faults()
    k = connect(emu.kubeconfig)
    yield k
    k.close()


def run(emu: EmulatorHandle | None, *args: str, kubeconfig: str | None = None
        ) -> tuple[int, str, str]:
    config = kubeconfig or (emu.kubeconfig if emu else "")
    result = CliRunner().invoke(cli, [*args, "--kubeconfig", config], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def applied(kube: Kube, emu: EmulatorHandle) -> dict[str, Any]:
    code, out, err = run(emu, "apply", "-f", str(ROOT / "rules" / "minimal.yaml"))
    assert code == 0, err
    assert "canaryrule default/faq-bot applied" in out
    return rules.get_rule(kube, "default", "faq-bot")


def set_status(kube: Kube, **status: Any) -> None:
    obj = rules.get_rule(kube, "default", "faq-bot")
    rules.patch_status(kube, "default", "faq-bot", status,
                       obj["metadata"]["resourceVersion"])


def test_apply_get_status_history(kube: Kube, emu: EmulatorHandle) -> None:
    obj = applied(kube, emu)
    assert obj["spec"]["targetRef"]["name"] == "faq-bot"
    set_status(kube, phase="Progressing", currentStep=1, weight=50, history=[
        {"time": "2026-11-22T12:00:00Z", "action": "advance", "reason": "all 1 guards pass",
         "step": 1, "weight": 50}],
        guards=[{"name": "fallback", "metric": "fallbackRate", "outcome": "pass",
                 "nBaseline": 300, "nCanary": 280, "baseline": 0.03, "canary": 0.031,
                 "delta": 0.001, "lower": -0.01, "upper": 0.012, "tolerance": 0.02}])
    code, out, _ = run(emu, "get")
    assert code == 0 and "faq-bot" in out and "Progressing" in out and "2/2" in out
    code, out, _ = run(emu, "get", "-o", "json")
    (row,) = json.loads(out)
    assert row["phase"] == "Progressing" and row["weight"] == 50
    assert row["lastDecision"] == "advance: all 1 guards pass"
    code, out, _ = run(emu, "status", "faq-bot")
    assert code == 0 and "fallback" in out and "300/280" in out and "all 1 guards pass" in out
    code, out, _ = run(emu, "history", "faq-bot", "-o", "yaml")
    assert yaml.safe_load(out)[0]["action"] == "advance"


def test_apply_with_any_invalid_document_applies_nothing(kube: Kube, emu: EmulatorHandle,
                                                        tmp_path: Path) -> None:
    good = (ROOT / "rules" / "minimal.yaml").read_text()
    bad = good.replace("name: faq-bot\nspec", "name: broken\nspec").replace(
        "tolerance: 0.02", "tolerance: -0.02")
    path = tmp_path / "two.yaml"
    path.write_text(good + "\n---\n" + bad)
    code, out, err = run(emu, "apply", "-f", str(path))
    assert code == 2 and out == ""
    assert "tolerance" in err and "nothing applied" in err
    listed, _ = rules.list_rules(kube, "default")
    assert listed == []


def test_manual_actions_set_annotations_and_refuse_conflicts(kube: Kube,
                                                             emu: EmulatorHandle) -> None:
    applied(kube, emu)
    set_status(kube, phase="Progressing")
    code, out, err = run(emu, "rollback", "faq-bot", "--reason", "bad answers")
    assert code == 0, err
    ann = rules.get_rule(kube, "default", "faq-bot")["metadata"]["annotations"]
    assert ann[ACTION_ANNOTATION] == "rollback"
    assert ann["canary.llmops.dev/action-reason"] == "bad answers"
    # the controller has not acted yet: a second action is a conflict
    code, _, err = run(emu, "pause", "faq-bot")
    assert code == 8 and "still pending" in err
    # once acted on (id recorded in status), a phase that does not allow it is refused
    set_status(kube, phase="RolledBack", lastActionId=ann[ACTION_ID_ANNOTATION])
    code, _, err = run(emu, "resume", "faq-bot")
    assert code == 8 and "cannot resume in phase RolledBack" in err
    set_status(kube, phase="Paused", lastActionId=ann[ACTION_ID_ANNOTATION])
    code, out, _ = run(emu, "resume", "faq-bot")
    assert code == 0 and "resume requested" in out
    set_status(kube, phase="Progressing", lastActionId=rules.get_rule(
        kube, "default", "faq-bot")["metadata"]["annotations"][ACTION_ID_ANNOTATION])
    code, out, _ = run(emu, "promote", "faq-bot", "--full")
    assert code == 0 and "promote-full requested" in out


@pytest.mark.parametrize(("phase", "code"), [("Succeeded", 0), ("RolledBack", 3),
                                             ("Failed", 3)])
def test_watch_exit_codes(kube: Kube, emu: EmulatorHandle, phase: str, code: int) -> None:
    applied(kube, emu)
    set_status(kube, phase=phase, message="done")
    got, out, _ = run(emu, "watch", "faq-bot", "--no-tty", "-o", "json", "--timeout", "5")
    assert got == code
    assert json.loads(out)["phase"] == phase


def test_watch_times_out_with_exit_4(kube: Kube, emu: EmulatorHandle) -> None:
    applied(kube, emu)
    set_status(kube, phase="Progressing")
    code, _, err = run(emu, "watch", "faq-bot", "--no-tty", "--timeout", "0.5",
                       "--interval", "0.1")
    assert code == 4
    assert err.splitlines()[-1] == "canaryctl: timed out after 0.5s: Progressing step 1/2 " \
                                  "weight 0%"


def test_not_found_is_exit_6(kube: Kube, emu: EmulatorHandle) -> None:
    code, _, err = run(emu, "status", "nope")
    assert code == 6 and err.startswith("canaryctl: not found")
    assert "Traceback" not in err


def test_permission_denied_is_exit_7(kube: Kube, emu: EmulatorHandle) -> None:
    applied(kube, emu)
    emu.add_fault("canaryrules", status=403, count=-1,
                  message='canaryrules is forbidden: User "dev" cannot list')
    code, _, err = run(emu, "get")
    assert code == 7 and err.startswith("canaryctl: permission denied")


def test_unreachable_cluster_is_exit_5(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "kubeconfig"
    config.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "x",
        "clusters": [{"name": "x", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "x", "user": {}}],
        "contexts": [{"name": "x", "context": {"cluster": "x", "user": "x"}}]}))
    code, _, err = run(None, "get", kubeconfig=str(config))
    assert code == 5 and "unreachable" in err
    assert "Traceback" not in err


def test_missing_kubeconfig_is_exit_5(tmp_path: Path) -> None:
    code, _, err = run(None, "get", kubeconfig=str(tmp_path / "missing"))
    assert code == 5 and "no Kubernetes configuration" in err
    assert f"kubeconfig {tmp_path / 'missing'} does not exist" in err


def test_apply_warns_about_steps_replica_ratio_cannot_honour(kube: Kube, emu: EmulatorHandle,
                                                             tmp_path: Path) -> None:
    kube.request("POST", "/apis/apps/v1/namespaces/default/deployments", body={
        "metadata": {"name": "faq-bot"}, "spec": {
            "replicas": 2, "selector": {"matchLabels": {"app": "faq"}},
            "template": {"metadata": {"labels": {"app": "faq"}},
                         "spec": {"containers": [{"name": "c", "image": "faq:1"}]}}}})
    code, out, err = run(emu, "apply", "-f", str(ROOT / "rules" / "minimal.yaml"))
    assert code == 0 and "applied" in out
    assert "warning: faq-bot: step 1 (weight 10%) runs 1 canary pod(s) of 2 pods: 50%" in err


def test_retry_and_undo_are_allowed_where_the_engine_acts_on_them(kube: Kube,
                                                                   emu: EmulatorHandle) -> None:
    applied(kube, emu)
    set_status(kube, phase="Progressing")
    code, _, err = run(emu, "retry", "faq-bot")
    assert code == 8 and "cannot retry in phase Progressing" in err
    set_status(kube, phase="RolledBack")
    code, out, err = run(emu, "retry", "faq-bot", "--reason", "judge fixed")
    assert code == 0 and "retry requested" in out, err
    ann = rules.get_rule(kube, "default", "faq-bot")["metadata"]["annotations"]
    set_status(kube, phase="Succeeded", lastActionId=ann[ACTION_ID_ANNOTATION])
    code, out, err = run(emu, "rollback", "faq-bot")  # an undo after promotion
    assert code == 0 and "rollback requested" in out, err


def test_status_shows_what_needs_attention(kube: Kube, emu: EmulatorHandle) -> None:
    applied(kube, emu)
    set_status(kube, phase="Paused", weight=10, effectiveWeight=50.0, canaryRevision="abc",
               message="paused", conditions=[
                   {"type": "JudgeAvailable", "status": "False", "reason": "JudgeUnavailable",
                    "message": "judge unavailable: 40 of 40 samples unjudged (timeout x40)"},
                   {"type": "Synced", "status": "True", "reason": "Synced", "message": "ok"}])
    code, out, _ = run(emu, "status", "faq-bot")
    assert code == 0
    assert "weight 10% (effective 50%)" in out and "revision abc" in out
    assert "! JudgeAvailable: judge unavailable: 40 of 40 samples unjudged" in out
    assert "conditions" in out and "Synced" in out
    code, _, err = run(emu, "watch", "faq-bot", "--no-tty", "--timeout", "0.3", "--interval",
                       "0.1")
    assert code == 4 and "JudgeAvailable: judge unavailable" in err
