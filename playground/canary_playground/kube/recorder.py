"""Events the emulated controllers record, as core ``v1`` Events (what ``kubectl describe``
lists under "Events:")."""

from __future__ import annotations

import time
from contextlib import suppress

from .errors import JSON, ApiError, now_rfc3339
from .resources import Registry
from .storage import Store


class Recorder:
    def __init__(self, store: Store, registry: Registry) -> None:
        self.store = store
        self.events = registry.get("", "events")

    def event(self, obj: JSON, kind: str, reason: str, message: str, component: str) -> None:
        meta = obj["metadata"]
        ns = meta.get("namespace") or "default"
        stamp = now_rfc3339()
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{time.time_ns():x}", "namespace": ns},
            "involvedObject": {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
                               "namespace": ns, "name": meta["name"], "uid": meta.get("uid"),
                               "resourceVersion": meta.get("resourceVersion")},
            "reason": reason, "message": message, "type": kind, "count": 1,
            "firstTimestamp": stamp, "lastTimestamp": stamp,
            "source": {"component": component}, "reportingComponent": component,
            "reportingInstance": "",
        }
        with suppress(ApiError):  # an event is best effort, as in Kubernetes
            self.store.create(self.events, ns, body)
