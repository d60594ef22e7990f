"""Kubernetes Events about a CanaryRule, so ``kubectl describe canaryrule`` tells the story.

A repeat of the same (type, reason, message) for the same rule within
``SERIES_WINDOW_SECONDS`` bumps the existing Event's ``count`` and ``lastTimestamp``
instead of creating another object, as client-go's recorder does.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import OrderedDict
from datetime import UTC, datetime

from controller import API_GROUP, API_VERSION, KIND
from controller.conventions import MANAGER
from controller.models.base import JSON

from .client import MERGE_PATCH, Kube, path_of
from .errors import NotFound

COMPONENT = MANAGER
MAX_MESSAGE = 1024  # characters; the API server limits event notes to about 1 KiB
MAX_REASON = 128
SERIES_WINDOW_SECONDS = 600.0
_CACHE_SIZE = 4096
_INSTANCE = socket.gethostname()

_lock = threading.Lock()
_recent: OrderedDict[tuple[int, str, str, str, str], tuple[str, int, float]] = OrderedDict()


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def emit(kube: Kube, rule_obj: JSON, type_: str, reason: str, message: str) -> JSON:
    """Record an Event (``type_`` ``Normal`` or ``Warning``) about the rule ``rule_obj``."""
    if type_ not in ("Normal", "Warning"):
        raise ValueError(f"event type must be Normal or Warning, not {type_!r}")
    meta = rule_obj.get("metadata") or {}
    namespace = meta.get("namespace") or kube.namespace
    reason, message = truncate(reason, MAX_REASON), truncate(message, MAX_MESSAGE)
    key = (id(kube), str(meta.get("uid") or meta.get("name")), type_, reason, message)
    now, stamp = time.monotonic(), _now()
    with _lock:
        seen = _recent.get(key)
    if seen is not None and now - seen[2] < SERIES_WINDOW_SECONDS:
        name, count, _ = seen
        try:
            answer = kube.request("PATCH", path_of("v1", "events", namespace, name),
                                  body={"count": count + 1, "lastTimestamp": stamp},
                                  content_type=MERGE_PATCH)
            _remember(key, name, count + 1, now)
            return answer
        except NotFound:
            pass  # expired (events have a TTL): record a new one
    name = f"{meta.get('name', 'canaryrule')}.{time.time_ns():x}"
    body: JSON = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": namespace},
        "involvedObject": {
            "apiVersion": rule_obj.get("apiVersion") or f"{API_GROUP}/{API_VERSION}",
            "kind": rule_obj.get("kind") or KIND,
            "name": meta.get("name"),
            "namespace": namespace,
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "type": type_,
        "reason": reason,
        "message": message,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": _INSTANCE,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
    body["involvedObject"] = {k: v for k, v in body["involvedObject"].items() if v}
    answer = kube.request("POST", path_of("v1", "events", namespace), body=body)
    _remember(key, name, 1, now)
    return answer


def _remember(key: tuple[int, str, str, str, str], name: str, count: int, at: float) -> None:
    with _lock:
        _recent[key] = (name, count, at)
        _recent.move_to_end(key)
        while len(_recent) > _CACHE_SIZE:
            _recent.popitem(last=False)


def list_events(kube: Kube, namespace: str, rule_name: str | None = None) -> list[JSON]:
    """Events in ``namespace`` (about one rule when ``rule_name`` is given), oldest first."""
    query = {}
    if rule_name:
        query["fieldSelector"] = f"involvedObject.name={rule_name},involvedObject.kind={KIND}"
    items = kube.request("GET", path_of("v1", "events", namespace), query=query).get("items")
    return sorted(items or [], key=lambda e: (e.get("lastTimestamp") or "", e["metadata"]["name"]))
