"""The manager against the emulator: watches scoped to the controller's own Deployments,
no relist of the cluster after a watch error, no thread left behind by a leadership flap."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from canary_playground.kube import EmulatorHandle, running_emulator

from controller.actuator.client import Kube, connect
from controller.actuator.cluster import KubeCluster
from controller.actuator.router import ReplicaRatioRouter
from controller.reconciler.manager import Manager
from controller.reconciler.rollout import Deps
from controller.sources.store import SampleStore
from controller.supervisor import Supervisor


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorHandle]:
    with running_emulator(tmp_path_factory.mktemp("kube"), readiness_delay=0.02) as handle:
        yield handle


@pytest.fixture
def manager(emu: EmulatorHandle, tmp_path: Path) -> Iterator[tuple[Manager, Kube]]:
    emu.reset()
    kube = connect(emu.kubeconfig)
    store = SampleStore(tmp_path / "s.db")
    deps = Deps(cluster=KubeCluster(kube), router=ReplicaRatioRouter(kube), samples=store)
    m = Manager(deps, kube, namespace=None, resync_seconds=300, poll_seconds=0.2,
                supervisor=Supervisor())
    yield m, kube
    m.stop()
    store.close()
    kube.close()


def test_a_leadership_flap_leaves_no_thread_behind(manager: tuple[Manager, Kube]) -> None:
    m, _ = manager
    before = {t.ident for t in threading.enumerate()}
    for _ in range(3):
        m.start()
        deadline = time.monotonic() + 5
        while not m.synced.is_set():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        started = time.monotonic()
        m.stop()  # watches blocked in a 60 s read end at once: their streams are closed
        assert time.monotonic() - started < 3
        assert m.running_threads() == []
    leaked = [t.name for t in threading.enumerate() if t.ident not in before
              and t.name.startswith(("watch-", "worker-", "resync"))]
    assert leaked == []


def test_watches_select_only_the_controllers_deployments_and_resume_after_errors(
    manager: tuple[Manager, Kube], emu: EmulatorHandle,
) -> None:
    m, _ = manager
    m.start()
    deadline = time.monotonic() + 5
    while not m.synced.is_set():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.3)
    mark = emu.mark()
    emu.add_fault(r"/deployments\?.*watch=true", method="GET", status=500, count=1)
    emu.disconnect_watches()  # every watch stream ends, one reopening fails: no relist
    time.sleep(1.5)
    assert emu.faults() == []  # the failing watch was retried
    lists = [r for r in emu.requests(mark) if r["method"] == "GET" and not r.get("watch")
             and r["path"].endswith(("/deployments", "/canaryrules"))]
    assert lists == []
    watches = [r for r in emu.requests(mark) if r.get("watch")
               and r["path"].endswith("/deployments")]
    assert watches and all("labelSelector=app.kubernetes.io" in r["query"] for r in watches)
    assert all("resourceVersion=" in r["query"] for r in watches)
