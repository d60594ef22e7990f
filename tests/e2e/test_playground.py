"""`canaryctl playground up/down` end to end, as a newcomer runs it (subprocesses): the
emulator with the chart's RBAC, the controller as its ServiceAccount, the judge, and
Prometheus when installed; then kubectl, canaryctl and the ingestion API against it."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from canary_playground.kube.handle import handle_from_kubeconfig
from canary_playground.stack import Stack

from tests.support import ROOT


def canaryctl(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controller.cli", *args], capture_output=True,
                          text=True, timeout=timeout)


def read_env(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        out[key] = shlex.split(value)[0]
    return out


@pytest.fixture(scope="module")
def playground(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    directory = tmp_path_factory.mktemp("pg") / "play"
    started = canaryctl("playground", "up", "--dir", str(directory))
    try:
        assert started.returncode == 0, started.stderr[-3000:]
        env = read_env(directory / "env")
        assert started.stdout == (directory / "env").read_text()
        yield directory, env
    finally:
        canaryctl("playground", "down", "--dir", str(directory))


def sample(i: int) -> dict[str, Any]:
    return {"id": f"pg-{i}", "rule": "support-assistant", "cohort": "baseline",
            "ts": "2026-11-30T12:00:00Z", "queue": "billing", "input": "q", "output": "a",
            "latency_ms": 120, "cost_usd": 0.001, "fallback": False}


def test_up_then_use_then_down(playground: tuple[Path, dict[str, str]]) -> None:
    directory, env = playground
    assert set(env) >= {"KUBECONFIG", "CANARY_INGEST_URL", "CANARY_INGEST_TOKEN", "JUDGE_URL"}
    assert ("PROMETHEUS_URL" in env) == (shutil.which("prometheus") is not None)
    assert sorted(Stack(directory).running()) == sorted(
        ["controller", "emulator", "judge"] + ["prometheus"] * ("PROMETHEUS_URL" in env))
    again = canaryctl("playground", "up", "--dir", str(directory))
    assert again.returncode == 1 and "already runs" in again.stderr

    applied = canaryctl("apply", "-f", str(ROOT / "rules" / "support-assistant.yaml"),
                        "--kubeconfig", env["KUBECONFIG"])
    assert applied.returncode == 0, applied.stderr
    if shutil.which("kubectl"):
        got = subprocess.run(["kubectl", "--cache-dir", str(directory / "kubectl-cache"),
                              "get", "canaryrules,deployments"], capture_output=True,
                             text=True, timeout=60, env={**os.environ,
                                                         "KUBECONFIG": env["KUBECONFIG"]})
        assert got.returncode == 0, got.stderr
        assert "canaryrule.canary.llmops.dev/support-assistant" in got.stdout
        # every target pod ready (9/9 once the canary's first pod serves in its place)
        assert re.search(r"deployment\.apps/support-assistant +(\d+)/\1 ", got.stdout), \
            got.stdout

    url = env["CANARY_INGEST_URL"] + "/v1/samples"
    token = env["CANARY_INGEST_TOKEN"]
    refused = httpx.post(url, content=json.dumps([sample(0)]), timeout=10)
    assert refused.status_code == 401
    accepted = httpx.post(url, content=json.dumps([sample(1)]), timeout=10,
                          headers={"Authorization": f"Bearer {token}"})
    assert accepted.status_code == 200, accepted.text
    # the token is a ServiceAccount token for the ingestion audience, known to the emulator
    emu = handle_from_kubeconfig(Path(env["KUBECONFIG"]))
    review = emu.api("POST", "/apis/authentication.k8s.io/v1/tokenreviews",
                     {"spec": {"token": token, "audiences": ["llm-canary"]}})
    assert review["status"]["user"]["username"] == \
        "system:serviceaccount:default:support-assistant"

    stopped = canaryctl("playground", "down", "--dir", str(directory))
    assert stopped.returncode == 0 and "controller" in stopped.stdout
    assert Stack(directory).running() == {}
    assert not list(directory.glob("*.pid"))
    idle = canaryctl("playground", "down", "--dir", str(directory))
    assert idle.returncode == 0 and "nothing running" in idle.stdout
