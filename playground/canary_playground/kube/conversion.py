"""Two views of one storage: ``events.k8s.io/v1`` Events are core ``v1`` Events.

kube-apiserver stores one Event type and serves it in both groups; these convert between
the field names (``involvedObject`` <-> ``regarding``, ``message`` <-> ``note``,
``source`` <-> ``deprecatedSource`` ...). Every other resource is its own storage.
"""

from __future__ import annotations

import copy

from .errors import JSON
from .resources import Resource

# (core v1 field, events.k8s.io/v1 field)
EVENT_FIELDS = [
    ("involvedObject", "regarding"), ("message", "note"), ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"), ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"), ("reportingComponent", "reportingController"),
    ("reason", "reason"), ("type", "type"), ("eventTime", "eventTime"), ("series", "series"),
    ("reportingInstance", "reportingInstance"), ("action", "action"), ("related", "related"),
]


def to_storage(res: Resource, obj: JSON) -> JSON:
    if not res.storage or res.kind != "Event":
        return obj
    out: JSON = {"apiVersion": "v1", "kind": "Event",
                 "metadata": copy.deepcopy(obj.get("metadata") or {})}
    for core, view in EVENT_FIELDS:
        if view in obj:
            out[core] = copy.deepcopy(obj[view])
    return out


def from_storage(res: Resource, obj: JSON) -> JSON:
    if not res.storage or res.kind != "Event":
        return obj
    out: JSON = {"apiVersion": res.api_version, "kind": "Event",
                 "metadata": copy.deepcopy(obj.get("metadata") or {})}
    for core, view in EVENT_FIELDS:
        if core in obj:
            out[view] = copy.deepcopy(obj[core])
    return out


def field_path(res: Resource, path: str) -> str:
    """A field selector path of the view, as the storage names it."""
    if not res.storage or res.kind != "Event":
        return path
    head, _, rest = path.partition(".")
    for core, view in EVENT_FIELDS:
        if head == view:
            return f"{core}.{rest}" if rest else core
    return path
