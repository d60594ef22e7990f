"""Validation of objects on create and update, per kind, with kube-apiserver's field paths.

Every kind: name syntax, labels and annotations. Deployments and ReplicaSets: replicas,
selector (non-empty, matching the template labels, immutable), strategy and rolling-update
bounds, history/deadline fields, containers. Pods: containers. Services: ports.
ConfigMaps/Secrets: data keys. HPAs: replica bounds and target. RBAC: rules, roleRef
(immutable) and subjects. Errors are :class:`FieldError` lists; the store answers 422.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import names
from .errors import (
    JSON,
    FieldError,
    duplicate,
    forbidden_field,
    invalid_value,
    not_supported,
    required,
)
from .resources import Resource
from .rollout import int_or_percent, scaled_value
from .selectors import selector_matches

Errors = list[FieldError]


def metadata_errors(res: Resource, obj: JSON) -> Errors:
    meta = obj.get("metadata") or {}
    name = meta.get("name") or ""
    if not name:
        errs = [required("metadata.name", "name or generateName is required")]
    else:
        errs = names.name_errors(res.name_rule, name)
    errs += names.label_errors(meta.get("labels"), "metadata.labels")
    errs += names.annotation_errors(meta.get("annotations"), "metadata.annotations")
    for i, ref in enumerate(meta.get("ownerReferences") or []):
        for key in ("apiVersion", "kind", "name", "uid"):
            if not isinstance(ref, dict) or not ref.get(key):
                errs.append(required(f"metadata.ownerReferences[{i}].{key}"))
    controllers = [r for r in meta.get("ownerReferences") or []
                   if isinstance(r, dict) and r.get("controller")]
    if len(controllers) > 1:
        errs.append(invalid_value("metadata.ownerReferences", controllers,
                                  "Only one reference can have Controller set to true"))
    return errs


def _nonnegative(spec: JSON, key: str, path: str) -> Errors:
    value = spec.get(key)
    if value is None:
        return []
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        return [invalid_value(f"{path}.{key}", value, "must be greater than or equal to 0")]
    return []


def containers_errors(pod_spec: Any, path: str) -> Errors:
    if not isinstance(pod_spec, dict):
        return [required(path)]
    containers = pod_spec.get("containers")
    if not containers or not isinstance(containers, list):
        return [required(f"{path}.containers")]
    errs: Errors = []
    seen: set[str] = set()
    for i, c in enumerate(containers):
        where = f"{path}.containers[{i}]"
        if not isinstance(c, dict):
            errs.append(invalid_value(where, c, "must be an object"))
            continue
        name = c.get("name")
        if not name:
            errs.append(required(f"{where}.name"))
        else:
            errs += names.name_errors("label", str(name), f"{where}.name")
            if name in seen:
                errs.append(duplicate(f"{where}.name", name))
            seen.add(str(name))
        if not c.get("image"):
            errs.append(required(f"{where}.image"))
    return errs


def _selector_errors(spec: JSON, path: str, kind: str) -> tuple[Errors, JSON | None]:
    selector = spec.get("selector")
    if selector is None:
        return [required(f"{path}.selector")], None
    if not isinstance(selector, dict):
        return [invalid_value(f"{path}.selector", selector, "must be a LabelSelector")], None
    if not (selector.get("matchLabels") or selector.get("matchExpressions")):
        return [invalid_value(f"{path}.selector", selector,
                              f"empty selector is invalid for {kind}")], None
    errs = names.label_errors(selector.get("matchLabels"), f"{path}.selector.matchLabels")
    for i, expr in enumerate(selector.get("matchExpressions") or []):
        op = (expr or {}).get("operator")
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            errs.append(not_supported(f"{path}.selector.matchExpressions[{i}].operator", op,
                                      ["In", "NotIn", "Exists", "DoesNotExist"]))
    return errs, selector


def _template_errors(spec: JSON, selector: JSON | None, path: str) -> Errors:
    template = spec.get("template")
    if not isinstance(template, dict):
        return [required(f"{path}.template")]
    labels = (template.get("metadata") or {}).get("labels") or {}
    errs = names.label_errors(labels, f"{path}.template.metadata.labels")
    if selector is not None and not selector_matches(selector, labels):
        errs.append(invalid_value(f"{path}.template.metadata.labels", labels,
                                  "`selector` does not match template `labels`"))
    pod_spec = template.get("spec")
    errs += containers_errors(pod_spec, f"{path}.template.spec")
    policy = (pod_spec or {}).get("restartPolicy", "Always") if isinstance(pod_spec, dict) \
        else "Always"
    if policy != "Always":
        errs.append(not_supported(f"{path}.template.spec.restartPolicy", policy, ["Always"]))
    return errs


def replicated_errors(obj: JSON, kind: str) -> Errors:
    """What Deployments and ReplicaSets share: replicas, selector, template."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [required("spec")]
    errs = _nonnegative(spec, "replicas", "spec") + _nonnegative(spec, "minReadySeconds", "spec")
    selector_errs, selector = _selector_errors(spec, "spec", kind)
    return errs + selector_errs + _template_errors(spec, selector, "spec")


def _rolling_value_errors(rolling: JSON, key: str, path: str) -> Errors:
    value = rolling.get(key)
    if value is None:
        return []
    parsed = int_or_percent(value)
    if parsed is None:
        return [invalid_value(f"{path}.{key}", value, names.regex_error(
            "a valid percent string must be a numeric string followed by an ending '%'",
            "[0-9]+%", "1%", "93%"))]
    if parsed[0] < 0:
        return [invalid_value(f"{path}.{key}", value, "must be greater than or equal to 0")]
    if key == "maxUnavailable" and parsed[1] and parsed[0] > 100:
        return [invalid_value(f"{path}.{key}", value, "must not be greater than 100%")]
    return []


def strategy_errors(spec: JSON) -> Errors:
    strategy = spec.get("strategy") or {}
    kind = strategy.get("type", "RollingUpdate")
    if kind not in ("Recreate", "RollingUpdate"):
        return [not_supported("spec.strategy.type", kind, ["Recreate", "RollingUpdate"])]
    rolling = strategy.get("rollingUpdate")
    if kind == "Recreate":
        if rolling is not None:
            return [forbidden_field("spec.strategy.rollingUpdate",
                                    "may not be specified when strategy `type` is 'Recreate'")]
        return []
    path = "spec.strategy.rollingUpdate"
    rolling = rolling or {}
    errs = _rolling_value_errors(rolling, "maxUnavailable", path) + \
        _rolling_value_errors(rolling, "maxSurge", path)
    if not errs:
        total = 100
        surge = scaled_value(rolling.get("maxSurge", "25%"), total, True)
        unavailable = scaled_value(rolling.get("maxUnavailable", "25%"), total, False)
        if surge == 0 and unavailable == 0:
            errs.append(invalid_value(f"{path}.maxUnavailable", rolling.get("maxUnavailable"),
                                      "may not be 0 when `maxSurge` is 0"))
    return errs


def deployment_errors(obj: JSON, old: JSON | None) -> Errors:
    errs = replicated_errors(obj, "deployment")
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return errs
    errs += strategy_errors(spec)
    errs += _nonnegative(spec, "revisionHistoryLimit", "spec")
    errs += _nonnegative(spec, "progressDeadlineSeconds", "spec")
    deadline, ready = spec.get("progressDeadlineSeconds"), spec.get("minReadySeconds") or 0
    if isinstance(deadline, int) and isinstance(ready, int) and deadline <= ready:
        errs.append(invalid_value("spec.progressDeadlineSeconds", deadline,
                                  "must be greater than minReadySeconds"))
    return errs + _immutable_selector(obj, old)


def replicaset_errors(obj: JSON, old: JSON | None) -> Errors:
    return replicated_errors(obj, "replicaset") + _immutable_selector(obj, old)


def _immutable_selector(obj: JSON, old: JSON | None) -> Errors:
    if old is None:
        return []
    new_sel = (obj.get("spec") or {}).get("selector")
    if (old.get("spec") or {}).get("selector") != new_sel:
        return [invalid_value("spec.selector", new_sel, "field is immutable")]
    return []


def pod_errors(obj: JSON, old: JSON | None) -> Errors:
    return containers_errors(obj.get("spec"), "spec")


def service_errors(obj: JSON, old: JSON | None) -> Errors:
    errs: Errors = []
    spec = obj.get("spec") or {}
    kind = spec.get("type", "ClusterIP")
    valid = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]
    if kind not in valid:
        errs.append(not_supported("spec.type", kind, valid))
    for i, port in enumerate(spec.get("ports") or []):
        number = (port or {}).get("port")
        if not isinstance(number, int) or not 1 <= number <= 65535:
            errs.append(invalid_value(f"spec.ports[{i}].port", number,
                                      "must be between 1 and 65535, inclusive"))
    if old is not None:
        old_ip = (old.get("spec") or {}).get("clusterIP")
        if spec.get("clusterIP") not in (None, "", old_ip):
            errs.append(invalid_value("spec.clusterIP", spec.get("clusterIP"),
                                      "field is immutable"))
    return errs


def data_key_errors(obj: JSON, old: JSON | None) -> Errors:
    errs: Errors = []
    for field in ("data", "binaryData"):
        for key in (obj.get(field) or {}):
            errs += [invalid_value(f"{field}[{key}]", key, m) for m in names.config_key(key)]
    if old is not None and old.get("immutable") and \
            any(old.get(f) != obj.get(f) for f in ("data", "binaryData")):
        errs.append(forbidden_field("data", "field is immutable when `immutable` is set"))
    return errs


def hpa_errors(obj: JSON, old: JSON | None) -> Errors:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [required("spec")]
    errs: Errors = []
    ref = spec.get("scaleTargetRef") or {}
    for key in ("kind", "name"):
        if not ref.get(key):
            errs.append(required(f"spec.scaleTargetRef.{key}"))
    low, high = spec.get("minReplicas", 1), spec.get("maxReplicas")
    if not isinstance(low, int) or low < 1:
        errs.append(invalid_value("spec.minReplicas", low, "must be greater than or equal to 1"))
    if not isinstance(high, int):
        errs.append(required("spec.maxReplicas"))
    elif high < 1 or (isinstance(low, int) and high < low):
        errs.append(invalid_value("spec.maxReplicas", high,
                                  "must be greater than or equal to `minReplicas`"))
    return errs


VERBS_NOTE = "verbs must contain at least one value"


def role_errors(obj: JSON, old: JSON | None) -> Errors:
    errs: Errors = []
    for i, rule in enumerate(obj.get("rules") or []):
        if not (rule or {}).get("verbs"):
            errs.append(required(f"rules[{i}].verbs", VERBS_NOTE))
        if not rule.get("nonResourceURLs") and not rule.get("resources"):
            errs.append(required(f"rules[{i}].resources",
                                 "resource rules must supply at least one resource"))
        if not rule.get("nonResourceURLs") and rule.get("apiGroups") is None:
            errs.append(required(f"rules[{i}].apiGroups",
                                 "resource rules must supply at least one api group"))
    return errs


def binding_errors(obj: JSON, old: JSON | None) -> Errors:
    errs: Errors = []
    ref = obj.get("roleRef") or {}
    kinds = ["ClusterRole"] if obj.get("kind") == "ClusterRoleBinding" else \
        ["ClusterRole", "Role"]
    if ref.get("kind") not in kinds:
        errs.append(not_supported("roleRef.kind", ref.get("kind"), kinds))
    if not ref.get("name"):
        errs.append(required("roleRef.name"))
    if ref.get("apiGroup") != "rbac.authorization.k8s.io":
        errs.append(not_supported("roleRef.apiGroup", ref.get("apiGroup"),
                                  ["rbac.authorization.k8s.io"]))
    for i, subject in enumerate(obj.get("subjects") or []):
        kind = (subject or {}).get("kind")
        if kind not in ("ServiceAccount", "User", "Group"):
            errs.append(not_supported(f"subjects[{i}].kind", kind,
                                      ["Group", "ServiceAccount", "User"]))
        if not subject.get("name"):
            errs.append(required(f"subjects[{i}].name"))
        if kind == "ServiceAccount" and not subject.get("namespace"):
            errs.append(required(f"subjects[{i}].namespace"))
    if old is not None and old.get("roleRef") != obj.get("roleRef"):
        errs.append(invalid_value("roleRef", obj.get("roleRef"), "cannot change roleRef"))
    return errs


KIND_RULES: dict[str, Callable[[JSON, JSON | None], Errors]] = {
    "Deployment": deployment_errors, "ReplicaSet": replicaset_errors, "Pod": pod_errors,
    "Service": service_errors, "ConfigMap": data_key_errors, "Secret": data_key_errors,
    "HorizontalPodAutoscaler": hpa_errors, "Role": role_errors, "ClusterRole": role_errors,
    "RoleBinding": binding_errors, "ClusterRoleBinding": binding_errors,
}


def validate(res: Resource, obj: JSON, old: JSON | None) -> Errors:
    """Every error of ``obj`` (``old``: the stored version on update)."""
    errs = metadata_errors(res, obj)
    rule = KIND_RULES.get(res.kind) if not res.custom else None
    if rule is not None:
        errs += rule(obj, old)
    return errs
