"""Server-side printing (``Accept: ...;as=Table;g=meta.k8s.io;v=v1``), what ``kubectl get``
shows: Deployments (READY, UP-TO-DATE, AVAILABLE), ReplicaSets, Pods (READY, STATUS,
RESTARTS), custom resources with their CRD's printer columns, and NAME/AGE for the rest.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .errors import JSON, parse_rfc3339
from .objects import as_int, meta
from .resources import Resource


def human_age(stamp: str | None, now: float | None = None) -> str:
    """``HumanDuration``: 45s, 3m20s, 5m, 2h10m, 3d4h, 120d."""
    if not stamp:
        return "<unknown>"
    seconds = int((now or time.time()) - parse_rfc3339(stamp))
    if seconds < 0:
        return "<invalid>"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if days < 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    return f"{days}d"


def _col(name: str, kind: str = "string", priority: int = 0, fmt: str = "") -> JSON:
    col: JSON = {"name": name, "type": kind, "format": fmt, "description": name,
                 "priority": priority}
    return col


Printer = tuple[list[JSON], Callable[[JSON], list[Any]]]


def _age(obj: JSON) -> str:
    return human_age(meta(obj).get("creationTimestamp"))


def _deployment(obj: JSON) -> list[Any]:
    spec, st = obj.get("spec") or {}, obj.get("status") or {}
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    return [meta(obj)["name"], f"{as_int(st.get('readyReplicas'))}/{as_int(spec.get('replicas'))}",
            as_int(st.get("updatedReplicas")), as_int(st.get("availableReplicas")), _age(obj),
            ",".join(str(c.get("name")) for c in containers),
            ",".join(str(c.get("image")) for c in containers),
            ",".join(f"{k}={v}" for k, v in ((spec.get("selector") or {}).get("matchLabels")
                                             or {}).items())]


def _replicaset(obj: JSON) -> list[Any]:
    spec, st = obj.get("spec") or {}, obj.get("status") or {}
    return [meta(obj)["name"], as_int(spec.get("replicas")), as_int(st.get("replicas")),
            as_int(st.get("readyReplicas")), _age(obj)]


def pod_reason(pod: JSON) -> str:
    """The STATUS column: a waiting/terminated reason, Terminating, or the phase."""
    if meta(pod).get("deletionTimestamp"):
        return "Terminating"
    st = pod.get("status") or {}
    reason = str(st.get("phase") or "Pending")
    for cs in st.get("containerStatuses") or []:
        state = cs.get("state") or {}
        for kind in ("waiting", "terminated"):
            if (state.get(kind) or {}).get("reason"):
                return str(state[kind]["reason"])
    if reason == "Pending" and (pod.get("spec") or {}).get("nodeName"):
        return "ContainerCreating"
    return reason


def _pod(obj: JSON) -> list[Any]:
    st = obj.get("status") or {}
    statuses = st.get("containerStatuses") or []
    total = len((obj.get("spec") or {}).get("containers") or [])
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(as_int(c.get("restartCount")) for c in statuses)
    return [meta(obj)["name"], f"{ready}/{total}", pod_reason(obj), restarts, _age(obj),
            st.get("podIP") or "<none>", (obj.get("spec") or {}).get("nodeName") or "<none>",
            "<none>", "<none>"]


def _hpa(obj: JSON) -> list[Any]:
    spec, st = obj.get("spec") or {}, obj.get("status") or {}
    ref = spec.get("scaleTargetRef") or {}
    return [meta(obj)["name"], f"{ref.get('kind')}/{ref.get('name')}", "<unknown>/80%",
            as_int(spec.get("minReplicas"), 1), as_int(spec.get("maxReplicas")),
            as_int(st.get("currentReplicas")), _age(obj)]


BUILTIN: dict[str, Printer] = {
    "Deployment": ([_col("Name", fmt="name"), _col("Ready"), _col("Up-to-date", "integer"),
                    _col("Available", "integer"), _col("Age"), _col("Containers", priority=1),
                    _col("Images", priority=1), _col("Selector", priority=1)], _deployment),
    "ReplicaSet": ([_col("Name", fmt="name"), _col("Desired", "integer"),
                    _col("Current", "integer"), _col("Ready", "integer"), _col("Age")],
                   _replicaset),
    "Pod": ([_col("Name", fmt="name"), _col("Ready"), _col("Status"),
             _col("Restarts", "string"), _col("Age"), _col("IP", priority=1),
             _col("Node", priority=1), _col("Nominated Node", priority=1),
             _col("Readiness Gates", priority=1)], _pod),
    "HorizontalPodAutoscaler": ([_col("Name", fmt="name"), _col("Reference"), _col("Targets"),
                                 _col("MinPods", "integer"), _col("MaxPods", "integer"),
                                 _col("Replicas", "integer"), _col("Age")], _hpa),
}


def _json_path(obj: Any, path: str) -> Any:
    node = obj
    for part in path.strip(".").split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _custom(res: Resource) -> Printer:
    columns = [_col("Name", fmt="name")]
    for c in res.printer_columns:
        columns.append(_col(str(c["name"]), "string" if c.get("type") == "date"
                            else str(c.get("type", "string")), int(c.get("priority", 0))))

    def row(obj: JSON) -> list[Any]:
        cells: list[Any] = [meta(obj)["name"]]
        for c in res.printer_columns:
            value = _json_path(obj, str(c.get("jsonPath", "")))
            if c.get("type") == "date":
                value = human_age(value) if value else "<unknown>"
            cells.append(value)
        if not any(c.get("jsonPath") == ".metadata.creationTimestamp"
                   for c in res.printer_columns):
            cells.append(_age(obj))
        return cells

    if not any(c.get("jsonPath") == ".metadata.creationTimestamp" for c in res.printer_columns):
        columns.append(_col("Age"))
    return columns, row


def _default() -> Printer:
    return [_col("Name", fmt="name"), _col("Age")], lambda o: [meta(o)["name"], _age(o)]


def wants_table(accept: str) -> bool:
    first = accept.split(",")[0]
    return "as=Table" in first


def table(res: Resource, items: list[JSON], rv: str, include: str = "Metadata") -> JSON:
    if res.custom:
        columns, row = _custom(res)
    else:
        columns, row = BUILTIN.get(res.kind) or _default()
    rows = []
    for obj in items:
        entry: JSON = {"cells": row(obj)}
        if include == "Object":
            entry["object"] = obj
        elif include != "None":
            entry["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                               "metadata": meta(obj)}
        rows.append(entry)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": rv}, "columnDefinitions": columns, "rows": rows}
