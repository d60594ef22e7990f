"""A small Kubernetes API server for tests, used through the official ``kubernetes`` client.

Why our own server and not ``kmock``: kmock's ``KubernetesEmulator`` stores objects as
plain merged dicts, always answers ``resourceVersion: "..."``, has no status or scale
subresources, no optimistic concurrency (409 on a stale resourceVersion), no watch resume
or 410 Gone, and runs inside the test's asyncio loop. The controller under test is its own
process, and those semantics are exactly what it must get right, so this is a stdlib
``ThreadingHTTPServer`` with an in-memory store (about what an apiserver + etcd do for
the handful of resources the controller touches).

Semantics (as in a real API server unless noted):

- Resources: ``canary.llmops.dev/v1alpha1`` canaryrules (status subresource; validated,
  pruned and defaulted against the chart's CRD schema when PyYAML and jsonschema are
  importable), ``apps/v1`` deployments (+ ``/status``, ``/scale``), ``v1`` events, secrets,
  services, configmaps, ``coordination.k8s.io/v1`` leases. Namespaces need not exist.
- Every write bumps a global resourceVersion; a write whose body carries a stale
  ``metadata.resourceVersion`` (PUT, any patch type, ``/scale``, delete preconditions)
  fails with 409 Conflict. A PUT without resourceVersion is refused (422) for custom
  resources and allowed for built-ins. A write that changes nothing is a no-op: no new
  resourceVersion and no watch event.
- ``metadata.generation`` increments on spec changes (for custom resources: any change
  outside metadata and status). Writes to the main resource ignore ``status``; writes to
  ``/status`` change only ``status``.
- Patches: ``application/merge-patch+json`` (RFC 7386), ``application/json-patch+json``
  (RFC 6902), ``application/strategic-merge-patch+json`` (built-ins only, 415 for custom
  resources as in Kubernetes; a subset: maps merge, ``null`` deletes, lists of containers,
  env, volumes, volumeMounts, ownerReferences, imagePullSecrets and conditions merge by
  their key, ``$patch: replace|delete`` honoured, other lists replaced), and server-side
  apply (``application/apply-patch+yaml``; create or merge, fields the same manager applied
  before and dropped now are removed; no per-field ownership conflicts: always "force").
- List and watch with label selectors (``=``, ``!=``, ``in``, ``notin``, existence) and
  simple field selectors. Watch: ``resourceVersion`` resume, a 410 ``Expired`` ERROR event
  when the version was compacted (``POST /_emulator/compact`` or the history limit),
  ``timeoutSeconds``, optional BOOKMARK events. Without a resourceVersion (or with "0") a
  watch starts with synthetic ADDED events for what exists. No ``limit``/``continue``.
- Deleting an object deletes its dependents (ownerReferences, background propagation)
  unless ``propagationPolicy=Orphan``. No finalizers.
- A fake deployment controller: ``deploymentDelay`` seconds after any Deployment write,
  ``status`` follows ``spec`` (replicas, updated, ready, available, observedGeneration,
  Available condition; zero counts are omitted as the API does). The annotation
  ``emulator.llmops.dev/unavailable: "true"`` keeps ready/available at zero.

Side API for tests (no auth): ``GET /_emulator/health``; ``GET|POST|DELETE
/_emulator/faults`` (``{"path_regex", "method", "status", "count", "delay", "timeout",
"after", "message"}``: ``status`` answers with a Kubernetes Status of that code,
``timeout`` sleeps ``delay`` then drops the connection, ``after`` applies the request
first and then fails, like a lost response); ``GET|DELETE /_emulator/requests[?since=N]``
(request log); ``POST /_emulator/reset``, ``/_emulator/compact``,
``/_emulator/disconnect-watches``; ``GET|POST /_emulator/config`` (``deploymentDelay``,
``bookmarkInterval``, ``historyLimit``).

Run: ``python -m canary_playground.kube_emulator --port 0 --kubeconfig /tmp/kubeconfig``
(it prints ``listening on http://127.0.0.1:PORT``), or ``with running_emulator() as emu:``,
which starts it as a subprocess on a free port and gives ``emu.kubeconfig``. It lives in
the package (not only in tests) because ``canaryctl demo`` runs the controller against it.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import copy
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

JSON = dict[str, Any]
UNAVAILABLE_ANNOTATION = "emulator.llmops.dev/unavailable"
DEFAULT_CRD = Path(__file__).resolve().parents[2] / "charts/llm-canary/crds/canaryrules.yaml"
MAX_WATCH_SECONDS = 1800.0


# --------------------------------------------------------------------------- resources


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    status: bool = False  # has a /status subresource
    scale: bool = False  # has a /scale subresource
    generation: str = ""  # "spec": spec changes bump it; "custom": all but metadata/status
    unconditional_update: bool = True  # PUT without resourceVersion allowed
    strategic: bool = True  # accepts strategic merge patches

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


RESOURCES = [
    Resource("canary.llmops.dev", "v1alpha1", "canaryrules", "CanaryRule", status=True,
             generation="custom", unconditional_update=False, strategic=False),
    Resource("apps", "v1", "deployments", "Deployment", status=True, scale=True,
             generation="spec"),
    Resource("", "v1", "events", "Event"),
    Resource("", "v1", "secrets", "Secret"),
    Resource("", "v1", "services", "Service"),
    Resource("", "v1", "configmaps", "ConfigMap"),
    Resource("coordination.k8s.io", "v1", "leases", "Lease"),
]
BY_PATH = {(r.group, r.version, r.plural): r for r in RESOURCES}
DEPLOYMENTS = BY_PATH[("apps", "v1", "deployments")]


class ApiError(Exception):
    """An error answered as a Kubernetes ``Status`` object."""

    def __init__(self, code: int, reason: str, message: str, *, details: JSON | None = None,
                 causes: list[JSON] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.details = dict(details or {})
        if causes:
            self.details["causes"] = causes

    def status(self) -> JSON:
        return status_object(self.code, self.reason, self.message, self.details)


def status_object(code: int, reason: str, message: str, details: JSON | None = None) -> JSON:
    body: JSON = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                  "status": "Success" if code < 400 else "Failure", "message": message,
                  "reason": reason, "code": code}
    if details:
        body["details"] = details
    return body


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def not_found(res: Resource, name: str) -> ApiError:
    group = f".{res.group}" if res.group else ""
    return ApiError(404, "NotFound", f'{res.plural}{group} "{name}" not found',
                    details={"name": name, "group": res.group, "kind": res.plural})


def conflict(res: Resource, name: str) -> ApiError:
    group = f".{res.group}" if res.group else ""
    return ApiError(409, "Conflict",
                    f'Operation cannot be fulfilled on {res.plural}{group} "{name}": the object '
                    "has been modified; please apply your changes to the latest version and "
                    "try again", details={"name": name, "group": res.group, "kind": res.plural})


def invalid(res: Resource, name: str, causes: list[tuple[str, str]]) -> ApiError:
    group = f".{res.group}" if res.group else ""
    text = "; ".join(f"{f}: {m}" for f, m in causes)
    return ApiError(422, "Invalid", f'{res.kind}{group} "{name}" is invalid: {text}',
                    details={"name": name, "group": res.group, "kind": res.kind},
                    causes=[{"reason": "FieldValueInvalid", "message": m, "field": f}
                            for f, m in causes])


# --------------------------------------------------------------------------- patches


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (never mutates its arguments)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ValueError(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, parts: list[str], path: str) -> tuple[Any, str]:
    node = doc
    for part in parts[:-1]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise ValueError(f"path {path!r} does not exist")
    return node, parts[-1]


def _get(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    if not parts:
        return doc
    node, last = _parent(doc, parts, path)
    if isinstance(node, dict) and last in node:
        return node[last]
    if isinstance(node, list) and last.isdigit() and int(last) < len(node):
        return node[int(last)]
    raise ValueError(f"path {path!r} does not exist")


def _remove(doc: Any, path: str) -> Any:
    node, last = _parent(doc, _pointer(path), path)
    if isinstance(node, dict) and last in node:
        return node.pop(last)
    if isinstance(node, list) and last.isdigit() and int(last) < len(node):
        return node.pop(int(last))
    raise ValueError(f"path {path!r} does not exist")


def _add(doc: Any, path: str, value: Any, *, replace: bool = False) -> Any:
    parts = _pointer(path)
    if not parts:
        return copy.deepcopy(value)
    node, last = _parent(doc, parts, path)
    if isinstance(node, dict):
        if replace and last not in node:
            raise ValueError(f"path {path!r} does not exist")
        node[last] = copy.deepcopy(value)
    elif isinstance(node, list):
        if last == "-" and not replace:
            node.append(copy.deepcopy(value))
        elif last.isdigit() and int(last) <= len(node) - (1 if replace else 0):
            if replace:
                node[int(last)] = copy.deepcopy(value)
            else:
                node.insert(int(last), copy.deepcopy(value))
        else:
            raise ValueError(f"path {path!r} is out of range")
    else:
        raise ValueError(f"path {path!r} does not exist")
    return doc


def json_patch(doc: Any, operations: Any) -> Any:
    """RFC 6902 JSON patch; ``ValueError`` for a failed test or a bad path."""
    if not isinstance(operations, list):
        raise ValueError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(doc)
    for op in operations:
        kind, path = op.get("op"), op.get("path", "")
        if kind == "add":
            doc = _add(doc, path, op.get("value"))
        elif kind == "replace":
            doc = _add(doc, path, op.get("value"), replace=True)
        elif kind == "remove":
            _remove(doc, path)
        elif kind == "test":
            if _get(doc, path) != op.get("value"):
                raise ValueError(f"test failed at {path!r}")
        elif kind in ("move", "copy"):
            value = copy.deepcopy(_get(doc, op.get("from", "")))
            if kind == "move":
                _remove(doc, op.get("from", ""))
            doc = _add(doc, path, value)
        else:
            raise ValueError(f"unknown JSON patch operation {kind!r}")
    return doc


MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name",
    "env": "name", "volumes": "name", "volumeMounts": "mountPath", "imagePullSecrets": "name",
    "ownerReferences": "uid", "conditions": "type",
}


def strategic_merge(target: Any, patch: Any) -> Any:
    """The subset of strategic merge patch described in the module docstring."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None or (isinstance(value, dict) and value.get("$patch") == "delete"):
            result.pop(key, None)
        elif key in MERGE_KEYS and isinstance(value, list) and isinstance(result.get(key), list):
            result[key] = _merge_list(result[key], value, MERGE_KEYS[key])
        else:
            result[key] = strategic_merge(result.get(key), value)
    return result


def _merge_list(current: list[Any], patch: list[Any], key: str) -> list[Any]:
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [copy.deepcopy(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    out = [copy.deepcopy(i) for i in current]
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            out.append(copy.deepcopy(item))
            continue
        index = next((n for n, c in enumerate(out) if isinstance(c, dict)
                      and c.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                out.pop(index)
        elif index is None:
            out.append(strategic_merge({}, item))
        else:
            out[index] = strategic_merge(out[index], item)
    return out


def _drop_missing(obj: Any, before: Any, after: Any) -> Any:
    """Remove from ``obj`` the map keys ``before`` had and ``after`` no longer has."""
    if not (isinstance(obj, dict) and isinstance(before, dict)):
        return obj
    after = after if isinstance(after, dict) else {}
    out = dict(obj)
    for key, value in before.items():
        if key not in after:
            out.pop(key, None)
        elif key in out:
            out[key] = _drop_missing(out[key], value, after[key])
    return out


# --------------------------------------------------------------------------- selectors

_SEL_SET = re.compile(r"^\s*([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_SEL_EQ = re.compile(r"^\s*([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)\s*$")
_SEL_EXISTS = re.compile(r"^\s*(!?)([\w./-]+)\s*$")


def parse_label_selector(text: str) -> list[tuple[str, str, list[str]]]:
    terms: list[tuple[str, str, list[str]]] = []
    for part in re.split(r",(?![^()]*\))", text or ""):
        if not part.strip():
            continue
        if m := _SEL_SET.match(part):
            terms.append((m[1], m[2], [v.strip() for v in m[3].split(",") if v.strip()]))
        elif m := _SEL_EQ.match(part):
            terms.append((m[1], "!=" if m[2] == "!=" else "=", [m[3]]))
        elif m := _SEL_EXISTS.match(part):
            terms.append((m[2], "!" if m[1] else "exists", []))
        else:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {part!r}")
    return terms


def labels_match(labels: dict[str, str], terms: list[tuple[str, str, list[str]]]) -> bool:
    for key, op, values in terms:
        have = labels.get(key)
        ok = {
            "=": have == values[0] if values else False,
            "!=": have != values[0] if values else True,
            "in": have in values,
            "notin": have not in values,
            "exists": key in labels,
            "!": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def parse_field_selector(text: str) -> list[tuple[str, bool, str]]:
    out: list[tuple[str, bool, str]] = []
    for part in (text or "").split(","):
        if not part.strip():
            continue
        m = re.match(r"^\s*([\w.]+)\s*(==|=|!=)\s*(.*?)\s*$", part)
        if not m:
            raise ApiError(400, "BadRequest", f"invalid field selector: {part!r}")
        out.append((m[1], m[2] != "!=", m[3]))
    return out


def fields_match(obj: JSON, terms: list[tuple[str, bool, str]]) -> bool:
    for path, equal, value in terms:
        node: Any = obj
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        have = "" if node is None else str(node)
        if (have == value) != equal:
            return False
    return True


def selector_matches(selector: JSON, labels: dict[str, str]) -> bool:
    """A LabelSelector object (matchLabels + matchExpressions) against labels."""
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if (op == "In" and labels.get(key) not in values) or \
           (op == "NotIn" and labels.get(key) in values) or \
           (op == "Exists" and key not in labels) or \
           (op == "DoesNotExist" and key in labels):
            return False
    return True


# --------------------------------------------------------------------------- CRD schema


class CrdSchema:
    """Structural-schema behaviour of a CRD: prune unknown fields, default, validate."""

    def __init__(self, schema: JSON) -> None:
        import jsonschema  # type: ignore[import-untyped]

        self.schema = schema
        self._validator = jsonschema.Draft7Validator(_to_json_schema(schema))

    @classmethod
    def load(cls, path: Path) -> CrdSchema | None:
        try:
            import jsonschema  # noqa: F401
            import yaml
        except ImportError:
            return None
        if not path.exists():
            return None
        crd = yaml.safe_load(path.read_text())
        version = crd["spec"]["versions"][0]
        return cls(version["schema"]["openAPIV3Schema"])

    def normalize(self, obj: JSON) -> JSON:
        out = {k: v for k, v in obj.items() if k in ("apiVersion", "kind", "metadata")}
        props = self.schema.get("properties", {})
        for key, value in obj.items():
            if key in props and key not in out:
                cleaned = _prune_default(value, props[key])
                if cleaned is not _DROP:
                    out[key] = cleaned
        return out

    def errors(self, obj: JSON) -> list[tuple[str, str]]:
        body = {k: v for k, v in obj.items() if k != "metadata"}
        found = []
        for err in sorted(self._validator.iter_errors(body), key=lambda e: list(e.path)):
            path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.path)
            found.append((path.lstrip("."), err.message))
        return found


_DROP = object()


def _prune_default(value: Any, schema: JSON) -> Any:
    if value is None:
        return None if schema.get("nullable") else _DROP
    if isinstance(value, dict) and schema.get("type") == "object":
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        keep = schema.get("x-kubernetes-preserve-unknown-fields")
        out: JSON = {}
        for key, item in value.items():
            sub = (props or {}).get(key)
            if sub is None and isinstance(extra, dict):
                sub = extra
            if sub is None:
                if keep or (props is None and extra is None) or extra is True:
                    out[key] = item
                continue
            cleaned = _prune_default(item, sub)
            if cleaned is not _DROP:
                out[key] = cleaned
        for key, sub in (props or {}).items():
            if key not in out and "default" in sub:
                out[key] = copy.deepcopy(sub["default"])
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        items = [_prune_default(i, schema["items"]) for i in value]
        return [i for i in items if i is not _DROP]
    return value


def _to_json_schema(schema: Any) -> Any:
    """OpenAPI v3 (``nullable``, ``x-kubernetes-*``) to plain JSON Schema."""
    if isinstance(schema, list):
        return [_to_json_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _to_json_schema(v) for k, v in schema.items()
           if not k.startswith("x-kubernetes-") and k not in ("nullable", "format", "default")}
    if schema.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    if schema.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(schema.get(bound), bool):  # OpenAPI 3.0 boolean form
            if schema[bound] and limit in schema:
                out[bound] = schema[limit]
                out.pop(limit, None)
            else:
                out.pop(bound, None)
    return out


# --------------------------------------------------------------------------- store


@dataclass
class WatchEvent:
    rv: int
    resource: str
    type: str
    obj: JSON


class Store:
    """Objects, the global resourceVersion and the event history for watches."""

    def __init__(self, history_limit: int = 10_000, crd: CrdSchema | None = None) -> None:
        self.cond = threading.Condition()
        self.rv = 0
        self.objects: dict[tuple[str, str, str], JSON] = {}
        self.history: list[WatchEvent] = []
        self.history_rvs: list[int] = []
        self.compacted = 0
        self.history_limit = history_limit
        self.crd = crd
        self.watch_epoch = 0
        self.closed = False
        self.applied: dict[tuple[str, str, str, str], JSON] = {}  # last applied per manager
        self.on_deployment_write: Callable[[str, str], None] = lambda ns, name: None

    # -- internals (call with cond held) ---------------------------------------------

    def _record(self, res: Resource, kind: str, obj: JSON) -> None:
        self.history.append(WatchEvent(self.rv, res.key, kind, obj))
        self.history_rvs.append(self.rv)
        if len(self.history) > self.history_limit * 5 // 4:
            drop = len(self.history) - self.history_limit
            self.compacted = self.history_rvs[drop - 1]
            del self.history[:drop]
            del self.history_rvs[:drop]
        self.cond.notify_all()

    def compact(self) -> None:
        with self.cond:
            self.compacted = self.rv
            self.history.clear()
            self.history_rvs.clear()

    def reset(self) -> None:
        with self.cond:
            self.objects.clear()
            self.applied.clear()
            self.compacted = self.rv
            self.history.clear()
            self.history_rvs.clear()
            self.watch_epoch += 1
            self.cond.notify_all()

    def events_after(self, rv: int) -> list[WatchEvent]:
        return self.history[bisect.bisect_right(self.history_rvs, rv):]

    # -- reads -----------------------------------------------------------------------

    def get(self, res: Resource, ns: str, name: str) -> JSON:
        with self.cond:
            obj = self.objects.get((res.key, ns, name))
        if obj is None:
            raise not_found(res, name)
        return obj

    def list(self, res: Resource, ns: str | None, labels: str = "", fields: str = ""
             ) -> tuple[list[JSON], int]:
        terms, fterms = parse_label_selector(labels), parse_field_selector(fields)
        with self.cond:
            items = [o for (r, n, _), o in sorted(self.objects.items())
                     if r == res.key and (ns is None or n == ns)
                     and labels_match(o["metadata"].get("labels") or {}, terms)
                     and fields_match(o, fterms)]
            return items, self.rv

    # -- writes ----------------------------------------------------------------------

    def create(self, res: Resource, ns: str, body: JSON, *, dry_run: bool = False) -> JSON:
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise ApiError(400, "BadRequest", "metadata must be an object")
        _check_type(res, obj)
        if meta.get("namespace") not in (None, "", ns):
            raise ApiError(400, "BadRequest", "the namespace of the provided object does not "
                           "match the namespace sent on the request")
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        name = meta.get("name") or ""
        _check_name(res, name)
        for key in ("resourceVersion", "uid", "creationTimestamp", "generation",
                    "deletionTimestamp", "managedFields"):
            meta.pop(key, None)
        meta.update(namespace=ns, uid=str(uuid.uuid4()), creationTimestamp=now_rfc3339())
        if res.generation:
            meta["generation"] = 1
        if res.status:
            obj.pop("status", None)
        _defaults(res, obj)
        _validate(self, res, obj, None)
        with self.cond:
            if (res.key, ns, name) in self.objects:
                group = f".{res.group}" if res.group else ""
                raise ApiError(409, "AlreadyExists", f'{res.plural}{group} "{name}" already exists',
                               details={"name": name, "group": res.group, "kind": res.plural})
            if dry_run:
                return obj
            self.rv += 1
            meta["resourceVersion"] = str(self.rv)
            self.objects[(res.key, ns, name)] = obj
            self._record(res, "ADDED", obj)
        if res is DEPLOYMENTS:
            self.on_deployment_write(ns, name)
        return obj

    def update(self, res: Resource, ns: str, name: str,
               change: Callable[[JSON], JSON], *, subresource: str = "",
               require_rv: bool = False, dry_run: bool = False) -> JSON:
        """Apply ``change`` to the current object atomically, with all the write rules."""
        with self.cond:
            old = self.objects.get((res.key, ns, name))
            if old is None:
                raise not_found(res, name)
            new = change(copy.deepcopy(old))
            if not isinstance(new, dict):
                raise ApiError(400, "BadRequest", "the patched object is not an object")
            raw_meta = new.get("metadata")
            meta: JSON = raw_meta if isinstance(raw_meta, dict) else {}
            sent_rv = meta.get("resourceVersion")
            if require_rv and not sent_rv and not res.unconditional_update:
                raise invalid(res, name, [("metadata.resourceVersion",
                                           "Invalid value: 0x0: must be specified for an update")])
            if sent_rv and str(sent_rv) != old["metadata"]["resourceVersion"]:
                raise conflict(res, name)
            if meta.get("name", name) != name:
                raise ApiError(400, "BadRequest", "the name of the object does not match the "
                               "name on the URL")
            new = _restore(res, old, new, subresource)
            _defaults(res, new)
            _validate(self, res, new, old)
            if res.generation and _spec_of(res, new) != _spec_of(res, old):
                new["metadata"]["generation"] = int(old["metadata"].get("generation") or 1) + 1
            new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            if new == old or dry_run:
                return new
            self.rv += 1
            new["metadata"]["resourceVersion"] = str(self.rv)
            self.objects[(res.key, ns, name)] = new
            self._record(res, "MODIFIED", new)
        if res is DEPLOYMENTS and subresource != "status":
            self.on_deployment_write(ns, name)
        return new

    def delete(self, res: Resource, ns: str, name: str, *, precondition_rv: str | None = None,
               precondition_uid: str | None = None, orphan: bool = False) -> JSON:
        with self.cond:
            old = self.objects.get((res.key, ns, name))
            if old is None:
                raise not_found(res, name)
            if precondition_rv and precondition_rv != old["metadata"]["resourceVersion"]:
                raise conflict(res, name)
            if precondition_uid and precondition_uid != old["metadata"]["uid"]:
                raise conflict(res, name)
            self._delete_locked(res, ns, name, orphan=orphan)
            return old

    def _delete_locked(self, res: Resource, ns: str, name: str, *, orphan: bool) -> None:
        old = self.objects.pop((res.key, ns, name))
        for key in [k for k in self.applied if k[:3] == (res.key, ns, name)]:
            del self.applied[key]
        self.rv += 1
        gone = copy.deepcopy(old)
        gone["metadata"]["resourceVersion"] = str(self.rv)
        self._record(res, "DELETED", gone)
        if orphan:
            return
        uid = old["metadata"]["uid"]
        for (rkey, dns, dname), dep in list(self.objects.items()):
            refs = dep["metadata"].get("ownerReferences") or []
            if dns == ns and any(r.get("uid") == uid for r in refs) and \
                    (rkey, dns, dname) in self.objects:
                dres = next(r for r in RESOURCES if r.key == rkey)
                self._delete_locked(dres, dns, dname, orphan=False)


def _check_type(res: Resource, obj: JSON) -> None:
    api_version, kind = obj.setdefault("apiVersion", res.api_version), obj.setdefault(
        "kind", res.kind)
    if api_version != res.api_version or kind != res.kind:
        raise ApiError(400, "BadRequest", f"expected {res.api_version} {res.kind}, "
                       f"got {api_version} {kind}")


_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def _check_name(res: Resource, name: str) -> None:
    if not name:
        raise invalid(res, name, [("metadata.name", "Required value: name or generateName "
                                   "is required")])
    if len(name) > 253 or not _NAME.match(name):
        raise invalid(res, name, [("metadata.name", f"Invalid value: {name!r}: a lowercase "
                                   "RFC 1123 subdomain must consist of lower case alphanumeric "
                                   "characters, '-' or '.'")])


def _spec_of(res: Resource, obj: JSON) -> Any:
    if res.generation == "spec":
        return obj.get("spec")
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def _restore(res: Resource, old: JSON, new: JSON, subresource: str) -> JSON:
    """Keep what a client cannot change: server metadata, and status vs. the rest."""
    if subresource == "status":
        out = copy.deepcopy(old)
        if "status" in new:
            out["status"] = new["status"]
        else:
            out.pop("status", None)
        return out
    meta = new.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise ApiError(400, "BadRequest", "metadata must be an object")
    for key in ("name", "namespace", "uid", "creationTimestamp", "generation",
                "deletionTimestamp"):
        if key in old["metadata"]:
            meta[key] = old["metadata"][key]
        else:
            meta.pop(key, None)
    new["apiVersion"], new["kind"] = old["apiVersion"], old["kind"]
    if res.status:
        if "status" in old:
            new["status"] = old["status"]
        else:
            new.pop("status", None)
    return new


def _defaults(res: Resource, obj: JSON) -> None:
    if res is DEPLOYMENTS:
        spec = obj.setdefault("spec", {})
        if isinstance(spec, dict):
            spec.setdefault("replicas", 1)
    elif res.kind == "Secret":
        string_data = obj.pop("stringData", None) or {}
        data = obj.setdefault("data", {})
        for k, v in string_data.items():
            data[k] = base64.b64encode(str(v).encode()).decode()
        obj.setdefault("type", "Opaque")


def _validate(store: Store, res: Resource, obj: JSON, old: JSON | None) -> None:
    name = obj["metadata"].get("name", "")
    if res.kind == "CanaryRule" and store.crd is not None:
        normalized = store.crd.normalize(obj)
        obj.clear()
        obj.update(normalized)
        errors = store.crd.errors(obj)
        if errors:
            raise invalid(res, name, errors)
    if res is DEPLOYMENTS:
        errors = _deployment_errors(obj)
        if old is not None and (old.get("spec") or {}).get("selector") != \
                (obj.get("spec") or {}).get("selector"):
            errors.append(("spec.selector", "Invalid value: field is immutable"))
        if errors:
            raise invalid(res, name, errors)


def _deployment_errors(obj: JSON) -> list[tuple[str, str]]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [("spec", "Required value")]
    errors: list[tuple[str, str]] = []
    replicas = spec.get("replicas")
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        errors.append(("spec.replicas", f"Invalid value: {replicas!r}: must be >= 0"))
    selector = spec.get("selector")
    if not isinstance(selector, dict) or not (selector.get("matchLabels")
                                              or selector.get("matchExpressions")):
        errors.append(("spec.selector", "Required value"))
        selector = None
    raw_template = spec.get("template")
    template: JSON = raw_template if isinstance(raw_template, dict) else {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    if selector is not None and not selector_matches(selector, labels):
        errors.append(("spec.template.metadata.labels",
                       f"Invalid value: {labels!r}: `selector` does not match template `labels`"))
    containers = (template.get("spec") or {}).get("containers")
    if not containers:
        errors.append(("spec.template.spec.containers", "Required value"))
    for i, c in enumerate(containers or []):
        for field in ("name", "image"):
            if not isinstance(c, dict) or not c.get(field):
                errors.append((f"spec.template.spec.containers[{i}].{field}", "Required value"))
    return errors


# --------------------------------------------------------------------------- deployments


class DeploymentController:
    """Makes Deployment status follow spec ``delay`` seconds after each write."""

    def __init__(self, store: Store, delay: float) -> None:
        self.store = store
        self.delay = delay
        self._due: dict[tuple[str, str], float] = {}
        self._lock = threading.Condition()
        self._stop = False
        store.on_deployment_write = self.schedule
        self._thread = threading.Thread(target=self._run, name="deployments", daemon=True)
        self._thread.start()

    def schedule(self, ns: str, name: str) -> None:
        with self._lock:
            self._due[(ns, name)] = time.monotonic() + self.delay
            self._lock.notify()

    def stop(self) -> None:
        with self._lock:
            self._stop = True
            self._lock.notify()
        self._thread.join(5)

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._stop:
                    return
                now = time.monotonic()
                ready = [k for k, t in self._due.items() if t <= now]
                for k in ready:
                    del self._due[k]
                if not ready:
                    wait = min(self._due.values(), default=now + 1.0) - now
                    self._lock.wait(max(0.001, min(wait, 1.0)))
                    continue
            for ns, name in ready:
                with suppress(ApiError):
                    self.store.update(DEPLOYMENTS, ns, name, _follow_spec, subresource="status")


def _follow_spec(obj: JSON) -> JSON:
    spec = obj.get("spec") or {}
    replicas = int(spec.get("replicas", 1))
    annotations = obj["metadata"].get("annotations") or {}
    ready = 0 if annotations.get(UNAVAILABLE_ANNOTATION) == "true" else replicas
    status: JSON = {"observedGeneration": obj["metadata"].get("generation", 1)}
    for key, value in (("replicas", replicas), ("updatedReplicas", replicas),
                       ("readyReplicas", ready), ("availableReplicas", ready)):
        if value:
            status[key] = value
    if replicas - ready:
        status["unavailableReplicas"] = replicas - ready
    available = ready >= replicas
    old = {c.get("type"): c for c in (obj.get("status") or {}).get("conditions") or []}
    prev = old.get("Available", {})
    same = prev.get("status") == ("True" if available else "False")
    stamp = prev.get("lastTransitionTime") if same else now_rfc3339()
    status["conditions"] = [{
        "type": "Available", "status": "True" if available else "False",
        "reason": "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
        "message": "Deployment has minimum availability." if available
        else "Deployment does not have minimum availability.",
        "lastUpdateTime": stamp, "lastTransitionTime": stamp,
    }]
    obj["status"] = status
    return obj


def to_scale(obj: JSON) -> JSON:
    meta = obj["metadata"]
    selector = (obj.get("spec") or {}).get("selector") or {}
    return {
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                           "creationTimestamp") if k in meta},
        "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 1)},
        "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                   "selector": ",".join(f"{k}={v}" for k, v in
                                        sorted((selector.get("matchLabels") or {}).items()))},
    }


# --------------------------------------------------------------------------- faults & log


@dataclass
class Fault:
    id: int
    path_regex: str
    method: str = "*"
    status: int = 500
    count: int = 1  # -1: forever
    delay: float = 0.0
    timeout: bool = False
    after: bool = False
    message: str = ""

    def matches(self, method: str, target: str) -> bool:
        return (self.method in ("*", method)) and re.search(self.path_regex, target) is not None


REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
           405: "MethodNotAllowed", 409: "Conflict", 410: "Gone", 415: "UnsupportedMediaType",
           422: "Invalid", 429: "TooManyRequests", 500: "InternalError",
           503: "ServiceUnavailable", 504: "Timeout"}


class Emulator:
    """The server state: store, deployment controller, faults, request log, config."""

    def __init__(self, *, token: str | None, deployment_delay: float = 0.05,
                 bookmark_interval: float = 5.0, history_limit: int = 10_000,
                 crd_path: Path | None = DEFAULT_CRD) -> None:
        self.token = token
        self.store = Store(history_limit, CrdSchema.load(crd_path) if crd_path else None)
        self.controller = DeploymentController(self.store, deployment_delay)
        self.bookmark_interval = bookmark_interval
        self.lock = threading.Lock()
        self.faults: list[Fault] = []
        self.fault_seq = 0
        self.requests: list[JSON] = []
        self.request_seq = 0

    def take_fault(self, method: str, target: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.count != 0 and fault.matches(method, target):
                    if fault.count > 0:
                        fault.count -= 1
                    if fault.count == 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def log(self, entry: JSON) -> None:
        with self.lock:
            self.request_seq += 1
            entry["seq"] = self.request_seq
            self.requests.append(entry)
            del self.requests[:-20_000]

    def config(self) -> JSON:
        return {"deploymentDelay": self.controller.delay,
                "bookmarkInterval": self.bookmark_interval,
                "historyLimit": self.store.history_limit}


# --------------------------------------------------------------------------- HTTP


_ROUTE = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?$"
)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server: EmulatorServer

    def log_message(self, format: str, *args: Any) -> None:
        if os.environ.get("KUBE_EMULATOR_VERBOSE"):
            super().log_message(format, *args)

    @property
    def emu(self) -> Emulator:
        return self.server.emulator

    # -- plumbing --------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    _pending: JSON | None = None

    def _flush_log(self, code: int) -> None:
        """Log the request before its answer leaves, so a client that reads the request
        log right after its own call always finds it there."""
        if self._pending is not None:
            self._pending["status"] = code
            self.emu.log(self._pending)
            self._pending = None

    def _send(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self._flush_log(code)
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _dispatch(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        body = self._body()
        if url.path.startswith("/_emulator/"):
            try:
                self._side(method, url.path, query, body)
            except (ValueError, KeyError, TypeError) as exc:
                self._send(400, {"error": str(exc)})
            return
        entry: JSON = {"method": method, "path": url.path, "query": url.query,
                       "contentType": (self.headers.get("Content-Type") or "").split(";")[0],
                       "watch": query.get("watch") in ("true", "1", "True"), "fault": False}
        code = 500
        self._pending = entry
        try:
            code = self._serve(method, url.path, query, body, entry)
        except ApiError as exc:
            code = exc.code
            self._send(exc.code, exc.status())
        except (BrokenPipeError, ConnectionResetError):
            code = 499
        finally:
            self._flush_log(code)

    def _serve(self, method: str, path: str, query: dict[str, str], body: bytes,
               entry: JSON) -> int:
        if path in ("/healthz", "/readyz", "/livez"):
            self._send(200, "ok")
            return 200
        if path == "/version":
            self._send(200, {"major": "1", "minor": "30", "gitVersion": "v1.30.0-emulator"})
            return 200
        if self.emu.token and self.headers.get("Authorization") != f"Bearer {self.emu.token}":
            raise ApiError(401, "Unauthorized", "Unauthorized")
        target = path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        fault = self.emu.take_fault(method, target)
        if fault is not None:
            entry["fault"] = True
            if fault.delay:
                time.sleep(fault.delay)
            if fault.timeout:
                self.close_connection = True
                return 0
            if not fault.after:
                raise self._fault_error(fault)
        code, result = self._route(method, path, query, body)
        if fault is not None:
            raise self._fault_error(fault)
        if result is not None:
            self._send(code, result)
        return code

    @staticmethod
    def _fault_error(fault: Fault) -> ApiError:
        reason = REASONS.get(fault.status, "InternalError")
        err = ApiError(fault.status, reason, fault.message or f"injected fault: {reason}")
        return err

    # -- Kubernetes API --------------------------------------------------------------

    def _route(self, method: str, path: str, query: dict[str, str], body: bytes
               ) -> tuple[int, Any]:
        m = _ROUTE.match(path)
        if not m:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        group, version = ("", "v1") if m["core"] else (m["group"], m["version"])
        res = BY_PATH.get((group, version, m["plural"]))
        if res is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        ns, name, sub = m["ns"], m["name"], m["sub"] or ""
        if (sub and sub not in ("status", "scale")) or (sub == "status" and not res.status) or \
                (sub == "scale" and not res.scale) or (name and not ns):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        store, dry = self.emu.store, query.get("dryRun") == "All"
        if method == "GET":
            if name:
                obj = store.get(res, ns, name)
                return 200, to_scale(obj) if sub == "scale" else obj
            if query.get("watch") in ("true", "1", "True"):
                self._watch(res, ns, query)
                return 200, None
            items, rv = store.list(res, ns, query.get("labelSelector", ""),
                                   query.get("fieldSelector", ""))
            return 200, {"kind": f"{res.kind}List", "apiVersion": res.api_version,
                         "metadata": {"resourceVersion": str(rv)}, "items": items}
        if ns is None:
            raise ApiError(405, "MethodNotAllowed", f"{method} needs a namespace")
        if method == "POST" and not name:
            return 201, store.create(res, ns, _json(body), dry_run=dry)
        if not name:
            raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on collections")
        if method == "DELETE":
            opts = _json(body) if body else {}
            pre = opts.get("preconditions") or {}
            policy = query.get("propagationPolicy") or opts.get("propagationPolicy")
            old = store.delete(res, ns, name, precondition_rv=pre.get("resourceVersion"),
                               precondition_uid=pre.get("uid"), orphan=policy == "Orphan")
            return 200, status_object(200, "", "", {"name": name, "group": res.group,
                                                     "kind": res.plural,
                                                     "uid": old["metadata"]["uid"]})
        if method == "PUT":
            new_body = _json(body)
            return 200, self._write(res, ns, name, sub, lambda cur: new_body, dry=dry,
                                    require_rv=True)
        if method == "PATCH":
            return self._patch(res, ns, name, sub, query, body, dry=dry)
        raise ApiError(405, "MethodNotAllowed", f"{method} is not supported")

    def _write(self, res: Resource, ns: str, name: str, sub: str,
               change: Callable[[JSON], JSON], *, dry: bool, require_rv: bool = False) -> JSON:
        store = self.emu.store
        if sub == "scale":
            def on_object(cur: JSON) -> JSON:
                scale = change(to_scale(cur))
                sent = (scale.get("metadata") or {}).get("resourceVersion")
                replicas = (scale.get("spec") or {}).get("replicas")
                if not isinstance(replicas, int) or replicas < 0:
                    raise invalid(res, name, [("spec.replicas", f"Invalid value: {replicas!r}")])
                cur["spec"]["replicas"] = replicas
                cur["metadata"]["resourceVersion"] = sent or None
                return cur
            return to_scale(store.update(res, ns, name, on_object, dry_run=dry))
        return store.update(res, ns, name, change, subresource=sub, require_rv=require_rv,
                            dry_run=dry)

    def _patch(self, res: Resource, ns: str, name: str, sub: str, query: dict[str, str],
               body: bytes, *, dry: bool) -> tuple[int, JSON]:
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        if ctype == "application/apply-patch+yaml":
            return self._apply(res, ns, name, sub, query, body, dry=dry)
        if ctype == "application/merge-patch+json":
            patch = _json(body)
            return 200, self._write(res, ns, name, sub, lambda cur: merge_patch(cur, patch),
                                    dry=dry)
        if ctype == "application/json-patch+json":
            ops = json.loads(body or b"null")

            def apply_ops(cur: JSON) -> JSON:
                try:
                    result = json_patch(cur, ops)
                except ValueError as exc:
                    raise ApiError(422, "Invalid", f"the server rejected our request due to "
                                   f"an error in our request: {exc}") from exc
                return result if isinstance(result, dict) else {}
            return 200, self._write(res, ns, name, sub, apply_ops, dry=dry)
        if ctype == "application/strategic-merge-patch+json":
            if not res.strategic:
                raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an "
                               "unknown format - accepted media types include: "
                               "application/json-patch+json, application/merge-patch+json, "
                               "application/apply-patch+yaml")
            patch = _json(body)
            return 200, self._write(res, ns, name, sub,
                                    lambda cur: strategic_merge(cur, patch), dry=dry)
        raise ApiError(415, "UnsupportedMediaType", f"unsupported patch type {ctype!r}")

    def _apply(self, res: Resource, ns: str, name: str, sub: str, query: dict[str, str],
               body: bytes, *, dry: bool) -> tuple[int, JSON]:
        manager = query.get("fieldManager")
        if not manager:
            raise ApiError(400, "BadRequest", "PATCH with apply requires fieldManager")
        try:
            applied = json.loads(body)
        except ValueError:
            import yaml

            applied = yaml.safe_load(body)
        if not isinstance(applied, dict):
            raise ApiError(400, "BadRequest", "apply body must be an object")
        _check_type(res, applied)
        meta = applied.get("metadata") or {}
        if meta.get("name", name) != name:
            raise ApiError(400, "BadRequest", "the name of the object does not match the URL")
        store = self.emu.store
        key = (res.key, ns, name, f"{manager}/{sub}")
        try:
            store.get(res, ns, name)
        except ApiError as exc:
            if exc.code != 404 or sub:
                raise
            created = store.create(res, ns, applied, dry_run=dry)
            if not dry:
                store.applied[key] = _applied_fields(applied)
            return 201, created
        previous = store.applied.get(key, {})
        fields = _applied_fields(applied)

        def apply_change(cur: JSON) -> JSON:
            merged = merge_patch(_drop_missing(cur, previous, fields), applied)
            merged["metadata"]["resourceVersion"] = meta.get("resourceVersion")
            return merged
        result = self._write(res, ns, name, sub, apply_change, dry=dry)
        if not dry:
            store.applied[key] = fields
        return 200, result

    def _watch(self, res: Resource, ns: str | None, query: dict[str, str]) -> None:
        store = self.emu.store
        terms = parse_label_selector(query.get("labelSelector", ""))
        fterms = parse_field_selector(query.get("fieldSelector", ""))
        timeout = min(float(query.get("timeoutSeconds") or MAX_WATCH_SECONDS), MAX_WATCH_SECONDS)
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1", "True")
        deadline = time.monotonic() + timeout
        since = query.get("resourceVersion", "")

        def wanted(ev: WatchEvent) -> bool:
            meta = ev.obj["metadata"]
            return ev.resource == res.key and (ns is None or meta.get("namespace") == ns) and \
                labels_match(meta.get("labels") or {}, terms) and fields_match(ev.obj, fterms)

        if since not in ("", "0") and not since.isdigit():
            raise ApiError(400, "BadRequest", f"invalid resourceVersion {since!r}")
        with store.cond:
            epoch = store.watch_epoch
            if since in ("", "0"):
                cursor = store.rv
                items, _ = store.list(res, ns, query.get("labelSelector", ""),
                                      query.get("fieldSelector", ""))
                pending = [{"type": "ADDED", "object": o} for o in items]
            else:
                cursor, pending = int(since), []
        self._flush_log(200)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        next_bookmark = time.monotonic() + self.emu.bookmark_interval
        try:
            while True:
                for event in pending:
                    self._chunk(json.dumps(event).encode() + b"\n")
                now = time.monotonic()
                if now >= deadline:
                    break
                if bookmarks and now >= next_bookmark:
                    self._chunk(json.dumps({"type": "BOOKMARK", "object": {
                        "kind": res.kind, "apiVersion": res.api_version,
                        "metadata": {"resourceVersion": str(cursor)}}}).encode() + b"\n")
                    next_bookmark = now + self.emu.bookmark_interval
                with store.cond:
                    if cursor < store.compacted:  # events this watch still needed are gone
                        expired = status_object(410, "Expired", f"too old resource version: "
                                                f"{cursor} ({store.compacted})")
                        pending, deadline = [{"type": "ERROR", "object": expired}], 0.0
                        continue
                    events = store.events_after(cursor)
                    if not events and not store.closed and store.watch_epoch == epoch:
                        wake = min(deadline, next_bookmark if bookmarks else deadline)
                        store.cond.wait(max(0.0, wake - time.monotonic()))
                        events = store.events_after(cursor)
                    if store.closed or store.watch_epoch != epoch:
                        break
                    if events:
                        cursor = events[-1].rv
                pending = [{"type": e.type, "object": e.obj} for e in events if wanted(e)]
            self._chunk(b"")
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    # -- side API --------------------------------------------------------------------

    def _side(self, method: str, path: str, query: dict[str, str], body: bytes) -> None:
        emu, what = self.emu, path.removeprefix("/_emulator/")
        if what == "health":
            self._send(200, {"ok": True})
        elif what == "faults" and method == "POST":
            spec = _json(body)
            with emu.lock:
                emu.fault_seq += 1
                fault = Fault(id=emu.fault_seq, path_regex=spec["path_regex"],
                              method=spec.get("method") or "*",
                              status=int(spec.get("status", 500)),
                              count=int(spec.get("count", 1)), delay=float(spec.get("delay", 0)),
                              timeout=bool(spec.get("timeout")), after=bool(spec.get("after")),
                              message=spec.get("message", ""))
                re.compile(fault.path_regex)
                emu.faults.append(fault)
            self._send(201, fault.__dict__)
        elif what == "faults":
            with emu.lock:
                if method == "DELETE":
                    emu.faults.clear()
                out = [f.__dict__ for f in emu.faults]
            self._send(200, out)
        elif what == "requests":
            since = int(query.get("since", 0))
            with emu.lock:
                if method == "DELETE":
                    emu.requests.clear()
                out = [r for r in emu.requests if r["seq"] > since]
            self._send(200, {"last": emu.request_seq, "requests": out})
        elif what == "reset" and method == "POST":
            emu.store.reset()
            with emu.lock:
                emu.faults.clear()
                emu.requests.clear()
            self._send(200, {"ok": True})
        elif what == "compact" and method == "POST":
            emu.store.compact()
            self._send(200, {"compacted": emu.store.compacted})
        elif what == "disconnect-watches" and method == "POST":
            with emu.store.cond:
                emu.store.watch_epoch += 1
                emu.store.cond.notify_all()
            self._send(200, {"ok": True})
        elif what == "config":
            if method == "POST":
                spec = _json(body)
                if "deploymentDelay" in spec:
                    emu.controller.delay = float(spec["deploymentDelay"])
                if "bookmarkInterval" in spec:
                    emu.bookmark_interval = float(spec["bookmarkInterval"])
                if "historyLimit" in spec:
                    emu.store.history_limit = int(spec["historyLimit"])
            self._send(200, emu.config())
        else:
            self._send(404, {"error": f"unknown emulator endpoint {method} {path}"})


def _json(body: bytes) -> JSON:
    try:
        value = json.loads(body or b"null")
    except ValueError as exc:
        raise ApiError(400, "BadRequest", f"invalid JSON body: {exc}") from exc
    if not isinstance(value, dict):
        raise ApiError(400, "BadRequest", "the request body must be a JSON object")
    return value


def _applied_fields(applied: JSON) -> JSON:
    fields = copy.deepcopy(applied)
    meta = fields.get("metadata") or {}
    for key in ("resourceVersion", "name", "namespace", "uid"):
        meta.pop(key, None)
    return fields


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # many clients connect at once (pools, watches, benchmarks)

    def __init__(self, emulator: Emulator, port: int = 0) -> None:
        self.emulator = emulator
        super().__init__(("127.0.0.1", port), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        with self.emulator.store.cond:
            self.emulator.store.closed = True
            self.emulator.store.cond.notify_all()
        self.shutdown()
        self.server_close()
        self.emulator.controller.stop()


def write_kubeconfig(path: Path, url: str, token: str | None, namespace: str = "default"
                     ) -> None:
    user: JSON = {"token": token} if token else {}
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
        "clusters": [{"name": "emulator", "cluster": {"server": url}}],
        "users": [{"name": "emulator", "user": user}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "emulator",
                                                      "namespace": namespace}}],
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(config, indent=2))
    tmp.replace(path)


# --------------------------------------------------------------------------- launching


class EmulatorHandle:
    """A running emulator: its URL, kubeconfig, and the side API for tests."""

    def __init__(self, url: str, kubeconfig: Path, token: str | None) -> None:
        self.url, self.kubeconfig, self.token = url, str(kubeconfig), token

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def add_fault(self, path_regex: str, *, status: int = 500, method: str = "*",
                  count: int = 1, delay: float = 0.0, timeout: bool = False,
                  after: bool = False, message: str = "") -> JSON:
        """Fail the next ``count`` matching requests (``-1``: until cleared)."""
        return dict(self._call("POST", "/_emulator/faults", {
            "path_regex": path_regex, "method": method, "status": status, "count": count,
            "delay": delay, "timeout": timeout, "after": after, "message": message}))

    def faults(self) -> list[JSON]:
        return list(self._call("GET", "/_emulator/faults"))

    def clear_faults(self) -> None:
        self._call("DELETE", "/_emulator/faults")

    def mark(self) -> int:
        """The sequence number of the last logged request (to pass to ``requests``)."""
        return int(self._call("GET", "/_emulator/requests?since=999999999999")["last"])

    def requests(self, since: int = 0, *, writes: bool = False) -> list[JSON]:
        out = list(self._call("GET", f"/_emulator/requests?since={since}")["requests"])
        if writes:
            out = [r for r in out if r["method"] in ("POST", "PUT", "PATCH", "DELETE")]
        return out

    def reset(self) -> None:
        self._call("POST", "/_emulator/reset", {})

    def compact(self) -> None:
        self._call("POST", "/_emulator/compact", {})

    def disconnect_watches(self) -> None:
        self._call("POST", "/_emulator/disconnect-watches", {})

    def configure(self, **settings: Any) -> JSON:
        """``deploymentDelay``, ``bookmarkInterval``, ``historyLimit``."""
        return dict(self._call("POST", "/_emulator/config", settings))

    def wait_healthy(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._call("GET", "/_emulator/health")
                return
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)


@contextmanager
def running_emulator(directory: str | Path | None = None, *, deployment_delay: float = 0.05,
                     bookmark_interval: float = 5.0, history_limit: int = 10_000,
                     token: bool = True) -> Iterator[EmulatorHandle]:
    """Start the emulator as a subprocess on a free port; yield its handle; stop it."""
    with tempfile.TemporaryDirectory(prefix="kube-emulator-") as tmp:
        base = Path(directory) if directory is not None else Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        kubeconfig = base / "kubeconfig"
        kubeconfig.unlink(missing_ok=True)
        log = (base / "kube-emulator.log").open("wb")
        args = [sys.executable, str(Path(__file__).resolve()), "--port", "0",
                "--kubeconfig", str(kubeconfig), "--deployment-delay", str(deployment_delay),
                "--bookmark-interval", str(bookmark_interval),
                "--history-limit", str(history_limit)]
        if not token:
            args.append("--no-token")
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 15
            while not kubeconfig.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"kube emulator did not start; see {base}/kube-emulator.log")
                time.sleep(0.02)
            config = json.loads(kubeconfig.read_text())
            url = config["clusters"][0]["cluster"]["server"]
            handle = EmulatorHandle(url, kubeconfig, config["users"][0]["user"].get("token"))
            handle.wait_healthy()
            yield handle
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            log.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Kubernetes API emulator for tests")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--kubeconfig", type=Path, help="write a kubeconfig for the server here")
    p.add_argument("--deployment-delay", type=float, default=0.05)
    p.add_argument("--bookmark-interval", type=float, default=5.0)
    p.add_argument("--history-limit", type=int, default=10_000)
    p.add_argument("--crd", type=Path, default=DEFAULT_CRD)
    p.add_argument("--no-token", action="store_true", help="accept unauthenticated requests")
    args = p.parse_args(argv)
    token = None if args.no_token else secrets.token_hex(16)
    emulator = Emulator(token=token, deployment_delay=args.deployment_delay,
                        bookmark_interval=args.bookmark_interval,
                        history_limit=args.history_limit, crd_path=args.crd)
    server = EmulatorServer(emulator, args.port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    if args.kubeconfig:
        write_kubeconfig(args.kubeconfig, server.url, token)
    print(f"listening on {server.url}", flush=True)
    stop.wait()
    server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
