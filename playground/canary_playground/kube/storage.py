"""Objects, the global resourceVersion, the watch history, and every write rule.

- Every write bumps one global resourceVersion; a write carrying a stale
  ``metadata.resourceVersion`` fails with 409. A PUT without one is refused (422) for
  custom resources and allowed for built-ins. A write that changes nothing is a no-op: no
  new resourceVersion and no watch event.
- ``metadata.generation`` increments on spec changes (custom resources: any change outside
  metadata and status) and when graceful deletion starts. Writes to the main resource keep
  ``status``; writes to ``/status`` change only ``status``.
- Deletion: an object with finalizers (or deleted with ``propagationPolicy`` Foreground /
  Orphan, which add ``foregroundDeletion`` / ``orphan``) gets ``deletionTimestamp`` and
  ``deletionGracePeriodSeconds: 0`` and stays until its finalizers are removed; then it is
  deleted (MODIFIED, then DELETED). While deleting, updates may remove finalizers, never
  add them (422).
- Indexes by uid and by owner uid, for the garbage collector and the workload
  controllers. Listeners hear of every committed change after the lock is released.
- The history keeps at most ``history_limit`` events (a quarter more before trimming);
  a watch resuming from a trimmed version gets 410.
"""

from __future__ import annotations

import bisect
import copy
import secrets
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import defaults, validation
from .errors import (
    JSON,
    ApiError,
    FieldError,
    already_exists,
    bad_request,
    conflict,
    forbidden_field,
    invalid,
    invalid_value,
    not_found,
    now_rfc3339,
)
from .resources import Registry, Resource
from .schema import CrdSchema
from .selectors import fields_match, labels_match, parse_field_selector, parse_label_selector

Key = tuple[str, str, str]  # (storage key, namespace, name)
Admit = Callable[[JSON, JSON | None], None]
GC_FINALIZERS = ("foregroundDeletion", "orphan")


@dataclass
class WatchEvent:
    rv: int
    storage: str
    type: str
    obj: JSON


@dataclass(frozen=True)
class Change:
    """A committed write, as listeners (controllers, the garbage collector) see it."""

    res: Resource
    type: str  # ADDED | MODIFIED | DELETED
    obj: JSON
    old: JSON | None


@dataclass
class WriteOptions:
    dry_run: bool = False
    admit: Admit | None = None
    field_validation: str = "Warn"  # Strict | Warn | Ignore (custom resources)
    warnings: list[str] | None = None


def _meta(obj: JSON) -> JSON:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        raise bad_request("metadata must be an object")
    return meta


def owner_uids(obj: JSON) -> set[str]:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return {str(r.get("uid")) for r in refs if isinstance(r, dict) and r.get("uid")}


class Store:
    def __init__(self, registry: Registry, history_limit: int = 10_000) -> None:
        self.registry = registry
        self.cond = threading.Condition(threading.RLock())
        self.rv = 0
        self.objects: dict[str, dict[tuple[str, str], JSON]] = {}
        self.uids: dict[str, Key] = {}
        self.owned: dict[str, set[Key]] = {}
        self.history: list[WatchEvent] = []
        self.history_rvs: list[int] = []
        self.compacted = 0
        self.history_limit = history_limit
        self.watch_epoch = 0
        self.closed = False
        self.applied: dict[tuple[str, str, str, str], JSON] = {}  # last applied per manager
        self.schemas: dict[str, CrdSchema] = {}
        for crd in registry.crds:
            schema = CrdSchema.from_crd(crd)
            if schema is not None:
                res = registry.get(crd["spec"]["group"], crd["spec"]["names"]["plural"])
                self.schemas[res.key] = schema
        self.listeners: list[Callable[[Change], None]] = []
        self._baseline: dict[str, dict[tuple[str, str], JSON]] = {}

    # -- internals (call with cond held) ---------------------------------------------

    def _record(self, res: Resource, kind: str, obj: JSON, old: JSON | None,
                changes: list[Change]) -> None:
        self.history.append(WatchEvent(self.rv, res.key, kind, obj))
        self.history_rvs.append(self.rv)
        if len(self.history) > self.history_limit * 5 // 4:
            drop = len(self.history) - self.history_limit
            self.compacted = self.history_rvs[drop - 1]
            del self.history[:drop]
            del self.history_rvs[:drop]
        changes.append(Change(res, kind, obj, old))
        self.cond.notify_all()

    def _index(self, key: Key, obj: JSON | None, old: JSON | None) -> None:
        for uid in owner_uids(old or {}) - owner_uids(obj or {}):
            self.owned.get(uid, set()).discard(key)
        for uid in owner_uids(obj or {}):
            self.owned.setdefault(uid, set()).add(key)
        if obj is not None:
            self.uids[obj["metadata"]["uid"]] = key
        elif old is not None:
            self.uids.pop(old["metadata"]["uid"], None)

    def _put(self, res: Resource, obj: JSON, old: JSON | None, changes: list[Change]) -> None:
        meta = obj["metadata"]
        self.rv += 1
        meta["resourceVersion"] = str(self.rv)
        key = (res.key, meta.get("namespace", ""), meta["name"])
        self.objects.setdefault(res.key, {})[key[1:]] = obj
        self._index(key, obj, old)
        self._record(res, "MODIFIED" if old is not None else "ADDED", obj, old, changes)

    def _remove(self, res: Resource, obj: JSON, changes: list[Change]) -> None:
        meta = obj["metadata"]
        key = (res.key, meta.get("namespace", ""), meta["name"])
        self.objects.get(res.key, {}).pop(key[1:], None)
        self._index(key, None, obj)
        for k in [k for k in self.applied if k[:3] == key]:
            del self.applied[k]
        self.rv += 1
        gone = copy.deepcopy(obj)
        gone["metadata"]["resourceVersion"] = str(self.rv)
        self._record(res, "DELETED", gone, obj, changes)

    def _notify(self, changes: list[Change]) -> None:
        for change in changes:
            for listener in self.listeners:
                listener(change)

    def events_after(self, rv: int) -> list[WatchEvent]:
        return self.history[bisect.bisect_right(self.history_rvs, rv):]

    # -- maintenance -----------------------------------------------------------------

    def compact(self) -> None:
        with self.cond:
            self.compacted = self.rv
            self.history.clear()
            self.history_rvs.clear()

    def mark_baseline(self) -> None:
        """What :meth:`reset` restores (the CRDs, namespaces and RBAC loaded at start)."""
        with self.cond:
            self._baseline = {k: dict(v) for k, v in self.objects.items()}

    def reset(self) -> None:
        with self.cond:
            self.objects = {k: dict(v) for k, v in self._baseline.items()}
            self.uids.clear()
            self.owned.clear()
            for skey, items in self.objects.items():
                for (ns, name), obj in items.items():
                    self._index((skey, ns, name), obj, None)
            self.applied.clear()
            self.compacted = self.rv
            self.history.clear()
            self.history_rvs.clear()
            self.watch_epoch += 1
            self.cond.notify_all()

    # -- reads -----------------------------------------------------------------------

    def find(self, res: Resource, ns: str, name: str) -> JSON | None:
        with self.cond:
            return self.objects.get(res.key, {}).get((ns, name))

    def get(self, res: Resource, ns: str, name: str) -> JSON:
        obj = self.find(res, ns, name)
        if obj is None:
            raise not_found(res.plural, res.group, name)
        return obj

    def items(self, res: Resource, ns: str | None = None) -> list[JSON]:
        with self.cond:
            return [o for (n, _), o in sorted(self.objects.get(res.key, {}).items())
                    if ns is None or n == ns]

    def select(self, res: Resource, ns: str | None, labels: str = "", fields: str = ""
             ) -> tuple[list[JSON], int]:
        terms, fterms = parse_label_selector(labels), parse_field_selector(fields)
        with self.cond:
            items = [o for o in self.items(res, ns)
                     if labels_match(o["metadata"].get("labels") or {}, terms)
                     and fields_match(o, fterms)]
            return items, self.rv

    def by_uid(self, uid: str) -> tuple[Resource, JSON] | None:
        with self.cond:
            key = self.uids.get(uid)
            if key is None:
                return None
            obj = self.objects.get(key[0], {}).get(key[1:])
            return (self.registry.by_key(key[0]), obj) if obj is not None else None

    def dependents(self, uid: str) -> list[tuple[Resource, JSON]]:
        with self.cond:
            out = []
            for skey, ns, name in sorted(self.owned.get(uid, ())):
                obj = self.objects.get(skey, {}).get((ns, name))
                if obj is not None:
                    out.append((self.registry.by_key(skey), obj))
            return out

    # -- writes ----------------------------------------------------------------------

    def create(self, res: Resource, ns: str, body: JSON, opts: WriteOptions | None = None
               ) -> JSON:
        opts = opts or WriteOptions()
        obj = self._prepare_create(res, ns, body, opts)
        changes: list[Change] = []
        with self.cond:
            name = obj["metadata"]["name"]
            if self.find(res, ns, name) is not None:
                raise already_exists(res.plural, res.group, name)
            if opts.admit is not None:
                opts.admit(obj, None)
            if opts.dry_run:
                return obj
            self._put(res, obj, None, changes)
        self._notify(changes)
        return obj

    def _prepare_create(self, res: Resource, ns: str, body: JSON, opts: WriteOptions) -> JSON:
        obj = copy.deepcopy(body)
        obj.setdefault("metadata", {})
        meta = _meta(obj)
        check_type(res, obj)
        if meta.get("namespace") not in (None, "", ns) and res.namespaced:
            raise bad_request("the namespace of the provided object does not match the "
                              "namespace sent on the request")
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + random_suffix()
        for key in ("resourceVersion", "uid", "creationTimestamp", "generation",
                    "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields"):
            meta.pop(key, None)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now_rfc3339())
        if res.namespaced:
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        if res.generation:
            meta["generation"] = 1
        if res.status:
            obj.pop("status", None)
        start = defaults.initial_status(res.kind)
        if start is not None:
            obj["status"] = start
        self._default_and_validate(res, obj, None, opts)
        return obj

    def _default_and_validate(self, res: Resource, obj: JSON, old: JSON | None,
                              opts: WriteOptions) -> None:
        defaults.apply(res.kind, obj)
        errors: list[FieldError] = []
        schema = self.schemas.get(res.key)
        if schema is not None:
            pruned: list[str] = []
            normalized = schema.normalize(obj, pruned)
            obj.clear()
            obj.update(normalized)
            report_unknown_fields(pruned, opts)
            errors += schema.errors(obj)
        errors = validation.validate(res, obj, old) + errors
        if errors:
            raise invalid(res.kind, res.group, obj["metadata"].get("name", ""), errors)

    def update(self, res: Resource, ns: str, name: str,
               change: Callable[[JSON], JSON], *, subresource: str = "",
               require_rv: bool = False, opts: WriteOptions | None = None) -> JSON:
        """Apply ``change`` to the current object atomically, with all the write rules."""
        opts = opts or WriteOptions()
        changes: list[Change] = []
        with self.cond:
            old = self.get(res, ns, name)
            new = change(copy.deepcopy(old))
            if not isinstance(new, dict):
                raise bad_request("the patched object is not an object")
            meta = new.get("metadata") if isinstance(new.get("metadata"), dict) else {}
            sent_rv = (meta or {}).get("resourceVersion")
            if require_rv and not sent_rv and not res.unconditional_update:
                raise invalid(res.kind, res.group, name, [invalid_value(
                    "metadata.resourceVersion", 0, "must be specified for an update")])
            if sent_rv and str(sent_rv) != old["metadata"]["resourceVersion"]:
                raise conflict(res.plural, res.group, name)
            if (meta or {}).get("name", name) != name:
                raise bad_request("the name of the object does not match the name on the URL")
            new = restore(res, old, new, subresource)
            self._default_and_validate(res, new, old, opts)
            check_finalizers(res, new, old)
            if res.generation and spec_of(res, new) != spec_of(res, old):
                new["metadata"]["generation"] = int(old["metadata"].get("generation") or 1) + 1
            new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            if new == old or opts.dry_run:
                return new
            if opts.admit is not None:
                opts.admit(new, old)
            self._put(res, new, old, changes)
            if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
                self._remove(res, new, changes)
        self._notify(changes)
        return new

    def delete(self, res: Resource, ns: str, name: str, *, preconditions: JSON | None = None,
               propagation: str | None = None, dry_run: bool = False) -> tuple[JSON, bool]:
        """Delete now, or start deleting (finalizers): ``(object, deleted now)``."""
        changes: list[Change] = []
        with self.cond:
            old = self.get(res, ns, name)
            check_preconditions(res, old, preconditions or {})
            finalizers = deletion_finalizers(old, propagation)
            if finalizers:
                new = copy.deepcopy(old)
                meta = new["metadata"]
                if not meta.get("deletionTimestamp"):
                    meta["deletionTimestamp"] = now_rfc3339()
                    meta["deletionGracePeriodSeconds"] = 0
                    if meta.get("generation"):
                        meta["generation"] = int(meta["generation"]) + 1
                meta["finalizers"] = finalizers
                if dry_run or new == old:
                    return (new if dry_run else old), False
                self._put(res, new, old, changes)
                result, deleted = new, False
            else:
                if dry_run:
                    return old, True
                self._remove(res, old, changes)
                result, deleted = old, True
        self._notify(changes)
        return result, deleted


def random_suffix(n: int = 5) -> str:
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return "".join(secrets.choice(alphabet) for _ in range(n))


def check_type(res: Resource, obj: JSON) -> None:
    api_version = obj.setdefault("apiVersion", res.api_version)
    kind = obj.setdefault("kind", res.kind)
    if api_version != res.api_version or kind != res.kind:
        raise bad_request(f"expected {res.api_version} {res.kind}, got {api_version} {kind}")


def report_unknown_fields(pruned: list[str], opts: WriteOptions) -> None:
    if not pruned:
        return
    if opts.field_validation == "Strict":
        causes = [{"reason": "FieldValueInvalid", "message": f'unknown field "{p}"',
                   "field": p} for p in pruned]
        raise ApiError(400, "BadRequest", "strict decoding error: " + ", ".join(
            f'unknown field "{p}"' for p in pruned), causes=causes)
    if opts.field_validation != "Ignore" and opts.warnings is not None:
        opts.warnings.extend(f'unknown field "{p}"' for p in pruned)


def check_preconditions(res: Resource, obj: JSON, pre: JSON) -> None:
    meta = obj["metadata"]
    for key, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
        want = pre.get(key)
        if want and str(want) != str(meta.get(key)):
            raise conflict(res.plural, res.group, meta["name"],
                           f"Precondition failed: {label} in precondition: {want}, {label} in "
                           f"object meta: {meta.get(key)}")


def deletion_finalizers(obj: JSON, propagation: str | None) -> list[str]:
    """The finalizers an object keeps (or gets) when deleted with ``propagation``."""
    finalizers = list(obj["metadata"].get("finalizers") or [])
    if propagation in ("Background", "Orphan", "Foreground"):
        finalizers = [f for f in finalizers if f not in GC_FINALIZERS]
        if propagation == "Orphan":
            finalizers.append("orphan")
        elif propagation == "Foreground":
            finalizers.append("foregroundDeletion")
    return finalizers


def check_finalizers(res: Resource, new: JSON, old: JSON) -> None:
    if not old["metadata"].get("deletionTimestamp"):
        return
    added = [f for f in new["metadata"].get("finalizers") or []
             if f not in (old["metadata"].get("finalizers") or [])]
    if added:
        shown = ", ".join(f'"{f}"' for f in added)
        raise invalid(res.kind, res.group, new["metadata"]["name"], [forbidden_field(
            "metadata.finalizers", "no new finalizers can be added if the object is being "
            f"deleted, found new finalizers []string{{{shown}}}")])


def spec_of(res: Resource, obj: JSON) -> Any:
    if res.generation == "spec":
        return obj.get("spec")
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


SERVER_FIELDS = ("name", "namespace", "uid", "creationTimestamp", "generation",
                 "deletionTimestamp", "deletionGracePeriodSeconds")


def _restore_status(res: Resource, old: JSON, new: JSON) -> JSON:
    out = copy.deepcopy(old)
    if "status" in new:
        out["status"] = new["status"]
    else:
        out.pop("status", None)
    if res.kind == "Deployment":  # its status strategy keeps annotation changes
        annotations = (new.get("metadata") or {}).get("annotations")
        if annotations:
            out["metadata"]["annotations"] = annotations
        else:
            out["metadata"].pop("annotations", None)
    return out


def restore(res: Resource, old: JSON, new: JSON, subresource: str) -> JSON:
    """Keep what a client cannot change: server metadata, and status vs. the rest
    (``subresource="*"``: the emulator's own controllers, which may write both)."""
    if subresource == "status":
        return _restore_status(res, old, new)
    meta = new.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise bad_request("metadata must be an object")
    for key in SERVER_FIELDS:
        if key in old["metadata"]:
            meta[key] = old["metadata"][key]
        elif subresource != "*":
            meta.pop(key, None)
    if subresource == "*":
        return new
    new["apiVersion"], new["kind"] = old["apiVersion"], old["kind"]
    if res.status:
        if "status" in old:
            new["status"] = old["status"]
        else:
            new.pop("status", None)
    return new
