"""The replica-ratio traffic router: traffic follows ready pods.

The target's Service selects pods of every cohort, so a cohort's share of traffic is its
share of ready pods. This router observes the three Deployments of a rollout and carries
out the engine's operations on them:

- ``<target>-canary`` (and, during a bake, ``<target>-holdback``) runs the template the
  engine computed, with the target's selector plus ``canary.llmops.dev/cohort``, owned by
  the CanaryRule (``controller: true``, ``blockOwnerDeletion: true``: the rule's deletion
  waits for it, and the API server's garbage collector removes it after the rule). It is
  labelled ``app.kubernetes.io/managed-by: llm-canary`` (the controller watches
  Deployments by that label only) and ``canary.llmops.dev/rule``; it copies the target's
  labels except GitOps tracking labels (Argo CD/Flux would prune or adopt it), and none
  of its annotations.
- A pod label in ``spec.canary.podLabels`` that overrides a label of the target's selector
  is used in the canary's selector too: the canary's pods then leave the target's
  selector, and so its HorizontalPodAutoscaler's metrics (the HPA averages over the pods
  of its target's selector). The Service must not select on that label for the canary to
  get traffic; where the Service and the target select on the same labels, canary pods
  are necessarily part of the target's HPA metrics (documented in the README).
- The target is only ever scaled (``/scale``), given the canary's template at promotion,
  or given its previous template back (rollback after promotion, undo).
- A Deployment named like the canary that this rule does not control is never taken
  over (another rule's, or the user's): the operation fails with the owner named.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence

from controller import API_GROUP, API_VERSION, KIND
from controller.conventions import (
    CANARY_COHORT,
    CANARY_SUFFIX,
    COHORT_LABEL,
    GITOPS_TRACKING_LABELS,
    HOLDBACK,
    HOLDBACK_SUFFIX,
    MANAGED_BY_LABEL,
    MANAGER,
    PROMOTED_ANNOTATION,
    REVISION_ANNOTATION,
    RULE_LABEL,
)
from controller.engine import (
    Observed,
    Op,
    Operation,
    Role,
    promoted_template,
    revision_of,
    template_revision,
)
from controller.models import CanaryRule
from controller.models.base import JSON

from . import deployments as dp
from .client import Kube
from .errors import AlreadyExists, Conflict, Invalid, NotFound
from .hpa import autoscaler_for

log = logging.getLogger(__name__)

COPIED_SPEC_FIELDS = ("strategy", "minReadySeconds", "revisionHistoryLimit",
                      "progressDeadlineSeconds")
MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGER}"
"""The label selector of the controller's Deployments watch."""


def side_name(rule: CanaryRule, role: Role) -> str:
    suffix = CANARY_SUFFIX if role is Role.CANARY else HOLDBACK_SUFFIX
    return rule.spec.target_ref.name + suffix


def _ns(rule: CanaryRule) -> str:
    return rule.metadata.namespace or "default"


def _annotations(obj: JSON) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


def side_revision(dep: JSON) -> str | None:
    """The revision a canary/holdback Deployment's template runs."""
    return revision_of(dp.template_of(dep)) or _annotations(
        dp.template_of(dep)).get(REVISION_ANNOTATION)


class ReplicaRatioRouter:
    """Implements :class:`controller.ports.TrafficRouter` by replica ratio."""

    kind = "replicaRatio"

    def __init__(self, kube: Kube, *,
                 exclude_labels: Sequence[str] = GITOPS_TRACKING_LABELS) -> None:
        self.kube = kube
        self.exclude_labels = frozenset(exclude_labels)

    # -- observing -----------------------------------------------------------------------

    def observe(self, rule: CanaryRule) -> Observed:
        ns = _ns(rule)
        sides = {role: dp.get_or_none(self.kube, ns, side_name(rule, role))
                 for role in (Role.CANARY, Role.HOLDBACK)}
        side = {role: dp.workload(dep, side_revision(dep)) if dep is not None else None
                for role, dep in sides.items()}
        target = dp.get_or_none(self.kube, ns, rule.spec.target_ref.name)
        if target is None:
            return Observed(target=None, canary=side[Role.CANARY],
                            holdback=side[Role.HOLDBACK])
        tspec = target.get("spec") or {}
        template = dp.template_of(target)
        strategy = tspec.get("strategy") or {}
        surge = (strategy.get("rollingUpdate") or {}).get("maxSurge") \
            if strategy.get("type", "RollingUpdate") == "RollingUpdate" else None
        return Observed(
            target=dp.workload(target, template_revision(template)),
            target_template=template, canary=side[Role.CANARY], holdback=side[Role.HOLDBACK],
            autoscaler=autoscaler_for(self.kube, ns, rule.spec.target_ref.name),
            max_surge=surge,
            progress_deadline_seconds=int(tspec.get("progressDeadlineSeconds") or 600))

    # -- acting --------------------------------------------------------------------------

    def apply(self, rule: CanaryRule, operation: Operation) -> None:
        op = operation.op
        if op is Op.ENSURE:
            assert operation.template is not None and operation.revision is not None
            self._ensure(rule, operation.role, operation.template, operation.revision)
        elif op is Op.SCALE:
            assert operation.replicas is not None
            self._scale(rule, operation.role, operation.replicas)
        elif op is Op.PROMOTE:
            assert operation.revision is not None
            self._promote(rule, operation.revision)
        elif op is Op.RESTORE:
            assert operation.template is not None
            self._restore(rule, operation.template)

    def _scale(self, rule: CanaryRule, role: Role, replicas: int) -> None:
        name = rule.spec.target_ref.name if role is Role.TARGET else side_name(rule, role)
        try:
            dp.scale(self.kube, _ns(rule), name, replicas, f"scale {role.value}")
        except NotFound:
            if role is Role.TARGET or replicas > 0:
                raise

    # -- canary and holdback -------------------------------------------------------------

    def _owner(self, rule: CanaryRule) -> JSON:
        if not rule.metadata.uid:
            raise Invalid(f"CanaryRule {rule.metadata.name} has no uid (not read from the "
                          "API?)", reason="NoUID")
        return {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": KIND,
                "name": rule.metadata.name, "uid": rule.metadata.uid,
                "controller": True, "blockOwnerDeletion": True}

    def desired(self, rule: CanaryRule, target: JSON, role: Role, template: JSON,
                revision: str) -> JSON:
        """The whole canary/holdback Deployment (created at zero replicas)."""
        cohort = CANARY_COHORT if role is Role.CANARY else HOLDBACK
        tspec = target.get("spec") or {}
        selector = copy.deepcopy(tspec.get("selector") or {})
        match = selector.setdefault("matchLabels", {})
        pod_labels = (template.get("metadata") or {}).get("labels") or {}
        for key in list(match):  # a podLabels override leaves the target's selector
            if key in pod_labels:
                match[key] = pod_labels[key]
        match[COHORT_LABEL] = cohort
        labels = {k: v for k, v in ((target.get("metadata") or {}).get("labels") or {}).items()
                  if k not in self.exclude_labels}
        labels.update({COHORT_LABEL: cohort, RULE_LABEL: rule.metadata.name,
                       MANAGED_BY_LABEL: MANAGER})
        spec: JSON = {k: copy.deepcopy(tspec[k]) for k in COPIED_SPEC_FIELDS if k in tspec}
        spec.update(replicas=0, selector=selector, template=copy.deepcopy(template))
        return {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": side_name(rule, role), "namespace": _ns(rule),
                         "labels": labels, "annotations": {REVISION_ANNOTATION: revision},
                         "ownerReferences": [self._owner(rule)]},
            "spec": spec,
        }

    def _ensure(self, rule: CanaryRule, role: Role, template: JSON, revision: str) -> None:
        """Make the side Deployment exist with this template (no write if it does).
        Replicas are left alone (SCALE owns them); a new one starts at zero."""
        ns, name = _ns(rule), side_name(rule, role)
        target = dp.get_deployment(self.kube, ns, rule.spec.target_ref.name)
        desired = self.desired(rule, target, role, template, revision)
        if dp.get_or_none(self.kube, ns, name) is None:
            try:
                dp.create(self.kube, ns, desired)
                log.info("created %s %s/%s at revision %s", role.value, ns, name, revision)
                return
            except AlreadyExists:
                pass  # created meanwhile: converge it below
        dp.converge(self.kube, ns, name, lambda cur: self._side_patch(rule, cur, desired),
                    f"ensure {role.value}")

    def _side_patch(self, rule: CanaryRule, current: JSON, desired: JSON) -> JSON | None:
        meta, want = current.get("metadata") or {}, desired["metadata"]
        name, cohort = meta.get("name"), want["labels"][COHORT_LABEL]
        if (meta.get("labels") or {}).get(COHORT_LABEL) != cohort:
            raise Invalid(f"Deployment {name} exists and was not made by llm-canary (no "
                          f"{COHORT_LABEL}={cohort} label); refusing to take it over",
                          reason="NotOurs")
        owner = want["ownerReferences"][0]
        refs = meta.get("ownerReferences") or []
        for ref in refs:
            if ref.get("controller") and ref.get("uid") != owner["uid"] and \
                    ref.get("name") != owner["name"]:
                raise Invalid(f"Deployment {name} is controlled by {ref.get('kind')} "
                              f"{ref.get('name')}; refusing to take it over",
                              reason="OwnedByAnotherRule")
        if (current.get("spec") or {}).get("selector") != desired["spec"]["selector"]:
            raise Invalid(f"Deployment {name} has a selector other than the target's plus "
                          "the cohort label (immutable); delete it so it can be recreated",
                          reason="SelectorMismatch")
        patch: JSON = {}
        meta_patch: JSON = {}
        for key in ("labels", "annotations"):
            if not dp.covers(meta.get(key), want[key]):
                meta_patch[key] = want[key]
        if not any(r.get("uid") == owner["uid"] and r.get("controller") for r in refs):
            meta_patch["ownerReferences"] = [owner] + [
                r for r in refs if not r.get("controller") and r.get("uid") != owner["uid"]]
        if meta_patch:
            patch["metadata"] = meta_patch
        template = (current.get("spec") or {}).get("template") or {}
        if not dp.covers(template, desired["spec"]["template"]):
            patch["spec"] = {"template": dp.merge_diff(template, desired["spec"]["template"])}
        return patch or None

    # -- the target ----------------------------------------------------------------------

    def _promote(self, rule: CanaryRule, revision: str) -> None:
        """The canary's template (without the cohort marks) into the target. Does not
        wait: the engine sees the target's revision and availability next time."""
        ns = _ns(rule)
        canary = dp.get_deployment(self.kube, ns, side_name(rule, Role.CANARY))
        running = side_revision(canary)
        if running != revision:
            raise Conflict(f"canary {ns}/{side_name(rule, Role.CANARY)} runs revision "
                           f"{running}, not {revision}, yet", reason="CanaryNotReady",
                           status=409)
        self._write_target_template(rule, promoted_template(dp.template_of(canary)),
                                    revision, "promote")

    def _restore(self, rule: CanaryRule, template: JSON) -> None:
        self._write_target_template(rule, template, None, "restore")

    def _write_target_template(self, rule: CanaryRule, template: JSON,
                               promoted: str | None, what: str) -> None:
        def patch_for(target: JSON) -> JSON | None:
            patch: JSON = {}
            current = dp.template_of(target)
            if current != template:
                patch["spec"] = {"template": dp.merge_diff(current, template)}
            if _annotations(target).get(PROMOTED_ANNOTATION) != promoted:
                patch["metadata"] = {"annotations": {PROMOTED_ANNOTATION: promoted}}
            return patch or None

        dp.converge(self.kube, _ns(rule), rule.spec.target_ref.name, patch_for, what)
