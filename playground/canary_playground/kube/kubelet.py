"""A simulated kubelet (and scheduler): pods start, become Ready, or fail, by image.

Every pod is bound to the node ``emulator-node`` and started ``podStartDelay`` seconds
after it is created (phase Running, containers running, not ready). Then, per container
image:

- ordinary images: Ready ``readinessDelay`` seconds after start;
- an image containing ``slow-ready``: Ready after ``slowReadyDelay`` seconds (20 s unless
  configured);
- ``never-ready``: Running, never Ready (a readiness probe that never passes);
- ``crashloop``: the container restarts forever (``restartCount`` grows every
  ``crashLoopInterval`` seconds; state waiting, reason ``CrashLoopBackOff``; never Ready).

The annotation ``emulator.llmops.dev/unavailable: "true"`` on the pod or its Deployment
(or its ReplicaSet when no Deployment owns it) fails the readiness probe of every
container while it is set; once removed, pods are Ready again ``readinessDelay`` seconds
later. Pods are
deleted at once (no graceful termination).
"""

from __future__ import annotations

import copy
import hashlib
import time
from dataclasses import dataclass, field

from .errors import JSON, now_rfc3339
from .objects import annotations_of, controller_ref, deleting, meta, pod_condition
from .resources import Registry
from .runtime import Key, WorkQueue
from .storage import Change, Store

UNAVAILABLE_ANNOTATION = "emulator.llmops.dev/unavailable"
NODE = "emulator-node"
HOST_IP = "10.0.0.10"


@dataclass
class Timing:
    pod_start_delay: float = 0.05
    readiness_delay: float = 0.3
    slow_ready_delay: float = 20.0
    crash_loop_interval: float = 1.0


@dataclass
class Sim:
    """What the kubelet remembers of one pod (by uid)."""

    start_at: float
    started_wall: str = ""
    ready_base: float = 0.0  # readiness delays count from here (start, or end of "unavailable")
    blocked: bool = False
    transitions: dict[str, str] = field(default_factory=dict)


def marker(image: str) -> str:
    for mark in ("never-ready", "slow-ready", "crashloop"):
        if mark in image:
            return mark
    return ""


def _pod_ip(uid: str) -> str:
    digest = hashlib.sha256(uid.encode()).digest()
    return f"10.244.{digest[0]}.{max(2, digest[1])}"


class Kubelet:
    def __init__(self, store: Store, registry: Registry, queue: WorkQueue,
                 timing: Timing) -> None:
        self.store, self.queue, self.timing = store, queue, timing
        self.pods = registry.get("", "pods")
        self.replicasets = registry.get("apps", "replicasets")
        self.deployments = registry.get("apps", "deployments")
        self.sims: dict[str, Sim] = {}
        queue.register("pod", self.sync, priority=0)
        store.listeners.append(self.on_change)

    def on_change(self, change: Change) -> None:
        m = meta(change.obj)
        if change.res is self.pods:
            if change.type == "DELETED":
                self.sims.pop(m["uid"], None)
            elif change.type == "ADDED" or change.obj.get("spec") != (change.old or {}).get(
                    "spec") or annotations_of(change.obj) != annotations_of(change.old or {}):
                self.queue.add(("pod", m.get("namespace", ""), m["name"]))
        elif change.res in (self.replicasets, self.deployments) and change.old is not None:
            was = annotations_of(change.old).get(UNAVAILABLE_ANNOTATION)
            if annotations_of(change.obj).get(UNAVAILABLE_ANNOTATION) != was:
                self._poke_pods_of(m["uid"])

    def _poke_pods_of(self, uid: str) -> None:
        for res, obj in self.store.dependents(uid):
            if res is self.pods:
                self.queue.add(("pod", meta(obj)["namespace"], meta(obj)["name"]))
            elif res is self.replicasets:
                self._poke_pods_of(meta(obj)["uid"])

    def _owner(self, obj: JSON) -> JSON | None:
        ref = controller_ref(obj)
        found = self.store.by_uid(str(ref.get("uid"))) if ref else None
        return found[1] if found else None

    def _unavailable(self, pod: JSON) -> bool:
        """The annotation on the pod, or on its Deployment (a ReplicaSet's own counts
        only without a Deployment: Deployments copy annotations to ReplicaSets and never
        remove them)."""
        if annotations_of(pod).get(UNAVAILABLE_ANNOTATION) == "true":
            return True
        rs = self._owner(pod)
        if rs is None:
            return False
        holder = self._owner(rs) or rs
        return annotations_of(holder).get(UNAVAILABLE_ANNOTATION) == "true"

    def sync(self, key: Key) -> None:
        _, ns, name = key
        pod = self.store.find(self.pods, str(ns), str(name))
        if pod is None or deleting(pod):
            return
        uid = meta(pod)["uid"]
        now = time.monotonic()
        sim = self.sims.setdefault(uid, Sim(start_at=now + self.timing.pod_start_delay))
        if now < sim.start_at:
            self.queue.add(key, sim.start_at - now)
            return
        if not sim.started_wall:
            sim.started_wall = now_rfc3339()
            sim.ready_base = sim.start_at
        blocked = self._unavailable(pod)
        if sim.blocked and not blocked:
            sim.ready_base = now
        sim.blocked = blocked
        status, wake = self.status_for(pod, sim, now)
        if status != pod.get("status") or not (pod.get("spec") or {}).get("nodeName"):
            body = copy.deepcopy(pod)
            body["status"] = status
            body.setdefault("spec", {})["nodeName"] = NODE
            self.store.update(self.pods, str(ns), str(name), lambda cur: body, subresource="*")
        if wake is not None:
            self.queue.add(key, max(0.001, wake - now))

    def status_for(self, pod: JSON, sim: Sim, now: float) -> tuple[JSON, float | None]:
        """The pod's status at ``now``, and when it will next change (None: never)."""
        statuses, wakes = [], []
        for c in (pod.get("spec") or {}).get("containers") or []:
            cs, wake = self._container(pod, c, sim, now)
            statuses.append(cs)
            if wake is not None:
                wakes.append(wake)
        ready = bool(statuses) and all(cs["ready"] for cs in statuses)
        start = meta(pod).get("creationTimestamp") or now_rfc3339()
        conditions = [
            {"type": "PodReadyToStartContainers", "status": "True"},
            {"type": "Initialized", "status": "True"},
            {"type": "Ready", "status": "True" if ready else "False"},
            {"type": "ContainersReady", "status": "True" if ready else "False"},
            {"type": "PodScheduled", "status": "True"},
        ]
        for cond in conditions:
            self._stamp(pod, cond, start)
            if cond["status"] == "False":
                cond["reason"] = "ContainersNotReady"
                names = [cs["name"] for cs in statuses if not cs["ready"]]
                cond["message"] = f"containers with unready status: [{' '.join(names)}]"
        ip = _pod_ip(meta(pod)["uid"])
        status: JSON = {
            "phase": "Running", "conditions": conditions, "hostIP": HOST_IP,
            "hostIPs": [{"ip": HOST_IP}], "podIP": ip, "podIPs": [{"ip": ip}],
            "startTime": sim.started_wall, "containerStatuses": statuses,
            "qosClass": (pod.get("status") or {}).get("qosClass", "BestEffort"),
        }
        return status, min(wakes) if wakes else None

    @staticmethod
    def _stamp(pod: JSON, cond: JSON, start: str) -> None:
        before = pod_condition(pod, cond["type"])
        if before is not None and before.get("status") == cond["status"]:
            cond["lastTransitionTime"] = before.get("lastTransitionTime")
        elif cond["type"] in ("Initialized", "PodScheduled", "PodReadyToStartContainers"):
            cond["lastTransitionTime"] = start
        else:
            cond["lastTransitionTime"] = now_rfc3339()
        cond["lastProbeTime"] = None

    def _container(self, pod: JSON, c: JSON, sim: Sim, now: float
                   ) -> tuple[JSON, float | None]:
        image = str(c.get("image") or "")
        digest = hashlib.sha256(f"{meta(pod)['uid']}/{c.get('name')}".encode()).hexdigest()
        cs: JSON = {"name": c.get("name"), "image": image,
                    "imageID": f"emulator.local/{image}@sha256:{digest}",
                    "containerID": f"containerd://{digest}", "restartCount": 0}
        kind = marker(image)
        t = self.timing
        if kind == "crashloop":
            interval = max(t.crash_loop_interval, 0.05)
            crashes = 1 + int((now - sim.start_at) / interval)
            cs.update(ready=False, started=False, restartCount=crashes, state={"waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off {interval:g}s restarting failed container="
                           f"{c.get('name')} pod={meta(pod)['name']}_{meta(pod)['namespace']}"
                           f"({meta(pod)['uid']})"}},
                lastState={"terminated": {"exitCode": 1, "reason": "Error",
                                          "startedAt": sim.started_wall,
                                          "finishedAt": sim.started_wall}})
            return cs, sim.start_at + crashes * interval
        cs.update(started=True, state={"running": {"startedAt": sim.started_wall}},
                  lastState={})
        if kind == "never-ready" or sim.blocked:
            cs["ready"] = False
            return cs, None
        ready_at = sim.ready_base + (t.slow_ready_delay if kind == "slow-ready"
                                     else t.readiness_delay)
        cs["ready"] = now >= ready_at
        return cs, None if cs["ready"] else ready_at
