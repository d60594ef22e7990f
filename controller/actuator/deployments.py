"""The two Deployments of a rollout: the user's target (baseline) and ``<target>-canary``.

Traffic is split by replica ratio: the target's Service selects pods of both cohorts, so
each cohort's share of traffic is its share of ready pods.

- The canary is created from the target's pod template plus ``spec.canary`` (image and
  env of one container, extra pod labels and annotations), owned by the CanaryRule
  (``ownerReferences``, ``controller: true``, so deleting the rule deletes it). Its pods
  carry the label ``canary.llmops.dev/cohort: canary`` and every container gets the env
  ``CANARY_COHORT=canary`` and ``CANARY_REVISION=<revision>``; its selector is the
  target's plus that label. The target is
  not modified while progressing (a baseline restart would disturb the comparison), so an
  application reads a missing ``CANARY_COHORT`` as ``baseline``. The target's selector
  also matches canary pods, which is harmless: each Deployment owns its ReplicaSets, and
  ReplicaSet selectors include ``pod-template-hash``.
- Every write reads first, computes the smallest merge patch that makes the object as
  desired, and sends nothing when there is nothing to change (idempotent). The patch
  carries ``metadata.resourceVersion``: a concurrent change yields 409, and the write is
  re-read and retried, ``WRITE_ATTEMPTS`` times at most.
- "Already as desired" compares with *subset* semantics (every field we set has our
  value; fields the API server defaulted are ignored), so server-side defaulting never
  causes a write per reconcile.
"""

from __future__ import annotations

import copy
import logging
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

from controller import API_GROUP, API_VERSION, KIND
from controller.conventions import (
    COHORT_ENV,
    COHORT_LABEL,
    MANAGED_BY_LABEL,
    MANAGER,
    PROMOTED_ANNOTATION,
    REVISION_ANNOTATION,
    REVISION_ENV,
    RULE_LABEL,
)
from controller.engine import Observed, canary_revision
from controller.models import CanaryRule, CanarySpec
from controller.models.base import JSON

from .client import MERGE_PATCH, Kube, path_of
from .errors import AlreadyExists, Conflict, Invalid, NotFound

log = logging.getLogger(__name__)

MANAGED_BY = {MANAGED_BY_LABEL: MANAGER}
WRITE_ATTEMPTS = 5
COPIED_SPEC_FIELDS = ("strategy", "minReadySeconds", "revisionHistoryLimit",
                      "progressDeadlineSeconds")


# --------------------------------------------------------------------------- pure parts


def split(weight: int, total: int) -> tuple[int, int]:
    """``(target, canary)`` replicas for a canary ``weight`` in percent of ``total``.

    The canary gets ``total * weight / 100`` rounded to the nearest pod (halves round
    up), then clamped so that while ``0 < weight < 100`` there is at least one canary pod
    and the target keeps at least one; ``target + canary == total``. With ``total == 1``
    and ``0 < weight < 100`` both cohorts need a pod, so the split is 1 + 1 (one pod
    more than ``total``). ``weight <= 0`` is all target; ``weight >= 100`` all canary.
    """
    total = max(0, total)
    if weight <= 0:
        return total, 0
    if weight >= 100:
        return 0, total
    if total <= 1:
        return 1, 1
    canary = min(max((total * weight + 50) // 100, 1), total - 1)
    return total - canary, canary


def canary_name(rule: CanaryRule) -> str:
    return f"{rule.spec.target_ref.name}-canary"


def _set_env(container: JSON, name: str, value: str) -> None:
    env = container.setdefault("env", [])
    for i, item in enumerate(env):
        if item.get("name") == name:
            env[i] = {"name": name, "value": value}
            return
    env.append({"name": name, "value": value})


def canary_template(template: JSON, canary: CanarySpec, revision: str) -> JSON:
    """The canary's pod template: the target's plus the rule's changes and the cohort."""
    tpl = copy.deepcopy(template)
    meta = tpl.setdefault("metadata", {})
    labels = meta.setdefault("labels", {})
    labels.update(canary.pod_labels)
    labels[COHORT_LABEL] = "canary"
    annotations = meta.setdefault("annotations", {})
    annotations.update(canary.pod_annotations)
    annotations[REVISION_ANNOTATION] = revision
    containers = (tpl.setdefault("spec", {})).get("containers") or []
    if not containers:
        raise Invalid("the target's pod template has no containers", reason="NoContainers")
    names = [c.get("name") for c in containers]
    if canary.container is not None and canary.container not in names:
        raise Invalid(f"spec.canary.container {canary.container!r} is not a container of the "
                      f"target (has: {', '.join(map(str, names))})", reason="NoSuchContainer")
    chosen = containers[names.index(canary.container) if canary.container else 0]
    if canary.image:
        chosen["image"] = canary.image
    for env in canary.env:
        _set_env(chosen, env.name, env.value)
    for container in containers:
        _set_env(container, COHORT_ENV, "canary")
        _set_env(container, REVISION_ENV, revision)
    return tpl


def promoted_template(template: JSON) -> JSON:
    """A canary pod template without the cohort marks: what the target runs after promotion."""
    tpl = copy.deepcopy(template)
    meta = tpl.get("metadata") or {}
    for key, marks in (("labels", (COHORT_LABEL,)), ("annotations", (REVISION_ANNOTATION,))):
        values = meta.get(key)
        if isinstance(values, dict):
            for mark in marks:
                values.pop(mark, None)
            if not values:
                meta.pop(key)
    for container in (tpl.get("spec") or {}).get("containers") or []:
        env = [e for e in container.get("env") or []
               if e.get("name") not in (COHORT_ENV, REVISION_ENV)]
        if env:
            container["env"] = env
        else:
            container.pop("env", None)
    return tpl


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


def replicas_of(dep: JSON) -> int:
    value = (dep.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def is_available(dep: JSON) -> bool:
    """Rolled out: the controller saw the latest spec, and exactly ``spec.replicas``
    pods exist, all updated and available (old pods gone)."""
    want = replicas_of(dep)
    status = dep.get("status") or {}
    generation = (dep.get("metadata") or {}).get("generation") or 0
    return (int(status.get("observedGeneration") or 0) >= int(generation)
            and int(status.get("updatedReplicas") or 0) >= want
            and int(status.get("availableReplicas") or 0) >= want
            and int(status.get("replicas") or 0) <= want)


def _annotations(obj: JSON) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


def _template_revision(dep: JSON) -> str | None:
    tpl = (dep.get("spec") or {}).get("template") or {}
    return _annotations(tpl).get(REVISION_ANNOTATION)


# --------------------------------------------------------------------------- I/O helpers


def _path(namespace: str, name: str | None = None, sub: str | None = None) -> str:
    return path_of("apps/v1", "deployments", namespace, name, sub)


def _ns(rule: CanaryRule) -> str:
    return rule.metadata.namespace or "default"


def get_deployment(kube: Kube, namespace: str, name: str) -> JSON:
    return kube.request("GET", _path(namespace, name))


def _get_or_none(kube: Kube, namespace: str, name: str) -> JSON | None:
    try:
        return get_deployment(kube, namespace, name)
    except NotFound:
        return None


def list_deployments(kube: Kube, namespace: str | None) -> tuple[list[JSON], str]:
    answer = kube.request("GET", _path(namespace) if namespace else
                          path_of("apps/v1", "deployments"))
    return list(answer.get("items") or []), str((answer.get("metadata") or {})
                                                .get("resourceVersion", ""))


def watch_deployments(kube: Kube, namespace: str | None, resource_version: str | None,
                      timeout_seconds: float = 60) -> Iterator[tuple[str, JSON]]:
    """``(type, deployment)`` events after ``resource_version``; ``Gone`` on 410."""
    query = {"allowWatchBookmarks": "true"}
    if resource_version:
        query["resourceVersion"] = resource_version
    path = _path(namespace) if namespace else path_of("apps/v1", "deployments")
    yield from kube.watch(path, query, timeout_seconds)


def _backoff(attempt: int) -> None:
    time.sleep(min(0.02 * 2 ** attempt, 0.5) * (0.5 + random.random()))


def _converge(kube: Kube, namespace: str, name: str,
              patch_for: Callable[[JSON], JSON | None], what: str) -> JSON:
    """Read, compute the patch, write it guarded by resourceVersion; retry on 409.

    ``patch_for`` returns None (or ``{}``) when the object is already as desired: then
    nothing is written. Raises ``NotFound`` if the object does not exist.
    """
    for attempt in range(WRITE_ATTEMPTS):
        current = get_deployment(kube, namespace, name)
        patch = patch_for(current)
        if not patch:
            return current
        patch.setdefault("metadata", {})["resourceVersion"] = \
            current["metadata"]["resourceVersion"]
        try:
            return kube.request("PATCH", _path(namespace, name), body=patch,
                                content_type=MERGE_PATCH)
        except Conflict:
            log.info("%s: conflict on %s/%s, re-reading (attempt %d)", what, namespace, name,
                     attempt + 1)
            _backoff(attempt)
    raise Conflict(f"{what}: {namespace}/{name} kept changing; gave up after "
                   f"{WRITE_ATTEMPTS} attempts", reason="Conflict", status=409)


def _scale(kube: Kube, namespace: str, name: str, replicas: int, what: str) -> None:
    """Set ``spec.replicas`` through the ``/scale`` subresource (as an autoscaler would)."""
    for attempt in range(WRITE_ATTEMPTS):
        current = get_deployment(kube, namespace, name)
        if replicas_of(current) == replicas:
            return
        body = {"metadata": {"resourceVersion": current["metadata"]["resourceVersion"]},
                "spec": {"replicas": replicas}}
        try:
            kube.request("PATCH", _path(namespace, name, "scale"), body=body,
                         content_type=MERGE_PATCH)
            log.info("%s: %s/%s scaled to %d", what, namespace, name, replicas)
            return
        except Conflict:
            log.info("%s: conflict scaling %s/%s, re-reading (attempt %d)", what, namespace,
                     name, attempt + 1)
            _backoff(attempt)
    raise Conflict(f"{what}: {namespace}/{name} kept changing; gave up after "
                   f"{WRITE_ATTEMPTS} attempts", reason="Conflict", status=409)


def _scale_all(kube: Kube, namespace: str, wanted: list[tuple[str, int, int]],
               what: str) -> None:
    """Scale several Deployments, growing ones first so capacity never dips."""
    for name, want, _ in sorted(wanted, key=lambda w: w[1] <= w[2]):
        _scale(kube, namespace, name, want, what)


# --------------------------------------------------------------------------- operations


def observe(kube: Kube, rule: CanaryRule, total_replicas: int | None) -> Observed:
    """What the engine needs to know of the cluster. ``NotFound`` if the target is gone.

    ``canary_replicas`` counts canary pods that exist or are wanted (the larger of spec
    and status), so "scaled to zero" means the pods are gone too. ``canary_ready``: the
    canary runs the current revision and is fully available. ``target_promoted``: the
    target was promoted to the current revision, runs the canary's template, has at
    least ``total_replicas`` replicas and is fully available.
    """
    ns = _ns(rule)
    revision = canary_revision(rule.spec)
    target = get_deployment(kube, ns, rule.spec.target_ref.name)
    canary = _get_or_none(kube, ns, canary_name(rule))
    canary_replicas = 0
    canary_ready = False
    if canary is not None:
        running = int((canary.get("status") or {}).get("replicas") or 0)
        canary_replicas = max(replicas_of(canary), running)
        canary_ready = (replicas_of(canary) > 0 and is_available(canary)
                        and _template_revision(canary) == revision)
    template_ok = True
    if canary is not None and _template_revision(canary) == revision:
        template_ok = covers((target.get("spec") or {}).get("template"),
                             promoted_template(canary["spec"]["template"]))
    target_promoted = (_annotations(target).get(PROMOTED_ANNOTATION) == revision
                       and template_ok
                       and replicas_of(target) >= max(1, total_replicas or 1)
                       and is_available(target))
    return Observed(target_replicas=replicas_of(target), canary_replicas=canary_replicas,
                    canary_ready=canary_ready, target_promoted=target_promoted)


def _owner_reference(rule: CanaryRule) -> JSON:
    if not rule.metadata.uid:
        raise Invalid(f"CanaryRule {rule.metadata.name} has no uid (not read from the API?)",
                      reason="NoUID")
    return {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": KIND,
            "name": rule.metadata.name, "uid": rule.metadata.uid,
            "controller": True, "blockOwnerDeletion": True}


def desired_canary(rule: CanaryRule, target: JSON, revision: str) -> JSON:
    """The full canary Deployment for ``revision`` (created with zero replicas:
    ``set_weight`` sizes it)."""
    tspec = target.get("spec") or {}
    selector = copy.deepcopy(tspec.get("selector") or {})
    selector.setdefault("matchLabels", {})[COHORT_LABEL] = "canary"
    labels = dict((target.get("metadata") or {}).get("labels") or {})
    labels.update({COHORT_LABEL: "canary", RULE_LABEL: rule.metadata.name, **MANAGED_BY})
    spec: JSON = {k: copy.deepcopy(tspec[k]) for k in COPIED_SPEC_FIELDS if k in tspec}
    spec.update(replicas=0, selector=selector,
                template=canary_template(tspec.get("template") or {}, rule.spec.canary,
                                         revision))
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": canary_name(rule),
            "namespace": _ns(rule),
            "labels": labels,
            "annotations": {REVISION_ANNOTATION: revision},
            "ownerReferences": [_owner_reference(rule)],
        },
        "spec": spec,
    }


def _canary_patch(rule: CanaryRule, current: JSON, desired: JSON) -> JSON | None:
    meta, want = current.get("metadata") or {}, desired["metadata"]
    if (meta.get("labels") or {}).get(COHORT_LABEL) != "canary":
        raise Invalid(f"Deployment {meta.get('name')} exists and is not a canary made by "
                      f"llm-canary (no {COHORT_LABEL} label); refusing to take it over",
                      reason="NotOurs")
    if (current.get("spec") or {}).get("selector") != desired["spec"]["selector"]:
        raise Invalid(f"Deployment {meta.get('name')} has a selector other than the target's "
                      "plus the cohort label; delete it so it can be recreated",
                      reason="SelectorMismatch")
    patch: JSON = {}
    meta_patch: JSON = {}
    for key in ("labels", "annotations"):
        if not covers(meta.get(key), want[key]):
            meta_patch[key] = want[key]
    owner = want["ownerReferences"][0]
    refs = meta.get("ownerReferences") or []
    if not any(r.get("uid") == owner["uid"] and r.get("controller") for r in refs):
        meta_patch["ownerReferences"] = [owner] + [r for r in refs if not r.get("controller")
                                                   and r.get("uid") != owner["uid"]]
    if meta_patch:
        patch["metadata"] = meta_patch
    template = (current.get("spec") or {}).get("template") or {}
    if not covers(template, desired["spec"]["template"]):
        patch["spec"] = {"template": merge_diff(template, desired["spec"]["template"])}
    return patch or None


def ensure_canary(kube: Kube, rule: CanaryRule, revision: str) -> None:
    """Make ``<target>-canary`` exist with this revision's template (no write if it does).

    Replicas are left alone (``set_weight`` owns them); a new canary starts at zero.
    """
    ns, name = _ns(rule), canary_name(rule)
    target = get_deployment(kube, ns, rule.spec.target_ref.name)
    desired = desired_canary(rule, target, revision)
    for attempt in range(WRITE_ATTEMPTS):
        if _get_or_none(kube, ns, name) is None:
            try:
                kube.request("POST", _path(ns), body=desired)
                log.info("created canary %s/%s at revision %s", ns, name, revision)
                return
            except AlreadyExists:
                _backoff(attempt)
                continue
        _converge(kube, ns, name, lambda cur: _canary_patch(rule, cur, desired),
                  "ensure-canary")
        return
    raise Conflict(f"ensure-canary: {ns}/{name} kept appearing and disappearing",
                   reason="Conflict", status=409)


def set_weight(kube: Kube, rule: CanaryRule, weight: int, total: int) -> None:
    """Scale target and canary to the :func:`split` of ``total`` for ``weight``.

    ``NotFound`` if either Deployment is missing (``ensure_canary`` runs first).
    """
    ns = _ns(rule)
    target_n, canary_n = split(weight, total)
    target = get_deployment(kube, ns, rule.spec.target_ref.name)
    canary = get_deployment(kube, ns, canary_name(rule))
    _scale_all(kube, ns, [(rule.spec.target_ref.name, target_n, replicas_of(target)),
                          (canary_name(rule), canary_n, replicas_of(canary))], "set-weight")


def promote(kube: Kube, rule: CanaryRule, revision: str, total: int) -> None:
    """Copy the canary's pod template (minus the cohort marks) into the target and run
    the target at ``total`` replicas. Does not wait: :func:`observe` reports
    ``target_promoted`` once the target is available; the canary is scaled down after.

    ``Conflict`` if the canary does not run ``revision`` yet (re-reconcile).
    """
    ns = _ns(rule)
    canary = get_deployment(kube, ns, canary_name(rule))
    running = _template_revision(canary)
    if running != revision:
        raise Conflict(f"canary {ns}/{canary_name(rule)} runs revision {running}, "
                       f"not {revision}, yet", reason="CanaryNotReady", status=409)
    template = promoted_template(canary["spec"]["template"])

    def patch_for(target: JSON) -> JSON | None:
        patch: JSON = {}
        current_tpl = (target.get("spec") or {}).get("template") or {}
        spec: JSON = {}
        if not covers(current_tpl, template):
            spec["template"] = merge_diff(current_tpl, template)
        if replicas_of(target) != total:
            spec["replicas"] = total
        if spec:
            patch["spec"] = spec
        if _annotations(target).get(PROMOTED_ANNOTATION) != revision:
            patch["metadata"] = {"annotations": {PROMOTED_ANNOTATION: revision}}
        return patch or None

    _converge(kube, ns, rule.spec.target_ref.name, patch_for, "promote")


def scale_down_canary(kube: Kube, rule: CanaryRule, total: int) -> None:
    """Rollback (and cleanup after promotion): target back to ``total`` replicas first,
    then the canary to zero. The target's template is not touched. A missing canary is
    fine."""
    ns = _ns(rule)
    target = get_deployment(kube, ns, rule.spec.target_ref.name)
    canary = _get_or_none(kube, ns, canary_name(rule))
    wanted = [(rule.spec.target_ref.name, total, replicas_of(target))]
    if canary is not None:
        wanted.append((canary_name(rule), 0, replicas_of(canary)))
    _scale_all(kube, ns, wanted, "scale-down-canary")
