"""The ReplicaSet controller: keeps ``spec.replicas`` active pods, reports their state.

Pods are created from the template (named ``<replicaset>-<5 chars>``, the template's
labels and annotations, owned by the ReplicaSet with ``controller`` and
``blockOwnerDeletion``). Surplus pods are deleted in kube-controller-manager's order
(``ActivePodsWithRanks``): unscheduled, pending, not ready, lower deletion cost, ready for
less time, more restarts, newer first. Status: ``replicas`` (active pods),
``fullyLabeledReplicas``, ``readyReplicas``, ``availableReplicas`` (ready for longer than
``minReadySeconds``; the ReplicaSet is looked at again when that time has passed) and
``observedGeneration``. A ReplicaSet being deleted creates no pods.
"""

from __future__ import annotations

import copy
import time

from .errors import JSON, parse_rfc3339
from .objects import (
    as_int,
    controller_ref,
    created,
    deleting,
    drop_zero,
    meta,
    new_controller_ref,
    owned_by,
    pod_active,
    pod_available,
    pod_condition,
    pod_ready,
    restarts,
)
from .resources import Registry
from .runtime import Key, WorkQueue
from .storage import Change, Store

DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def deletion_order(pod: JSON) -> tuple[int, int, int, int, float, int, float]:
    """Sort key: pods to delete first come first (``ActivePodsWithRanks.Less``)."""
    status = pod.get("status") or {}
    ready = pod_ready(pod)
    since = 0.0
    cond = pod_condition(pod, "Ready")
    if ready and cond and cond.get("lastTransitionTime"):
        since = parse_rfc3339(str(cond["lastTransitionTime"]))
    stamp = meta(pod).get("creationTimestamp")
    return (1 if (pod.get("spec") or {}).get("nodeName") else 0,
            PHASE_RANK.get(str(status.get("phase")), 1),
            1 if ready else 0,
            as_int((meta(pod).get("annotations") or {}).get(DELETION_COST)),
            -since,
            -restarts(pod),
            -(parse_rfc3339(stamp) if stamp else float("inf")))


class ReplicaSetController:
    def __init__(self, store: Store, registry: Registry, queue: WorkQueue) -> None:
        self.store, self.queue = store, queue
        self.replicasets = registry.get("apps", "replicasets")
        self.pods = registry.get("", "pods")
        queue.register("replicaset", self.sync, priority=1)
        store.listeners.append(self.on_change)

    def on_change(self, change: Change) -> None:
        ns = meta(change.obj).get("namespace", "")
        if change.res is self.replicasets:
            self.queue.add(("replicaset", ns, meta(change.obj)["name"]))
        elif change.res is self.pods:
            for obj in (change.obj, change.old):
                ref = controller_ref(obj or {})
                if ref is not None and ref.get("kind") == "ReplicaSet":
                    self.queue.add(("replicaset", ns, ref["name"]))

    def _pods(self, rs: JSON) -> list[JSON]:
        return sorted((obj for res, obj in self.store.dependents(meta(rs)["uid"])
                       if res is self.pods and owned_by(obj, rs)), key=created)

    def sync(self, key: Key) -> None:
        _, ns, name = key
        found = self.store.find(self.replicasets, str(ns), str(name))
        if found is None:
            return
        rs = copy.deepcopy(found)
        pods = [p for p in self._pods(rs) if pod_active(p)]
        if not deleting(rs):
            pods = self._manage(rs, pods)
        self._update_status(rs, pods)

    def _manage(self, rs: JSON, pods: list[JSON]) -> list[JSON]:
        want = as_int((rs.get("spec") or {}).get("replicas"), 1)
        diff = len(pods) - want
        if diff < 0:
            for _ in range(-diff):
                pods.append(self.store.create(self.pods, meta(rs)["namespace"],
                                              pod_from_template(rs)))
        elif diff > 0:
            doomed = sorted(pods, key=deletion_order)[:diff]
            for pod in doomed:
                self.store.delete(self.pods, meta(pod)["namespace"], meta(pod)["name"])
            gone = {meta(p)["uid"] for p in doomed}
            pods = [p for p in pods if meta(p)["uid"] not in gone]
        return pods

    def _update_status(self, rs: JSON, pods: list[JSON]) -> None:
        spec = rs.get("spec") or {}
        min_ready = as_int(spec.get("minReadySeconds"))
        template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        now = time.time()
        ready = sum(1 for p in pods if pod_ready(p))
        available = sum(1 for p in pods if pod_available(p, min_ready, now))
        status = drop_zero({
            "replicas": len(pods),
            "fullyLabeledReplicas": sum(1 for p in pods if template_labels.items()
                                        <= (meta(p).get("labels") or {}).items()),
            "readyReplicas": ready,
            "availableReplicas": available,
            "observedGeneration": as_int(meta(rs).get("generation")),
        }, ("fullyLabeledReplicas", "readyReplicas", "availableReplicas", "observedGeneration"))
        if status != (rs.get("status") or {}):
            body = copy.deepcopy(rs)
            body["status"] = status
            m = meta(rs)
            self.store.update(self.replicasets, m["namespace"], m["name"], lambda cur: body,
                              subresource="status")
        if min_ready > 0 and ready > available:
            m = meta(rs)
            self.queue.add(("replicaset", m["namespace"], m["name"]), 1.0)


def pod_from_template(rs: JSON) -> JSON:
    """``GetPodFromTemplate``: a new pod for ``rs``."""
    template = (rs.get("spec") or {}).get("template") or {}
    tmeta = template.get("metadata") or {}
    name = meta(rs)["name"]
    prefix = (name if len(name) <= 57 else name[:57]) + "-"
    pod_meta: JSON = {"generateName": prefix, "namespace": meta(rs)["namespace"],
                      "labels": dict(tmeta.get("labels") or {}),
                      "ownerReferences": [new_controller_ref(rs)]}
    if tmeta.get("annotations"):
        pod_meta["annotations"] = dict(tmeta["annotations"])
    if tmeta.get("finalizers"):
        pod_meta["finalizers"] = list(tmeta["finalizers"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta,
            "spec": copy.deepcopy(template.get("spec") or {})}
