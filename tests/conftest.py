"""Fixtures shared by every test layer: the doubles that stand in for the world.

- ``judge_server`` (module scope) / ``judge``: the scripted OpenAI-compatible server,
  reset before each test;
- ``emulator`` (module scope): the Kubernetes API emulator as its own process (admin);
- ``chart_emulator`` (module scope): the same with the Helm chart's RBAC loaded and enforced;
  ``chart_emulator.controller`` has the controller's ServiceAccount, token and kubeconfig;
- ``prometheus``: a factory starting a real Prometheus on 127.0.0.1 (skips locally when the
  binary is missing, fails in CI).

Layers: ``unit`` (pure code, no sockets), ``integration`` (one real part: SQLite,
Prometheus, the judge server, the emulator), ``e2e`` (the controller as its own process),
``playground`` (the doubles themselves).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from canary_playground.kube import EmulatorHandle, running_emulator
from canary_playground.scripted_judge import ScriptedJudge


@pytest.fixture(scope="module")
def judge_server() -> Iterator[ScriptedJudge]:
    with ScriptedJudge() as server:
        yield server


@pytest.fixture
def judge(judge_server: ScriptedJudge) -> ScriptedJudge:
    """The scripted judge with its counters, failures and script reset."""
    judge_server.reset()
    return judge_server


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorHandle]:
    with running_emulator(tmp_path_factory.mktemp("kube")) as handle:
        yield handle


@pytest.fixture(scope="module")
def chart_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorHandle]:
    """The emulator enforcing the chart's RBAC; run the controller with
    ``chart_emulator.controller.kubeconfig`` to test it under exactly those permissions."""
    with running_emulator(tmp_path_factory.mktemp("kube"), rbac_from_chart=True) as handle:
        yield handle
