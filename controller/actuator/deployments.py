"""Deployment reads and writes: get, list and watch (by label selector), create, patch,
scale, and what a Deployment's status says about its pods.

- Every write reads first, computes the smallest merge patch that makes the object as
  desired, and sends nothing when there is nothing to change (idempotent). The patch
  carries ``metadata.resourceVersion``: a concurrent change yields 409, and the write is
  re-read and retried (:func:`.retry.on_conflict`).
- Replicas are written through the ``/scale`` subresource (as an autoscaler would), also
  guarded by the resourceVersion.
- "Already as desired" compares with *subset* semantics (every field we set has our
  value; fields the API server defaulted are ignored) for the canary, and exactly for a
  template written into the target (a restore must be exact).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator
from typing import Any

from controller.engine import Workload
from controller.models.base import JSON

from .client import MERGE_PATCH, Kube, path_of
from .errors import NotFound
from .retry import on_conflict

log = logging.getLogger(__name__)


def deployment_path(namespace: str | None, name: str | None = None,
                    sub: str | None = None) -> str:
    return path_of("apps/v1", "deployments", namespace, name, sub)


def get_deployment(kube: Kube, namespace: str, name: str) -> JSON:
    return kube.request("GET", deployment_path(namespace, name))


def get_or_none(kube: Kube, namespace: str, name: str) -> JSON | None:
    try:
        return get_deployment(kube, namespace, name)
    except NotFound:
        return None


def list_deployments(kube: Kube, namespace: str | None, selector: str | None = None
                     ) -> tuple[list[JSON], str]:
    """Deployments (matching ``selector``) and the list's resourceVersion."""
    query = {"labelSelector": selector} if selector else None
    answer = kube.request("GET", deployment_path(namespace), query=query)
    return list(answer.get("items") or []), str((answer.get("metadata") or {})
                                                .get("resourceVersion", ""))


def watch_deployments(kube: Kube, namespace: str | None, resource_version: str | None,
                      timeout_seconds: float = 60, selector: str | None = None,
                      on_open: Callable[[Callable[[], None]], None] | None = None
                      ) -> Iterator[tuple[str, JSON]]:
    """``(type, deployment)`` events after ``resource_version``; ``Gone`` on 410."""
    query = {"allowWatchBookmarks": "true"}
    if resource_version:
        query["resourceVersion"] = resource_version
    if selector:
        query["labelSelector"] = selector
    yield from kube.watch(deployment_path(namespace), query, timeout_seconds, on_open)


# --------------------------------------------------------------------------- reading status


def replicas_of(dep: JSON) -> int:
    value = (dep.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def template_of(dep: JSON) -> JSON:
    return copy.deepcopy((dep.get("spec") or {}).get("template") or {})


def _problem(status: JSON) -> str:
    """Why the Deployment is stuck, as its conditions say (empty when it is not)."""
    for cond in status.get("conditions") or []:
        kind, value = cond.get("type"), cond.get("status")
        if (kind == "Progressing" and value == "False") or \
                (kind == "ReplicaFailure" and value == "True"):
            return f"{cond.get('reason', kind)}: {cond.get('message', '')}".strip()
    return ""


def workload(dep: JSON, revision: str | None) -> Workload:
    """What the engine needs to know of a Deployment (``revision``: the id of the
    template it runs, computed by the caller)."""
    status = dep.get("status") or {}
    generation = int((dep.get("metadata") or {}).get("generation") or 0)
    return Workload(
        replicas=replicas_of(dep),
        pods=int(status.get("replicas") or 0),
        available=int(status.get("availableReplicas") or 0),
        updated=int(status.get("updatedReplicas") or 0),
        current=int(status.get("observedGeneration") or 0) >= generation,
        revision=revision,
        problem=_problem(status),
    )


# --------------------------------------------------------------------------- writing


def covers(actual: Any, desired: Any) -> bool:
    """Whether ``actual`` has every value ``desired`` sets (extra keys in maps are
    fine; lists must have the same length; an empty or missing value matches missing)."""
    if desired is None:
        return True
    if actual is None:
        return desired in ({}, [], "")
    if isinstance(desired, dict):
        return isinstance(actual, dict) and all(covers(actual.get(k), v)
                                                for k, v in desired.items())
    if isinstance(desired, list):
        return isinstance(actual, list) and len(actual) == len(desired) and \
            all(covers(a, d) for a, d in zip(actual, desired, strict=True))
    return bool(actual == desired)


def merge_diff(old: Any, new: Any) -> Any:
    """The RFC 7386 merge patch turning ``old`` into ``new``."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return copy.deepcopy(new)
    patch: JSON = {k: None for k in old if k not in new}
    for key, value in new.items():
        if key not in old:
            patch[key] = copy.deepcopy(value)
        elif old[key] != value:
            patch[key] = merge_diff(old[key], value)
    return patch


def create(kube: Kube, namespace: str, body: JSON) -> JSON:
    return kube.request("POST", deployment_path(namespace), body=body)


def converge(kube: Kube, namespace: str, name: str,
             patch_for: Callable[[JSON], JSON | None], what: str) -> JSON:
    """Read, compute the patch, write it guarded by resourceVersion; retried on 409.

    ``patch_for`` returns None (or ``{}``) when the object is already as desired: then
    nothing is written. Raises ``NotFound`` if the object does not exist.
    """
    def once() -> JSON:
        current = get_deployment(kube, namespace, name)
        patch = patch_for(current)
        if not patch:
            return current
        patch.setdefault("metadata", {})["resourceVersion"] = \
            current["metadata"]["resourceVersion"]
        return kube.request("PATCH", deployment_path(namespace, name), body=patch,
                            content_type=MERGE_PATCH)

    return on_conflict(once, what=f"{what} {namespace}/{name}")


def scale(kube: Kube, namespace: str, name: str, replicas: int, what: str) -> None:
    """Set ``spec.replicas`` through the ``/scale`` subresource; no write when equal."""
    def once() -> None:
        current = get_deployment(kube, namespace, name)
        if replicas_of(current) == replicas:
            return
        body = {"metadata": {"resourceVersion": current["metadata"]["resourceVersion"]},
                "spec": {"replicas": replicas}}
        kube.request("PATCH", deployment_path(namespace, name, "scale"), body=body,
                     content_type=MERGE_PATCH)
        log.info("%s: %s/%s scaled to %d", what, namespace, name, replicas)

    on_conflict(once, what=f"{what} {namespace}/{name}")
