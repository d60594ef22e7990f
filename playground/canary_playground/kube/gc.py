"""The garbage collector: ownerReferences, cascading deletion, the GC finalizers.

As kube-controller-manager's garbage collector does:

- an object none of whose owners exists any more (no object with that uid, or one of
  another kind or namespace) is deleted, in the background by default, in the foreground
  when a foreground-deleting owner is waiting for it and it has dependents of its own;
  an object with some owners left only loses the references to the gone ones;
- an owner deleted with ``propagationPolicy=Foreground`` carries the ``foregroundDeletion``
  finalizer: its dependents are deleted, and the finalizer is removed once no dependent
  with ``blockOwnerDeletion: true`` remains;
- an owner deleted with ``propagationPolicy=Orphan`` carries the ``orphan`` finalizer: the
  references to it are removed from its dependents, then the finalizer;
- an ownerReference whose kind the emulator does not serve is left alone (the real
  collector cannot map it either and retries).
"""

from __future__ import annotations

import copy

from .errors import JSON
from .objects import deleting, meta
from .resources import Registry, Resource
from .runtime import Key, WorkQueue
from .storage import Change, Store, owner_uids

FOREGROUND, ORPHAN = "foregroundDeletion", "orphan"


def _key(res: Resource, obj: JSON) -> Key:
    m = meta(obj)
    return ("gc", res.key, m.get("namespace", ""), m["name"])


class GarbageCollector:
    def __init__(self, store: Store, registry: Registry, queue: WorkQueue) -> None:
        self.store, self.registry, self.queue = store, registry, queue
        queue.register("gc", self.sync, priority=3)
        store.listeners.append(self.on_change)

    def on_change(self, change: Change) -> None:
        obj, old = change.obj, change.old
        if change.type == "DELETED" or (deleting(obj) and _gc_finalizers(obj)):
            for res, dep in self.store.dependents(meta(obj)["uid"]):
                self.queue.add(_key(res, dep))
        if old is not None and (change.type == "DELETED"
                                or owner_uids(old) - owner_uids(obj)):
            for uid in owner_uids(old):  # a foreground-deleting owner may be free now
                found = self.store.by_uid(uid)
                if found is not None and deleting(found[1]):
                    self.queue.add(_key(*found))
        if change.type == "DELETED":
            return
        if deleting(obj) and _gc_finalizers(obj):
            self.queue.add(_key(change.res, obj))
        if owner_uids(obj) and (old is None or owner_uids(obj) != owner_uids(old)
                                or meta(obj).get("ownerReferences")
                                != meta(old).get("ownerReferences")):
            self.queue.add(_key(change.res, obj))

    def sync(self, key: Key) -> None:
        _, skey, ns, name = key
        res = self.registry.by_key(str(skey))
        obj = self.store.find(res, str(ns), str(name))
        if obj is None:
            return
        if deleting(obj) and FOREGROUND in (meta(obj).get("finalizers") or []):
            self._foreground(res, obj)
        elif deleting(obj) and ORPHAN in (meta(obj).get("finalizers") or []):
            self._orphan(res, obj)
        if owner_uids(obj):
            self._check_owners(res, obj)

    # -- owners being deleted ----------------------------------------------------------

    def _foreground(self, res: Resource, owner: JSON) -> None:
        uid = meta(owner)["uid"]
        blocking = False
        for dres, dep in self.store.dependents(uid):
            ref: JSON = next((r for r in meta(dep).get("ownerReferences") or []
                              if r.get("uid") == uid), {})
            if ref.get("blockOwnerDeletion"):
                blocking = True
            if not deleting(dep):
                self.queue.add(_key(dres, dep))
        if not blocking:
            self._drop_finalizer(res, owner, FOREGROUND)

    def _orphan(self, res: Resource, owner: JSON) -> None:
        uid = meta(owner)["uid"]
        for dres, dep in self.store.dependents(uid):
            m = meta(dep)

            def unlink(cur: JSON) -> JSON:
                refs = [r for r in cur["metadata"].get("ownerReferences") or []
                        if r.get("uid") != uid]
                if refs:
                    cur["metadata"]["ownerReferences"] = refs
                else:
                    cur["metadata"].pop("ownerReferences", None)
                return cur

            self.store.update(dres, m.get("namespace", ""), m["name"], unlink, subresource="*")
        self._drop_finalizer(res, owner, ORPHAN)

    def _drop_finalizer(self, res: Resource, obj: JSON, finalizer: str) -> None:
        m = meta(obj)

        def drop(cur: JSON) -> JSON:
            cur["metadata"]["finalizers"] = [f for f in cur["metadata"].get("finalizers") or []
                                             if f != finalizer]
            if not cur["metadata"]["finalizers"]:
                cur["metadata"].pop("finalizers")
            return cur

        self.store.update(res, m.get("namespace", ""), m["name"], drop, subresource="*")

    # -- dependents --------------------------------------------------------------------

    def _owner_state(self, obj: JSON, ref: JSON) -> str:
        """``solid``, ``dangling``, ``waiting`` (foreground-deleting) or ``unknown``."""
        owner_res = self.registry.by_kind(str(ref.get("apiVersion", "")), str(ref.get("kind")))
        if owner_res is None:
            return "unknown"
        found = self.store.by_uid(str(ref.get("uid")))
        if found is None:
            return "dangling"
        fres, owner = found
        same_ns = not fres.namespaced or meta(owner).get("namespace") == meta(obj).get(
            "namespace")
        if fres.storage_key != owner_res.storage_key or not same_ns:
            return "dangling"
        if deleting(owner) and FOREGROUND in (meta(owner).get("finalizers") or []):
            return "waiting"
        return "solid"

    def _check_owners(self, res: Resource, obj: JSON) -> None:
        if deleting(obj):
            return
        refs = meta(obj).get("ownerReferences") or []
        states = {str(r.get("uid")): self._owner_state(obj, r) for r in refs}
        values = set(states.values())
        if "solid" in values or "unknown" in values:
            gone = {u for u, s in states.items() if s in ("dangling", "waiting")}
            if gone and "solid" in values:
                self._remove_refs(res, obj, gone)
            return
        m = meta(obj)
        has_dependents = bool(self.store.dependents(m["uid"]))
        if ("waiting" in values and has_dependents) or FOREGROUND in (m.get("finalizers")
                                                                       or []):
            policy = "Foreground"
        elif ORPHAN in (m.get("finalizers") or []):
            policy = "Orphan"
        else:
            policy = "Background"
        self.store.delete(res, m.get("namespace", ""), m["name"], propagation=policy,
                          preconditions={"uid": m["uid"]})

    def _remove_refs(self, res: Resource, obj: JSON, uids: set[str]) -> None:
        m = meta(obj)

        def unlink(cur: JSON) -> JSON:
            cur = copy.deepcopy(cur)
            cur["metadata"]["ownerReferences"] = [
                r for r in cur["metadata"].get("ownerReferences") or []
                if r.get("uid") not in uids]
            return cur

        self.store.update(res, m.get("namespace", ""), m["name"], unlink, subresource="*")


def _gc_finalizers(obj: JSON) -> bool:
    return any(f in (FOREGROUND, ORPHAN) for f in meta(obj).get("finalizers") or [])
