"""A HorizontalPodAutoscaler controller (``autoscaling/v2``) driven by the test, not metrics.

Every ``hpaInterval`` seconds (and when the HPA changes) each HPA sets the replicas of its
``scaleTargetRef`` (a Deployment or ReplicaSet) to the desired count clamped to
``[minReplicas, maxReplicas]``. The desired count is the integer in the HPA's annotation
``emulator.llmops.dev/desired-replicas`` (the stand-in for metrics), else the current
count (only the bounds apply), as the real controller's min/max rules do. It fights
anyone else who sets the target's replicas, like the real one; there is no stabilization
window. A target scaled to zero disables it (``ScalingActive=False``, ScalingDisabled).
Status: ``currentReplicas``, ``desiredReplicas``, ``lastScaleTime``, ``observedGeneration``
and the AbleToScale / ScalingActive / ScalingLimited conditions.
"""

from __future__ import annotations

import copy

from .errors import JSON, now_rfc3339
from .objects import annotations_of, as_int, meta, set_condition
from .objects import new_condition as _condition
from .recorder import Recorder
from .resources import Registry, Resource
from .runtime import Key, WorkQueue
from .storage import Change, Store

DESIRED_ANNOTATION = "emulator.llmops.dev/desired-replicas"


def new_condition(kind: str, status: str, reason: str, message: str) -> JSON:
    """HPA conditions carry ``lastTransitionTime`` only."""
    cond = _condition(kind, status, reason, message)
    cond.pop("lastUpdateTime")
    return cond


class HpaController:
    def __init__(self, store: Store, registry: Registry, queue: WorkQueue,
                 recorder: Recorder, interval: float) -> None:
        self.store, self.registry, self.queue, self.recorder = store, registry, queue, recorder
        self.interval = interval
        self.hpas = registry.get("autoscaling", "horizontalpodautoscalers")
        queue.register("hpa", self.sync, priority=4)
        store.listeners.append(self.on_change)

    def on_change(self, change: Change) -> None:
        if change.res is self.hpas and change.type != "DELETED":
            old = change.old or {}
            if change.obj.get("spec") != old.get("spec") or \
                    annotations_of(change.obj) != annotations_of(old):
                m = meta(change.obj)
                self.queue.add(("hpa", m["namespace"], m["name"]))

    def sync(self, key: Key) -> None:
        _, ns, name = key
        found = self.store.find(self.hpas, str(ns), str(name))
        if found is None:
            return
        hpa = copy.deepcopy(found)
        try:
            self._reconcile(hpa)
        finally:
            self.queue.add(key, self.interval)

    def _reconcile(self, hpa: JSON) -> None:
        spec = hpa.get("spec") or {}
        ref = spec.get("scaleTargetRef") or {}
        ns = meta(hpa)["namespace"]
        status = copy.deepcopy(hpa.get("status") or {})
        status.setdefault("desiredReplicas", 0)
        status["observedGeneration"] = as_int(meta(hpa).get("generation"))
        target_res = self.registry.by_kind(str(ref.get("apiVersion", "apps/v1")),
                                           str(ref.get("kind")))
        target = self.store.find(target_res, ns, str(ref.get("name"))) \
            if target_res is not None and target_res.scale else None
        if target is None or target_res is None:
            what = f'{target_res.plural if target_res else ref.get("kind")} ' \
                   f'"{ref.get("name")}" not found'
            set_condition(status, new_condition(
                "AbleToScale", "False", "FailedGetScale",
                f"the HPA controller was unable to get the target's current scale: {what}"))
            self._write(hpa, status)
            return
        current = as_int((target.get("spec") or {}).get("replicas"), 1)
        status["currentReplicas"] = as_int((target.get("status") or {}).get("replicas"))
        low, high = as_int(spec.get("minReplicas"), 1), as_int(spec.get("maxReplicas"), 1)
        if current == 0 and low > 0:
            status["desiredReplicas"] = 0
            set_condition(status, new_condition(
                "ScalingActive", "False", "ScalingDisabled",
                "scaling is disabled since the replica count of the target is zero"))
            self._write(hpa, status)
            return
        wanted = as_int(annotations_of(hpa).get(DESIRED_ANNOTATION), current)
        desired = min(max(wanted, low), high)
        set_condition(status, new_condition("ScalingActive", "True", "ValidMetricFound",
                                            "the HPA was able to successfully calculate a "
                                            "replica count"))
        if wanted > high:
            limited = ("True", "TooManyReplicas", "the desired replica count is more than "
                       "the maximum replica count")
        elif wanted < low:
            limited = ("True", "TooFewReplicas", "the desired replica count is less than "
                       "the minimum replica count")
        else:
            limited = ("False", "DesiredWithinRange", "the desired count is within the "
                       "acceptable range")
        set_condition(status, new_condition("ScalingLimited", *limited))
        status["desiredReplicas"] = desired
        if desired != current:
            self._scale(target_res, target, desired)
            status["lastScaleTime"] = now_rfc3339()
            set_condition(status, new_condition("AbleToScale", "True", "SucceededRescale",
                                                f"the HPA controller was able to update the "
                                                f"target scale to {desired}"))
            self.recorder.event(hpa, "Normal", "SuccessfulRescale",
                                f"New size: {desired}; reason: {self._reason(wanted, current)}",
                                "horizontal-pod-autoscaler")
        else:
            set_condition(status, new_condition("AbleToScale", "True", "ReadyForNewScale",
                                                "recommended size matches current size"))
        self._write(hpa, status)

    @staticmethod
    def _reason(wanted: int, current: int) -> str:
        if wanted > current:
            return "desired replicas above current (emulator.llmops.dev/desired-replicas)"
        return "desired replicas below current (emulator.llmops.dev/desired-replicas)"

    def _scale(self, res: Resource, target: JSON, replicas: int) -> None:
        m = meta(target)

        def resize(cur: JSON) -> JSON:
            cur["spec"]["replicas"] = replicas
            return cur

        self.store.update(res, m["namespace"], m["name"], resize)

    def _write(self, hpa: JSON, status: JSON) -> None:
        if status == hpa.get("status"):
            return
        body = copy.deepcopy(hpa)
        body["status"] = status
        m = meta(hpa)
        self.store.update(self.hpas, m["namespace"], m["name"], lambda cur: body,
                          subresource="status")
