"""CanaryRule reads and writes: list, get, watch, status, annotations, apply.

Status is written only through the ``/status`` subresource, so a controller never
touches the user's spec, and spec edits never reset the rollout's state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from controller import API_GROUP, API_VERSION, KIND, PLURAL
from controller.conventions import FINALIZER
from controller.models.base import JSON

from .client import APPLY_PATCH, JSON_PATCH, MERGE_PATCH, Kube, path_of
from .errors import NotFound
from .retry import on_conflict

GROUP_VERSION = f"{API_GROUP}/{API_VERSION}"
_SERVER_SET = frozenset({"resourceVersion", "uid", "generation", "creationTimestamp",
                         "managedFields", "selfLink", "deletionTimestamp"})


def rule_path(namespace: str | None, name: str | None = None,
              subresource: str | None = None) -> str:
    return path_of(GROUP_VERSION, PLURAL, namespace, name, subresource)


def _typed(obj: JSON) -> JSON:
    """List items may come without apiVersion/kind; the models need both."""
    obj.setdefault("apiVersion", GROUP_VERSION)
    obj.setdefault("kind", KIND)
    return obj


def list_rules(kube: Kube, namespace: str | None) -> tuple[list[JSON], str]:
    """Every CanaryRule (in ``namespace``, or in all namespaces for None) and the list's
    resourceVersion, from which a watch resumes."""
    answer = kube.request("GET", rule_path(namespace))
    items = [_typed(i) for i in answer.get("items") or []]
    return items, str((answer.get("metadata") or {}).get("resourceVersion", ""))


def get_rule(kube: Kube, namespace: str, name: str) -> JSON:
    return _typed(kube.request("GET", rule_path(namespace, name)))


def watch_rules(kube: Kube, namespace: str | None, resource_version: str | None,
                timeout_seconds: float = 60,
                on_open: Callable[[Callable[[], None]], None] | None = None
                ) -> Iterator[tuple[str, JSON]]:
    """``(type, rule)`` events after ``resource_version``; raises ``Gone`` on 410."""
    query = {"allowWatchBookmarks": "true"}
    if resource_version:
        query["resourceVersion"] = resource_version
    for kind, obj in kube.watch(rule_path(namespace), query, timeout_seconds, on_open):
        yield kind, (obj if kind == "BOOKMARK" else _typed(obj))


def patch_status(kube: Kube, namespace: str, name: str, status: JSON,
                 resource_version: str | None) -> JSON:
    """Replace the whole status through the status subresource.

    A JSON patch, not a merge patch: a merge patch would keep status keys the new status
    no longer has. With ``resource_version`` the patch also sets
    ``metadata.resourceVersion``, which the API server checks against the stored one: a
    stale version raises ``Conflict`` (re-read and decide again), never a blind overwrite.
    """
    ops: list[JSON] = []
    if resource_version:
        ops.append({"op": "replace", "path": "/metadata/resourceVersion",
                    "value": resource_version})
    ops.append({"op": "add", "path": "/status", "value": status})
    return kube.request("PATCH", rule_path(namespace, name, "status"), body=ops,
                        content_type=JSON_PATCH)


def set_finalizer(kube: Kube, namespace: str, name: str, present: bool) -> JSON | None:
    """Add or remove the controller's finalizer (other finalizers are kept), guarded by
    the resourceVersion just read; None when the rule is gone."""

    def once() -> JSON | None:
        try:
            obj = get_rule(kube, namespace, name)
        except NotFound:
            return None
        meta = obj.get("metadata") or {}
        current = list(meta.get("finalizers") or [])
        if (FINALIZER in current) == present:
            return obj
        wanted = [*current, FINALIZER] if present else [f for f in current if f != FINALIZER]
        body = {"metadata": {"finalizers": wanted or None,
                             "resourceVersion": meta.get("resourceVersion")}}
        try:
            return kube.request("PATCH", rule_path(namespace, name), body=body,
                                content_type=MERGE_PATCH)
        except NotFound:
            return None

    return on_conflict(once, what=f"finalizer of {namespace}/{name}")


def set_annotations(kube: Kube, namespace: str, name: str,
                    annotations: dict[str, str | None],
                    resource_version: str | None = None) -> JSON:
    """Set (or, for None, remove) annotations: manual actions from canaryctl, and the
    controller clearing them. With ``resource_version`` the write is optimistic."""
    meta: JSON = {"annotations": dict(annotations)}
    if resource_version:
        meta["resourceVersion"] = resource_version
    return kube.request("PATCH", rule_path(namespace, name), body={"metadata": meta},
                        content_type=MERGE_PATCH)


def apply_rule(kube: Kube, manifest: JSON, field_manager: str = "canaryctl",
               namespace: str | None = None) -> JSON:
    """Create or update a rule by server-side apply: declared intent, not an optimistic
    update, so status and server-set metadata (resourceVersion, uid, generation, ...) in
    the manifest are dropped. The namespace is ``namespace``, else the manifest's, else
    the connection's default.
    """
    body = {k: v for k, v in manifest.items() if k != "status"}
    meta = {k: v for k, v in (body.get("metadata") or {}).items() if k not in _SERVER_SET}
    ns = namespace or meta.get("namespace") or kube.namespace
    meta["namespace"] = ns
    body["metadata"] = meta
    body.setdefault("apiVersion", GROUP_VERSION)
    body.setdefault("kind", KIND)
    return kube.request("PATCH", rule_path(ns, str(meta.get("name", ""))), body=body,
                        content_type=APPLY_PATCH,
                        query={"fieldManager": field_manager, "force": "true"})


def delete_rule(kube: Kube, namespace: str, name: str) -> None:
    """Delete a rule. With the controller's finalizer on it (a rollout in flight) it is
    only marked for deletion: the controller restores the target, then releases it; the
    API server's garbage collector then removes the canary it owns."""
    kube.request("DELETE", rule_path(namespace, name),
                 body={"propagationPolicy": "Background"})
