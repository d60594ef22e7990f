"""Pod templates of a rollout and their revision ids, as pure functions on JSON.

- The **stable template** is the target's pod template when the rollout starts (kept in
  the status, so the canary never follows a later edit of the target, and a rollback
  after promotion restores it exactly).
- The **canary template** is the stable template plus ``spec.canary`` (image and env of
  one container, pod labels and annotations), then *marked*: label
  ``canary.llmops.dev/cohort: canary``, label ``canary.llmops.dev/revision: <id>`` and the
  env ``CANARY_COHORT=canary`` and ``CANARY_REVISION=<id>`` in every container.
- The **holdback template** (bake) is the stable template marked with the cohort label
  ``holdback``, ``CANARY_COHORT=baseline`` and the stable revision id.
- The **promoted template** is the canary template without the cohort marks; it keeps
  the revision label and env, so the target's pods keep naming their revision (samples
  of a bake are attributed by it).

A **revision id** is a hash of a template with every mark removed (like
``pod-template-hash``): the same template always has the same id, whoever wrote it, and
a canary equal to the stable template has the stable template's id (a no-op).
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from controller.conventions import (
    BASELINE_COHORT,
    CANARY_COHORT,
    COHORT_ENV,
    COHORT_LABEL,
    HOLDBACK,
    REVISION_ANNOTATION,
    REVISION_ENV,
    REVISION_LABEL,
)
from controller.models import CanarySpec
from controller.models.base import JSON

MARK_LABELS = (COHORT_LABEL, REVISION_LABEL)
MARK_ANNOTATIONS = (REVISION_ANNOTATION,)
MARK_ENV = (COHORT_ENV, REVISION_ENV)
REVISION_LENGTH = 10


class TemplateError(ValueError):
    """``spec.canary`` cannot be applied to the target's template (names the field)."""


def _containers(template: JSON) -> list[JSON]:
    return list((template.get("spec") or {}).get("containers") or [])


def strip_marks(template: JSON, *, keep_revision: bool = False) -> JSON:
    """A copy of ``template`` without the controller's marks (empty maps dropped)."""
    tpl = copy.deepcopy(template)
    labels = MARK_LABELS if not keep_revision else (COHORT_LABEL,)
    annotations = MARK_ANNOTATIONS if not keep_revision else ()
    env_names = MARK_ENV if not keep_revision else (COHORT_ENV,)
    meta = tpl.get("metadata")
    if isinstance(meta, dict):
        for key, marks in (("labels", labels), ("annotations", annotations)):
            values = meta.get(key)
            if isinstance(values, dict):
                for mark in marks:
                    values.pop(mark, None)
                if not values:
                    meta.pop(key)
        if not meta:
            tpl.pop("metadata")
    for kind in ("containers", "initContainers"):
        for container in (tpl.get("spec") or {}).get(kind) or []:
            env = [e for e in container.get("env") or [] if e.get("name") not in env_names]
            if env:
                container["env"] = env
            else:
                container.pop("env", None)
    return tpl


def template_revision(template: JSON) -> str:
    """The revision id of a pod template: a hash of it without the controller's marks."""
    payload = json.dumps(strip_marks(template), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:REVISION_LENGTH]


def spec_hash(canary: CanarySpec) -> str:
    """A hash of ``spec.canary``: a new value is a new intent (a new rollout)."""
    payload = json.dumps(canary.model_dump(by_alias=True, mode="json", exclude_none=True),
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def _set_env(container: JSON, name: str, value: str) -> None:
    env = container.setdefault("env", [])
    for i, item in enumerate(env):
        if item.get("name") == name:
            env[i] = {"name": name, "value": value}
            return
    env.append({"name": name, "value": value})


def apply_canary(stable: JSON, canary: CanarySpec) -> JSON:
    """The stable template with ``spec.canary`` applied (no marks)."""
    tpl = strip_marks(stable)
    containers = _containers(tpl)
    if not containers:
        raise TemplateError("the target's pod template has no containers")
    names = [c.get("name") for c in containers]
    if canary.container is not None and canary.container not in names:
        raise TemplateError(f"spec.canary.container {canary.container!r} is not a container "
                            f"of the target (has: {', '.join(map(str, names))})")
    chosen = containers[names.index(canary.container) if canary.container else 0]
    if canary.image:
        chosen["image"] = canary.image
    for env in canary.env:
        _set_env(chosen, env.name, env.value)
    meta = tpl.setdefault("metadata", {})
    if canary.pod_labels:
        meta.setdefault("labels", {}).update(canary.pod_labels)
    if canary.pod_annotations:
        meta.setdefault("annotations", {}).update(canary.pod_annotations)
    return tpl


def mark(template: JSON, *, cohort_label: str, cohort_env: str, revision: str) -> JSON:
    """``template`` with the cohort and revision marks (label, env in every container)."""
    tpl = copy.deepcopy(template)
    labels = tpl.setdefault("metadata", {}).setdefault("labels", {})
    labels[COHORT_LABEL] = cohort_label
    labels[REVISION_LABEL] = revision
    for container in (tpl.setdefault("spec", {})).get("containers") or []:
        _set_env(container, COHORT_ENV, cohort_env)
        _set_env(container, REVISION_ENV, revision)
    return tpl


def canary_template(stable: JSON, canary: CanarySpec) -> tuple[JSON, str]:
    """The marked canary template and its revision id; ``TemplateError`` when
    ``spec.canary`` does not fit the target."""
    changed = apply_canary(stable, canary)
    revision = template_revision(changed)
    return mark(changed, cohort_label=CANARY_COHORT, cohort_env=CANARY_COHORT,
                revision=revision), revision


def holdback_template(stable: JSON) -> tuple[JSON, str]:
    """The marked holdback template (the previous version, as the bake's baseline)."""
    revision = template_revision(stable)
    return mark(strip_marks(stable), cohort_label=HOLDBACK, cohort_env=BASELINE_COHORT,
                revision=revision), revision


def promoted_template(canary: JSON) -> JSON:
    """What the target runs after promotion: the canary's template without the cohort
    marks, keeping the revision label and env."""
    return strip_marks(canary, keep_revision=True)


def revision_of(template: JSON) -> str | None:
    """The revision label a marked template carries (None for an unmarked one)."""
    labels = (template.get("metadata") or {}).get("labels") or {}
    value = labels.get(REVISION_LABEL)
    return str(value) if value else None


# --------------------------------------------------------------------------- describing a change

MAX_CHANGES = 6


def describe_change(old: JSON, new: JSON) -> str:
    """A short human description of how a pod template changed (names, not env values)."""
    old, new = strip_marks(old), strip_marks(new)
    notes: list[str] = []
    for kind in ("labels", "annotations"):
        notes += _map_changes(f"pod {kind[:-1]}", _meta(old, kind), _meta(new, kind))
    old_c = {str(c.get("name")): c for c in _containers(old)}
    new_c = {str(c.get("name")): c for c in _containers(new)}
    notes += [f"container {n} added" for n in new_c if n not in old_c]
    notes += [f"container {n} removed" for n in old_c if n not in new_c]
    for name in (n for n in new_c if n in old_c):
        notes += _container_changes(name, old_c[name], new_c[name])
    rest_old = {k: v for k, v in (old.get("spec") or {}).items() if k != "containers"}
    rest_new = {k: v for k, v in (new.get("spec") or {}).items() if k != "containers"}
    notes += [f"spec.{k} changed" for k in sorted(set(rest_old) | set(rest_new))
              if rest_old.get(k) != rest_new.get(k)]
    if not notes:
        return "pod template changed"
    more = len(notes) - MAX_CHANGES
    text = "; ".join(notes[:MAX_CHANGES])
    return text + (f"; and {more} more" if more > 0 else "")


def _meta(tpl: JSON, kind: str) -> dict[str, Any]:
    return dict((tpl.get("metadata") or {}).get(kind) or {})


def _map_changes(what: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    notes = [f"{what} {k} added" for k in sorted(new) if k not in old]
    notes += [f"{what} {k} removed" for k in sorted(old) if k not in new]
    notes += [f"{what} {k} changed" for k in sorted(new) if k in old and old[k] != new[k]]
    return notes


def _container_changes(name: str, old: JSON, new: JSON) -> list[str]:
    notes: list[str] = []
    if old.get("image") != new.get("image"):
        notes.append(f"container {name} image {old.get('image')} -> {new.get('image')}")
    old_env = {str(e.get("name")): e for e in old.get("env") or []}
    new_env = {str(e.get("name")): e for e in new.get("env") or []}
    notes += _map_changes(f"container {name} env", old_env, new_env)
    for key in sorted((set(old) | set(new)) - {"image", "env", "name"}):
        if old.get(key) != new.get(key):
            notes.append(f"container {name} {key} changed")
    return notes
