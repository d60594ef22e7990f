"""The real ``kubectl`` against the emulator (over TLS, as kubectl sends credentials only
over TLS): discovery with short names and categories, Table printing with the CRD's
printer columns, describe, annotate, client-side and server-side apply, pods."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from canary_playground.kube import EmulatorHandle, running_emulator

from tests.support import ROOT
from tests.support.waiting import wait_for

RULE = ROOT / "rules" / "support-assistant.yaml"
pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")

Kubectl = Callable[..., str]


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorHandle]:
    with running_emulator(tmp_path_factory.mktemp("kube"), tls=True,
                          readiness_delay=0.05) as handle:
        yield handle


@pytest.fixture(scope="module")
def kubectl(emu: EmulatorHandle, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    cache = tmp_path_factory.mktemp("kubectl-cache")
    env = {**os.environ, "KUBECONFIG": emu.kubeconfig, "HOME": str(cache)}

    def run(*args: str, ok: bool = True) -> str:
        done = subprocess.run(["kubectl", "--cache-dir", str(cache), *args], env=env,
                              capture_output=True, text=True, timeout=60)
        if ok:
            assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
        return done.stdout + done.stderr
    return run


@pytest.fixture(scope="module")
def applied(kubectl: Kubectl) -> str:
    kubectl("create", "deployment", "support-assistant", "--image=assistant:1",
            "--replicas=3")
    return kubectl("apply", "-f", str(RULE))


def test_discovery_lists_short_names_and_categories(kubectl: Kubectl) -> None:
    out = kubectl("api-resources", "--api-group=canary.llmops.dev", "-o", "wide")
    row = out.strip().splitlines()[1]
    assert row.split()[:5] == ["canaryrules", "crule", "canary.llmops.dev/v1alpha1", "true",
                               "CanaryRule"]
    assert "all,canary" in row.split()
    assert "deployments/scale" not in kubectl("api-resources")  # subresources are hidden
    names = json.loads(kubectl("get", "--raw", "/apis/apps/v1"))["resources"]
    scale = next(r for r in names if r["name"] == "deployments/scale")
    assert (scale["group"], scale["version"], scale["kind"]) == ("autoscaling", "v1", "Scale")
    assert json.loads(kubectl("version", "-o", "json"))["serverVersion"]["major"] == "1"


def test_apply_get_describe_annotate(kubectl: Kubectl, applied: str) -> None:
    assert "canaryrule.canary.llmops.dev/support-assistant created" in applied
    again = kubectl("apply", "-f", str(RULE))
    assert "canaryrule.canary.llmops.dev/support-assistant" in again
    table = kubectl("get", "canaryrules,deployments")
    assert "canaryrule.canary.llmops.dev/support-assistant" in table
    assert "deployment.apps/support-assistant" in table
    header = kubectl("get", "crule").splitlines()[0].split()
    assert header == ["NAME", "PHASE", "STEP", "WEIGHT", "AGE"]  # the CRD's printer columns
    assert "MESSAGE" in kubectl("get", "crule", "-o", "wide").splitlines()[0]
    assert "annotated" in kubectl("annotate", "canaryrule", "support-assistant", "k=v",
                                  "--overwrite")
    described = kubectl("describe", "canaryrule", "support-assistant")
    assert "Annotations:  k: v" in described and "Kind:         CanaryRule" in described
    obj = json.loads(kubectl("get", "crule", "support-assistant", "-o", "json"))
    assert obj["metadata"]["annotations"]["k"] == "v"
    assert "kubectl.kubernetes.io/last-applied-configuration" in obj["metadata"]["annotations"]
    assert obj["spec"]["analysis"]["interval"] == "1m"
    assert "serverside-applied" in kubectl("apply", "--server-side", "--force-conflicts",
                                           "-f", str(RULE))


def test_unknown_fields_are_refused_by_strict_validation(kubectl: Kubectl,
                                                         tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(RULE.read_text().replace("  steps:\n", "  stepz: 1\n  steps:\n"))
    out = kubectl("apply", "-f", str(bad), ok=False)
    assert 'unknown field "spec.stepz"' in out


def test_pods_and_rollout_status(kubectl: Kubectl, applied: str) -> None:
    kubectl("rollout", "status", "deployment/support-assistant", "--timeout=30s")
    pods = kubectl("get", "pods", "-l", "app=support-assistant").splitlines()
    assert pods[0].split()[:3] == ["NAME", "READY", "STATUS"]
    assert len(pods) == 4 and all("1/1" in p and "Running" in p for p in pods[1:])
    kubectl("set", "image", "deployment/support-assistant", "assistant=assistant:crashloop")
    out = kubectl("rollout", "status", "deployment/support-assistant", "--timeout=2s",
                  ok=False)
    assert "Waiting for deployment" in out
    wait_for(lambda: "CrashLoopBackOff" in kubectl("get", "pods"))
    described = kubectl("describe", "deployment", "support-assistant")
    assert "ScalingReplicaSet" in described and "NewReplicaSet:" in described
    assert kubectl("auth", "can-i", "patch", "deployments").strip() == "yes"
