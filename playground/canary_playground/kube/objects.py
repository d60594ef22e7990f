"""Small helpers over object dicts: owner references, conditions, pod readiness."""

from __future__ import annotations

import time
from typing import Any

from .errors import JSON, now_rfc3339, parse_rfc3339


def meta(obj: JSON) -> JSON:
    value = obj.get("metadata")
    return value if isinstance(value, dict) else {}


def annotations_of(obj: JSON) -> dict[str, str]:
    return dict(meta(obj).get("annotations") or {})


def controller_ref(obj: JSON) -> JSON | None:
    for ref in meta(obj).get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller"):
            return ref
    return None


def owned_by(obj: JSON, owner: JSON) -> bool:
    ref = controller_ref(obj)
    return ref is not None and ref.get("uid") == meta(owner).get("uid")


def new_controller_ref(owner: JSON) -> JSON:
    m = meta(owner)
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": m["name"],
            "uid": m["uid"], "controller": True, "blockOwnerDeletion": True}


def deleting(obj: JSON) -> bool:
    return bool(meta(obj).get("deletionTimestamp"))


def created(obj: JSON) -> tuple[str, str]:
    """Sort key: creation time, then name (``ReplicaSetsByCreationTimestamp``)."""
    return str(meta(obj).get("creationTimestamp") or ""), str(meta(obj).get("name") or "")


# --------------------------------------------------------------------------- conditions


def get_condition(status: JSON, kind: str) -> JSON | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return None


def new_condition(kind: str, status: str, reason: str, message: str) -> JSON:
    now = now_rfc3339()
    return {"type": kind, "status": status, "lastUpdateTime": now, "lastTransitionTime": now,
            "reason": reason, "message": message}


def set_condition(status: JSON, cond: JSON) -> None:
    """``SetDeploymentCondition``: no-op for the same status and reason; a new condition
    goes last, keeping ``lastTransitionTime`` when the status did not change."""
    current = get_condition(status, cond["type"])
    if current and current.get("status") == cond["status"] and \
            current.get("reason") == cond["reason"]:
        return
    if current and current.get("status") == cond["status"]:
        cond["lastTransitionTime"] = current.get("lastTransitionTime")
    remove_condition(status, cond["type"])
    status.setdefault("conditions", []).append(cond)


def remove_condition(status: JSON, kind: str) -> None:
    kept = [c for c in status.get("conditions") or [] if c.get("type") != kind]
    if kept:
        status["conditions"] = kept
    else:
        status.pop("conditions", None)


# --------------------------------------------------------------------------- pods


def pod_condition(pod: JSON, kind: str) -> JSON | None:
    return get_condition(pod.get("status") or {}, kind)


def pod_ready(pod: JSON) -> bool:
    cond = pod_condition(pod, "Ready")
    return cond is not None and cond.get("status") == "True"


def pod_available(pod: JSON, min_ready_seconds: int, now: float | None = None) -> bool:
    """``IsPodAvailable``: Ready for longer than ``minReadySeconds``."""
    cond = pod_condition(pod, "Ready")
    if cond is None or cond.get("status") != "True":
        return False
    if min_ready_seconds <= 0:
        return True
    since = cond.get("lastTransitionTime")
    if not since:
        return False
    return parse_rfc3339(since) + min_ready_seconds < (now or time.time())


def pod_active(pod: JSON) -> bool:
    phase = (pod.get("status") or {}).get("phase")
    return not deleting(pod) and phase not in ("Succeeded", "Failed")


def restarts(pod: JSON) -> int:
    return sum(int(c.get("restartCount") or 0)
               for c in (pod.get("status") or {}).get("containerStatuses") or [])


def drop_zero(status: JSON, keys: tuple[str, ...]) -> JSON:
    """Omit zero counts, as the API's ``omitempty`` integers are."""
    return {k: v for k, v in status.items() if not (k in keys and v in (0, None))}


def as_int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default
