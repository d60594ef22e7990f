"""The CanaryRule side of the cluster port: rules, their status, finalizer and Events.

Implements :class:`controller.ports.Cluster` on :mod:`.rules` and :mod:`.events`.
"""

from __future__ import annotations

from controller.models.base import JSON

from . import events, rules
from .client import Kube


class KubeCluster:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    def get_rule(self, namespace: str, name: str) -> JSON:
        return rules.get_rule(self.kube, namespace, name)

    def write_status(self, obj: JSON, status: JSON) -> JSON:
        meta = obj.get("metadata") or {}
        return rules.patch_status(self.kube, meta.get("namespace") or "default", meta["name"],
                                  status, meta.get("resourceVersion"))

    def set_finalizer(self, obj: JSON, present: bool) -> JSON | None:
        meta = obj.get("metadata") or {}
        return rules.set_finalizer(self.kube, meta.get("namespace") or "default",
                                   meta["name"], present)

    def emit(self, obj: JSON, type_: str, reason: str, message: str) -> None:
        events.emit(self.kube, obj, type_, reason, message)
