"""The deployment controller of kube-controller-manager, for one process.

It follows ``pkg/controller/deployment`` (1.28-1.31): a Deployment owns ReplicaSets named
``<deployment>-<pod-template-hash>``; the one whose template equals the Deployment's is the
new ReplicaSet, the others are old. Rolling updates create the new ReplicaSet at
``replicas + maxSurge - current pods`` and scale old ones down only while at least
``replicas - maxUnavailable`` pods stay available (unhealthy old pods go first); Recreate
scales old ReplicaSets to zero, waits for their pods to go, then scales the new one up. A
resize mid-rollout is split proportionally between active ReplicaSets. Status is computed
from the ReplicaSets' status (``calculateStatus``) with the ``Available`` and
``Progressing`` conditions (NewReplicaSetCreated, FoundNewReplicaSet, ReplicaSetUpdated,
NewReplicaSetAvailable, ProgressDeadlineExceeded, DeploymentPaused/Resumed), the
``deployment.kubernetes.io/revision`` annotations and ``revisionHistoryLimit`` cleanup.

Not modelled: adopting orphaned ReplicaSets by selector, rollback-to annotations,
ReplicaFailure conditions.
"""

from __future__ import annotations

import copy
import time
from typing import Any

from . import rollout as ro
from .errors import JSON, ApiError, parse_rfc3339
from .objects import (
    as_int,
    controller_ref,
    created,
    deleting,
    drop_zero,
    get_condition,
    meta,
    new_condition,
    new_controller_ref,
    owned_by,
    remove_condition,
    set_condition,
)
from .recorder import Recorder
from .resources import Registry
from .runtime import Key, Retry, WorkQueue
from .storage import Change, Store, WriteOptions

PROGRESSING, AVAILABLE = "Progressing", "Available"
NEW_RS_CREATED, FOUND_NEW_RS = "NewReplicaSetCreated", "FoundNewReplicaSet"
RS_UPDATED, NEW_RS_AVAILABLE = "ReplicaSetUpdated", "NewReplicaSetAvailable"
TIMED_OUT, PAUSED, RESUMED = "ProgressDeadlineExceeded", "DeploymentPaused", "DeploymentResumed"
COUNTS = ("observedGeneration", "replicas", "updatedReplicas", "readyReplicas",
          "availableReplicas", "unavailableReplicas")


def _spec(d: JSON) -> JSON:
    return d.get("spec") or {}


def _status(obj: JSON) -> JSON:
    return obj.get("status") or {}


def _sum(rss: list[JSON], key: str) -> int:
    return sum(ro.status_count(rs, key) for rs in rss)


def _spec_sum(rss: list[JSON]) -> int:
    return sum(ro.replicas(rs) for rs in rss)


def _active(rss: list[JSON]) -> list[JSON]:
    return [rs for rs in rss if ro.replicas(rs) > 0]


def has_deadline(d: JSON) -> bool:
    deadline = _spec(d).get("progressDeadlineSeconds")
    return deadline is not None and deadline != 2**31 - 1


def deployment_complete(d: JSON, status: JSON) -> bool:
    want = ro.replicas(d)
    return (as_int(status.get("updatedReplicas")) == want
            and as_int(status.get("replicas")) == want
            and as_int(status.get("availableReplicas")) == want
            and as_int(status.get("observedGeneration")) >= as_int(meta(d).get("generation")))


def deployment_progressing(d: JSON, new: JSON) -> bool:
    old = _status(d)

    def n(s: JSON, k: str) -> int:
        return as_int(s.get(k))

    return (n(new, "updatedReplicas") > n(old, "updatedReplicas")
            or n(new, "replicas") - n(new, "updatedReplicas")
            < n(old, "replicas") - n(old, "updatedReplicas")
            or n(new, "readyReplicas") > n(old, "readyReplicas")
            or n(new, "availableReplicas") > n(old, "availableReplicas"))


def deployment_timed_out(d: JSON, status: JSON, now: float) -> bool:
    if not has_deadline(d):
        return False
    cond = get_condition(status, PROGRESSING)
    if cond is None or cond.get("reason") == NEW_RS_AVAILABLE:
        return False
    if cond.get("reason") == TIMED_OUT:
        return True
    since = parse_rfc3339(str(cond.get("lastUpdateTime")))
    return since + int(_spec(d)["progressDeadlineSeconds"]) < now


def calculate_status(all_rss: list[JSON], new_rs: JSON | None, d: JSON) -> JSON:
    available = _sum(all_rss, "availableReplicas")
    status: JSON = {
        "observedGeneration": as_int(meta(d).get("generation")),
        "replicas": _sum(all_rss, "replicas"),
        "updatedReplicas": ro.status_count(new_rs, "replicas") if new_rs else 0,
        "readyReplicas": _sum(all_rss, "readyReplicas"),
        "availableReplicas": available,
        "unavailableReplicas": max(0, _spec_sum(all_rss) - available),
    }
    if "collisionCount" in _status(d):
        status["collisionCount"] = _status(d)["collisionCount"]
    status = drop_zero(status, COUNTS)
    for cond in _status(d).get("conditions") or []:
        status.setdefault("conditions", []).append(dict(cond))
    if available >= ro.replicas(d) - ro.max_unavailable(_spec(d)):
        set_condition(status, new_condition(AVAILABLE, "True", "MinimumReplicasAvailable",
                                             "Deployment has minimum availability."))
    else:
        set_condition(status, new_condition(AVAILABLE, "False", "MinimumReplicasUnavailable",
                                             "Deployment does not have minimum availability."))
    return status


class DeploymentController:
    """Deployments -> ReplicaSets; ReplicaSet changes re-sync their Deployment."""

    def __init__(self, store: Store, registry: Registry, queue: WorkQueue,
                 recorder: Recorder) -> None:
        self.store, self.queue, self.recorder = store, queue, recorder
        self.deployments = registry.get("apps", "deployments")
        self.replicasets = registry.get("apps", "replicasets")
        queue.register("deployment", self.sync, priority=2)
        store.listeners.append(self.on_change)

    def on_change(self, change: Change) -> None:
        if change.res is self.deployments:
            m = meta(change.obj)
            self.queue.add(("deployment", m.get("namespace", ""), m["name"]))
        elif change.res is self.replicasets:
            for obj in (change.obj, change.old):
                ref = controller_ref(obj or {})
                if ref is not None and ref.get("kind") == "Deployment":
                    self.queue.add(("deployment", meta(change.obj).get("namespace", ""),
                                    ref["name"]))

    # -- reads and writes ------------------------------------------------------------

    def _owned(self, d: JSON) -> list[JSON]:
        uid = meta(d)["uid"]
        found = [obj for res, obj in self.store.dependents(uid)
                 if res is self.replicasets and owned_by(obj, d)]
        return sorted(found, key=created)

    def _write_status(self, d: JSON, status: JSON) -> JSON:
        body = copy.deepcopy(d)
        body["status"] = status
        return copy.deepcopy(self.store.update(
            self.deployments, meta(d)["namespace"], meta(d)["name"], lambda cur: body,
            subresource="status"))

    def _update_rs(self, rs: JSON) -> JSON:
        m = meta(rs)
        return copy.deepcopy(self.store.update(self.replicasets, m["namespace"], m["name"],
                                               lambda cur: copy.deepcopy(rs)))

    def _scale_rs(self, rs: JSON, size: int, d: JSON) -> tuple[bool, JSON]:
        """``scaleReplicaSetAndRecordEvent``: replicas and the replicas annotations."""
        old = ro.replicas(rs)
        desired = str(ro.replicas(d))
        most = str(ro.replicas(d) + ro.max_surge(_spec(d)))
        notes = meta(rs).get("annotations") or {}
        stale = notes.get(ro.DESIRED_REPLICAS) != desired or notes.get(ro.MAX_REPLICAS) != most
        if old == size and not stale:
            return False, rs
        body = copy.deepcopy(rs)
        body["spec"]["replicas"] = size
        notes = body["metadata"].setdefault("annotations", {})
        notes[ro.DESIRED_REPLICAS] = desired
        notes[ro.MAX_REPLICAS] = most
        updated = self._update_rs(body)
        if old == size:  # only the annotations (ReplicasAnnotationsNeedUpdate): no event
            return False, updated
        direction = "up" if size > old else "down"
        self.recorder.event(d, "Normal", "ScalingReplicaSet", f"Scaled {direction} replica "
                            f"set {meta(rs)['name']} to {size} from {old}",
                            "deployment-controller")
        return True, updated

    # -- the sync loop ---------------------------------------------------------------

    def sync(self, key: Key) -> None:
        _, ns, name = key
        found = self.store.find(self.deployments, str(ns), str(name))
        if found is None:
            return
        d = copy.deepcopy(found)
        new_rs, old_rss = self._all_rss(d)
        if deleting(d):
            self._sync_status(self._with(old_rss, new_rs), new_rs, d)
            return
        d = self._check_paused(d)
        if _spec(d).get("paused") or scaling_event(d, self._with(old_rss, new_rs)):
            self._sync_scale(d, new_rs, old_rss)
        elif (_spec(d).get("strategy") or {}).get("type") == "Recreate":
            self._rollout_recreate(d, new_rs, old_rss)
        else:
            self._rollout_rolling(d, new_rs, old_rss)

    @staticmethod
    def _with(old_rss: list[JSON], new_rs: JSON | None) -> list[JSON]:
        return old_rss + ([new_rs] if new_rs is not None else [])

    def _check_paused(self, d: JSON) -> JSON:
        if not has_deadline(d):
            return d
        cond = get_condition(_status(d), PROGRESSING)
        paused = bool(_spec(d).get("paused"))
        if paused and (cond is None or cond.get("reason") != PAUSED):
            status = copy.deepcopy(_status(d))
            set_condition(status, new_condition(PROGRESSING, "Unknown", PAUSED,
                                                "Deployment is paused"))
            return self._write_status(d, status)
        if not paused and cond is not None and cond.get("reason") == PAUSED:
            status = copy.deepcopy(_status(d))
            set_condition(status, new_condition(PROGRESSING, "Unknown", RESUMED,
                                                "Deployment is resumed"))
            return self._write_status(d, status)
        return d

    # -- the new ReplicaSet ----------------------------------------------------------

    def _split(self, d: JSON) -> tuple[JSON | None, list[JSON]]:
        """``(new, old)``: the owned ReplicaSet whose template is the Deployment's
        (ignoring the hash label; the oldest if several), and the others."""
        rs_list = self._owned(d)
        template = ro.without_hash(_spec(d).get("template") or {})
        existing = next((rs for rs in rs_list if ro.without_hash(
            _spec(rs).get("template") or {}) == template), None)
        return existing, [rs for rs in rs_list if rs is not existing]

    def _all_rss(self, d: JSON) -> tuple[JSON | None, list[JSON]]:
        """``getAllReplicaSetsAndSyncRevision`` without creating the new ReplicaSet."""
        existing, old_rss = self._split(d)
        if existing is None:
            return None, old_rss
        return self._sync_existing(d, existing, next_revision(old_rss)), old_rss

    def _sync_existing(self, d: JSON, existing: JSON, revision: int) -> JSON:
        rs = copy.deepcopy(existing)
        changed = set_new_rs_annotations(d, rs, revision, exists=True)
        min_ready = _spec(d).get("minReadySeconds", 0)
        if changed or _spec(rs).get("minReadySeconds", 0) != min_ready:
            rs["spec"]["minReadySeconds"] = min_ready
            return self._update_rs(rs)
        needs_update = set_revision(d, (meta(rs).get("annotations") or {}).get(ro.REVISION, ""))
        status = copy.deepcopy(_status(d))
        if has_deadline(d) and get_condition(status, PROGRESSING) is None:
            set_condition(status, new_condition(PROGRESSING, "True", FOUND_NEW_RS,
                                                f'Found new replica set "{meta(rs)["name"]}"'))
            needs_update = True
        if needs_update:
            d.update(self._write_status(d, status))
        return rs

    def _create_rs(self, d: JSON, old_rss: list[JSON], revision: int) -> JSON | None:
        spec = _spec(d)
        template = copy.deepcopy(spec.get("template") or {})
        pod_hash = ro.template_hash(template, _status(d).get("collisionCount"))
        labels = dict((template.setdefault("metadata", {})).get("labels") or {})
        labels[ro.HASH_LABEL] = pod_hash
        template["metadata"]["labels"] = labels
        selector = copy.deepcopy(spec.get("selector") or {})
        selector.setdefault("matchLabels", {})[ro.HASH_LABEL] = pod_hash
        m = meta(d)
        rs: JSON = {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": f"{m['name']}-{pod_hash}", "namespace": m["namespace"],
                         "labels": dict(labels), "ownerReferences": [new_controller_ref(d)]},
            "spec": {"replicas": 0, "minReadySeconds": spec.get("minReadySeconds", 0),
                     "selector": selector, "template": template},
        }
        rs["spec"]["replicas"] = new_rs_replicas(d, [*old_rss, rs], rs)
        set_new_rs_annotations(d, rs, revision, exists=False)
        try:
            created_rs = self.store.create(self.replicasets, m["namespace"], rs,
                                           WriteOptions())
        except ApiError as exc:
            if exc.code != 409:
                raise
            return self._collision(d, rs)
        if ro.replicas(created_rs) > 0:
            self.recorder.event(d, "Normal", "ScalingReplicaSet", f"Scaled up replica set "
                                f"{meta(created_rs)['name']} to {ro.replicas(created_rs)}",
                                "deployment-controller")
        set_revision(d, str(revision))
        status = copy.deepcopy(_status(d))
        if has_deadline(d):
            set_condition(status, new_condition(
                PROGRESSING, "True", NEW_RS_CREATED,
                f'Created new replica set "{meta(created_rs)["name"]}"'))
        d.update(self._write_status(d, status))
        return created_rs

    def _collision(self, d: JSON, rs: JSON) -> JSON | None:
        m = meta(rs)
        other = self.store.find(self.replicasets, m["namespace"], m["name"])
        if other is not None and owned_by(other, d) and ro.without_hash(
                _spec(other)["template"]) == ro.without_hash(_spec(d)["template"]):
            return other
        status = copy.deepcopy(_status(d))
        status["collisionCount"] = as_int(status.get("collisionCount")) + 1
        self._write_status(d, status)
        raise Retry(0.0)

    # -- strategies ------------------------------------------------------------------

    def _rollout_rolling(self, d: JSON, new_rs: JSON | None, old_rss: list[JSON]) -> None:
        if new_rs is None:
            new_rs = self._create_rs(d, old_rss, next_revision(old_rss))
        if new_rs is None:
            return
        scaled, new_rs = self._reconcile_new_rs(self._with(old_rss, new_rs), new_rs, d)
        if not scaled:
            scaled, old_rss = self._reconcile_old_rss(old_rss, new_rs, d)
        if not scaled and deployment_complete(d, _status(d)):
            self._cleanup(old_rss, d)
        self._sync_rollout_status(self._with(old_rss, new_rs), new_rs, d)

    def _rollout_recreate(self, d: JSON, new_rs: JSON | None, old_rss: list[JSON]) -> None:
        scaled = False
        for i, rs in enumerate(old_rss):
            if ro.replicas(rs) != 0:
                changed, old_rss[i] = self._scale_rs(rs, 0, d)
                scaled = scaled or changed
        old_running = _sum(old_rss, "replicas") > 0
        if not scaled and not old_running:
            if new_rs is None:
                new_rs = self._create_rs(d, old_rss, next_revision(old_rss))
            if new_rs is not None:
                _, new_rs = self._scale_rs(new_rs, ro.replicas(d), d)
                if deployment_complete(d, _status(d)):
                    self._cleanup(old_rss, d)
        self._sync_rollout_status(self._with(old_rss, new_rs), new_rs, d)

    def _reconcile_new_rs(self, all_rss: list[JSON], new_rs: JSON, d: JSON
                          ) -> tuple[bool, JSON]:
        want = ro.replicas(d)
        if ro.replicas(new_rs) == want:
            return False, new_rs
        if ro.replicas(new_rs) > want:
            return self._scale_rs(new_rs, want, d)
        return self._scale_rs(new_rs, new_rs_replicas(d, all_rss, new_rs), d)

    def _reconcile_old_rss(self, old_rss: list[JSON], new_rs: JSON, d: JSON
                           ) -> tuple[bool, list[JSON]]:
        if _spec_sum(old_rss) == 0:
            return False, old_rss
        all_pods = _spec_sum([*old_rss, new_rs])
        min_available = ro.replicas(d) - ro.max_unavailable(_spec(d))
        new_unavailable = ro.replicas(new_rs) - ro.status_count(new_rs, "availableReplicas")
        max_scaled_down = all_pods - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False, old_rss
        old_rss = sorted(old_rss, key=created)
        cleaned = 0
        for i, rs in enumerate(old_rss):  # unhealthy old replicas go first
            if cleaned >= max_scaled_down:
                break
            unhealthy = ro.replicas(rs) - ro.status_count(rs, "availableReplicas")
            if ro.replicas(rs) == 0 or unhealthy <= 0:
                continue
            down = min(max_scaled_down - cleaned, unhealthy)
            _, old_rss[i] = self._scale_rs(rs, ro.replicas(rs) - down, d)
            cleaned += down
        available = _sum([*old_rss, new_rs], "availableReplicas")
        total_down = available - min_available
        scaled_down = 0
        for i, rs in enumerate(old_rss):
            if scaled_down >= total_down:
                break
            if ro.replicas(rs) == 0:
                continue
            down = min(ro.replicas(rs), total_down - scaled_down)
            _, old_rss[i] = self._scale_rs(rs, ro.replicas(rs) - down, d)
            scaled_down += down
        return cleaned + max(0, scaled_down) > 0, old_rss

    def _sync_scale(self, d: JSON, new_rs: JSON | None, old_rss: list[JSON]) -> None:
        """``sync``: a resize (or a paused Deployment): scale, then status."""
        self._scale(d, new_rs, old_rss)
        if _spec(d).get("paused"):
            self._cleanup(old_rss, d)
        new_rs, old_rss = self._split(d)
        self._sync_status(self._with(old_rss, new_rs), new_rs, d)

    def _scale(self, d: JSON, new_rs: JSON | None, old_rss: list[JSON]) -> None:
        want = ro.replicas(d)
        latest = active_or_latest(new_rs, old_rss)
        if latest is not None:
            self._scale_rs(latest, want, d)
            return
        if new_rs is not None and saturated(d, new_rs):
            for rs in _active(old_rss):
                self._scale_rs(rs, 0, d)
            return
        if not ro.is_rolling(_spec(d)):
            return
        for rs, size in proportional_sizes(d, self._with(old_rss, new_rs)):
            self._scale_rs(rs, size, d)

    def _cleanup(self, old_rss: list[JSON], d: JSON) -> None:
        limit = _spec(d).get("revisionHistoryLimit")
        if limit is None:
            return
        alive = sorted((rs for rs in old_rss if not deleting(rs)), key=ro.revision)
        for rs in alive[:max(0, len(alive) - int(limit))]:
            st = _status(rs)
            if as_int(st.get("replicas")) or ro.replicas(rs) or \
                    as_int(meta(rs).get("generation")) > as_int(st.get("observedGeneration")):
                continue
            m = meta(rs)
            self.store.delete(self.replicasets, m["namespace"], m["name"])

    # -- status ----------------------------------------------------------------------

    def _sync_status(self, all_rss: list[JSON], new_rs: JSON | None, d: JSON) -> None:
        status = calculate_status(all_rss, new_rs, d)
        if status != _status(d):
            self._write_status(d, status)

    def _sync_rollout_status(self, all_rss: list[JSON], new_rs: JSON | None, d: JSON) -> None:
        status = calculate_status(all_rss, new_rs, d)
        if not has_deadline(d):
            remove_condition(status, PROGRESSING)
        current = get_condition(_status(d), PROGRESSING)
        complete = (as_int(status.get("replicas")) == as_int(status.get("updatedReplicas"))
                    and current is not None and current.get("reason") == NEW_RS_AVAILABLE)
        if has_deadline(d) and not complete:
            progress_condition(d, status, new_rs, current)
        if status == _status(d):
            self._requeue_stuck(d, status)
            return
        self._write_status(d, status)

    def _requeue_stuck(self, d: JSON, status: JSON) -> None:
        cond = get_condition(status, PROGRESSING)
        if not has_deadline(d) or cond is None or \
                cond.get("reason") in (NEW_RS_AVAILABLE, TIMED_OUT) or \
                deployment_complete(d, status):
            return
        since = parse_rfc3339(str(cond.get("lastUpdateTime")))
        due = since + int(_spec(d)["progressDeadlineSeconds"]) + 0.01 - time.time()
        m = meta(d)
        self.queue.add(("deployment", m["namespace"], m["name"]), max(due, 0.01))


def progress_condition(d: JSON, status: JSON, new_rs: JSON | None,
                       current: JSON | None) -> None:
    """The ``Progressing`` condition for a rollout that has not completed yet."""
    subject = f'ReplicaSet "{meta(new_rs)["name"]}"' if new_rs is not None \
        else f'Deployment "{meta(d)["name"]}"'
    if deployment_complete(d, status):
        set_condition(status, new_condition(PROGRESSING, "True", NEW_RS_AVAILABLE,
                                            f"{subject} has successfully progressed."))
    elif deployment_progressing(d, status):
        cond = new_condition(PROGRESSING, "True", RS_UPDATED, f"{subject} is progressing.")
        if current is not None:
            if current.get("status") == "True":
                cond["lastTransitionTime"] = current.get("lastTransitionTime")
            remove_condition(status, PROGRESSING)
        set_condition(status, cond)
    elif deployment_timed_out(d, status, time.time()):
        set_condition(status, new_condition(PROGRESSING, "False", TIMED_OUT,
                                            f"{subject} has timed out progressing."))


def new_rs_replicas(d: JSON, all_rss: list[JSON], new_rs: JSON) -> int:
    """``NewRSNewReplicas``: how far the new ReplicaSet may grow now."""
    spec = _spec(d)
    want = ro.replicas(d)
    if not ro.is_rolling(spec):
        return want
    current = _spec_sum(all_rss)
    max_total = want + ro.max_surge(spec)
    if current >= max_total:
        return ro.replicas(new_rs)
    grow = min(max_total - current, want - ro.replicas(new_rs))
    return ro.replicas(new_rs) + grow


def set_revision(d: JSON, revision: str) -> bool:
    notes = d.setdefault("metadata", {}).setdefault("annotations", {})
    if notes.get(ro.REVISION) == revision:
        return False
    notes[ro.REVISION] = revision
    return True


def set_new_rs_annotations(d: JSON, rs: JSON, revision: int, *, exists: bool) -> bool:
    """``SetNewReplicaSetAnnotations``: copied annotations, revision (and history)."""
    notes: dict[str, Any] = rs["metadata"].setdefault("annotations", {})
    changed = False
    for k, v in (meta(d).get("annotations") or {}).items():
        if k not in ro.NOT_COPIED and notes.get(k) != v:
            notes[k] = v
            changed = True
    old = notes.get(ro.REVISION)
    if as_int(old) < revision:
        notes[ro.REVISION] = str(revision)
        changed = True
        if old:
            history = [h for h in str(notes.get(ro.REVISION_HISTORY, "")).split(",") if h]
            notes[ro.REVISION_HISTORY] = ",".join([*history, str(old)])
    if not exists:
        want = ro.replicas(d)
        notes[ro.DESIRED_REPLICAS] = str(want)
        notes[ro.MAX_REPLICAS] = str(want + ro.max_surge(_spec(d)))
        changed = True
    return changed


def active_or_latest(new_rs: JSON | None, old_rss: list[JSON]) -> JSON | None:
    if new_rs is None and not old_rss:
        return None
    newest_first = sorted(old_rss, key=created, reverse=True)
    active = _active([*newest_first, *([new_rs] if new_rs is not None else [])])
    if not active:
        return new_rs if new_rs is not None else newest_first[0]
    return active[0] if len(active) == 1 else None


def saturated(d: JSON, rs: JSON) -> bool:
    desired = as_int((meta(rs).get("annotations") or {}).get(ro.DESIRED_REPLICAS), -1)
    want = ro.replicas(d)
    return ro.replicas(rs) == want and desired == want and \
        ro.status_count(rs, "availableReplicas") == want


def proportional_sizes(d: JSON, rss: list[JSON]) -> list[tuple[JSON, int]]:
    """New sizes of the active ReplicaSets when a Deployment is resized mid-rollout."""
    active = _active(rss)
    spec = _spec(d)
    allowed = ro.replicas(d) + ro.max_surge(spec) if ro.replicas(d) > 0 else 0
    to_add = allowed - _spec_sum(active)
    active.sort(key=created, reverse=to_add > 0)  # ties: newer first when adding
    active.sort(key=lambda rs: -ro.replicas(rs))  # largest first (a stable sort)
    status_replicas = ro.status_count(d, "replicas")
    added, sizes = 0, []
    for rs in active:
        step = ro.proportion(rs, spec, status_replicas, to_add, added) if to_add else 0
        added += step
        sizes.append(ro.replicas(rs) + step)
    if active and to_add:
        sizes[0] = max(0, sizes[0] + to_add - added)
    return list(zip(active, sizes, strict=True))


def next_revision(old_rss: list[JSON]) -> int:
    return max((ro.revision(rs) for rs in old_rss), default=0) + 1


def scaling_event(d: JSON, rss: list[JSON]) -> bool:
    """An active ReplicaSet was sized for another ``spec.replicas``: a resize."""
    for rs in _active(rss):
        desired = (meta(rs).get("annotations") or {}).get(ro.DESIRED_REPLICAS)
        if desired is not None and as_int(desired, -1) != ro.replicas(d):
            return True
    return False
