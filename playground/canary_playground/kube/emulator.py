"""The emulator's state: registry, store, controllers, authentication and authorization,
faults and request log, and the settings tests change at run time (``/_emulator/config``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .auth import Authenticator
from .deployments import DeploymentController
from .errors import JSON
from .faults import FaultsAndLog
from .gc import GarbageCollector
from .hpa import HpaController
from .kubelet import Kubelet, Timing
from .rbac import Authorizer
from .recorder import Recorder
from .replicasets import ReplicaSetController
from .resources import Registry, load_crds
from .runtime import WorkQueue
from .storage import Store

DEFAULT_CRD = Path(__file__).resolve().parents[3] / "charts/llm-canary/crds/canaryrules.yaml"
BOOT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


@dataclass
class Settings:
    """Start-up settings (the ``running_emulator`` / command-line arguments)."""

    token: str | None = None
    readiness_delay: float = 0.3
    slow_ready_delay: float = 20.0
    pod_start_delay: float = 0.05
    crash_loop_interval: float = 1.0
    bookmark_interval: float = 5.0
    history_limit: int = 10_000
    hpa_interval: float = 2.0
    rbac: bool = False
    crds: tuple[Path, ...] = (DEFAULT_CRD,)


# config key -> (object attribute path, type)
CONFIG_KEYS: dict[str, tuple[str, type]] = {
    "readinessDelay": ("timing.readiness_delay", float),
    "deploymentDelay": ("timing.readiness_delay", float),  # the old name
    "slowReadyDelay": ("timing.slow_ready_delay", float),
    "podStartDelay": ("timing.pod_start_delay", float),
    "crashLoopInterval": ("timing.crash_loop_interval", float),
    "bookmarkInterval": ("bookmark_interval", float),
    "historyLimit": ("store.history_limit", int),
    "hpaInterval": ("hpa.interval", float),
    "rbac": ("authorizer.enforce", bool),
}


class Emulator:
    def __init__(self, settings: Settings) -> None:
        self.registry = Registry(load_crds(list(settings.crds)))
        self.store = Store(self.registry, settings.history_limit)
        self.queue = WorkQueue()
        self.timing = Timing(pod_start_delay=settings.pod_start_delay,
                             readiness_delay=settings.readiness_delay,
                             slow_ready_delay=settings.slow_ready_delay,
                             crash_loop_interval=settings.crash_loop_interval)
        recorder = Recorder(self.store, self.registry)
        self.deployments = DeploymentController(self.store, self.registry, self.queue, recorder)
        self.replicasets = ReplicaSetController(self.store, self.registry, self.queue)
        self.kubelet = Kubelet(self.store, self.registry, self.queue, self.timing)
        self.gc = GarbageCollector(self.store, self.registry, self.queue)
        self.hpa = HpaController(self.store, self.registry, self.queue, recorder,
                                 settings.hpa_interval)
        self.auth = Authenticator(self.store, self.registry, settings.token)
        self.authorizer = Authorizer(self.store, self.registry, enforce=settings.rbac)
        self.token = settings.token
        self.bookmark_interval = settings.bookmark_interval
        self.faults = FaultsAndLog()
        self._bootstrap()
        self.queue.start()

    def _bootstrap(self) -> None:
        crds = self.registry.get("apiextensions.k8s.io", "customresourcedefinitions")
        for crd in self.registry.crds:
            body = dict(crd)
            body["status"] = {"acceptedNames": crd["spec"]["names"], "storedVersions": [
                v["name"] for v in crd["spec"]["versions"] if v.get("storage")],
                "conditions": [{"type": "Established", "status": "True",
                                "reason": "InitialNamesAccepted",
                                "message": "the initial names have been accepted"}]}
            self.store.create(crds, "", body)
        namespaces = self.registry.get("", "namespaces")
        for name in BOOT_NAMESPACES:
            self.store.create(namespaces, "", {"metadata": {"name": name}})
        self.store.mark_baseline()

    def stop(self) -> None:
        with self.store.cond:
            self.store.closed = True
            self.store.cond.notify_all()
        self.queue.stop()

    def reset(self) -> None:
        """Back to the objects present after start-up (and the side API's baseline)."""
        self.queue.clear()
        self.kubelet.sims.clear()
        self.store.reset()
        self.faults.clear()

    def config(self) -> JSON:
        return {key: self._get(path) for key, (path, _) in CONFIG_KEYS.items()}

    def configure(self, values: JSON) -> JSON:
        unknown = sorted(set(values) - set(CONFIG_KEYS))
        if unknown:
            raise ValueError(f"unknown emulator settings: {', '.join(unknown)}")
        for key, value in values.items():
            path, kind = CONFIG_KEYS[key]
            self._set(path, kind(value))
        return self.config()

    def _get(self, path: str) -> Any:
        node: Any = self
        for part in path.split("."):
            node = getattr(node, part)
        return node

    def _set(self, path: str, value: Any) -> None:
        head, _, last = path.rpartition(".")
        setattr(self._get(head) if head else self, last, value)
