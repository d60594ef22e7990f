"""Fixtures of the end-to-end tests: an emulator per module that enforces the Helm chart's
RBAC for the controller's ServiceAccount (the whole suite runs under it), the scripted
judge, an admin connection reset before each test, and controller processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from canary_playground.kube import EmulatorHandle, running_emulator
from canary_playground.scripted_judge import ScriptedJudge

from controller.actuator.client import Kube, connect
from controller.conventions import JUDGE_KEY_LABEL
from tests.support.controller import Controller, controller_processes

from .harness import NS, SECRET_KEY


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorHandle]:
    with running_emulator(tmp_path_factory.mktemp("kube"), readiness_delay=0.05,
                          slow_ready_delay=3.0, hpa_interval=0.5,
                          rbac_from_chart=True) as handle:
        yield handle


@pytest.fixture(scope="module")
def judge() -> Iterator[ScriptedJudge]:
    with ScriptedJudge(api_key=SECRET_KEY) as server:
        yield server


@pytest.fixture
def kube(emu: EmulatorHandle, judge: ScriptedJudge) -> Iterator[Kube]:
    emu.reset()
    emu.clear_faults()
    judge.reset()
    k = connect(emu.kubeconfig)
    k.request("POST", f"/api/v1/namespaces/{NS}/secrets", body={
        "apiVersion": "v1", "kind": "Secret", "metadata": {
            "name": "judge-key", "labels": {JUDGE_KEY_LABEL: "true"}},
        "stringData": {"api-key": SECRET_KEY}})
    yield k
    k.close()


@pytest.fixture
def controllers(emu: EmulatorHandle, tmp_path: Path, judge: ScriptedJudge
                ) -> Iterator[Callable[..., Controller]]:
    with controller_processes(emu, tmp_path, secret=SECRET_KEY,
                              judge_url=judge.base_url) as start:
        yield start
