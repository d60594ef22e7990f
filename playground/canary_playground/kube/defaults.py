"""Defaulting, as the API server applies it before validation (and shows it on read).

Deployments: replicas 1, strategy RollingUpdate with 25%/25%, revisionHistoryLimit 10,
progressDeadlineSeconds 600. Pod templates and pods: restartPolicy, dnsPolicy,
schedulerName, terminationGracePeriodSeconds, securityContext, and per container
terminationMessagePath/Policy, imagePullPolicy (Always for ``:latest`` or no tag),
resources and port protocols. Services: type, sessionAffinity, port protocol/targetPort
and an allocated clusterIP. Secrets: ``stringData`` folded into base64 ``data``. HPAs:
minReplicas 1 and the default CPU metric. ReplicaSets: replicas 1.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from typing import Any

from .errors import JSON, ApiError


def _image_pull_policy(image: str) -> str:
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def container(c: Any) -> None:
    if not isinstance(c, dict):
        return
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    if isinstance(c.get("image"), str):
        c.setdefault("imagePullPolicy", _image_pull_policy(c["image"]))
    c.setdefault("resources", {})
    for port in c.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")


def pod_spec(spec: Any) -> None:
    if not isinstance(spec, dict):
        return
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("securityContext", {})
    for key in ("containers", "initContainers"):
        for c in spec.get(key) or []:
            container(c)


def deployment(obj: JSON) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    spec.setdefault("replicas", 1)
    strategy = spec.setdefault("strategy", {})
    if isinstance(strategy, dict):
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            rolling = strategy.setdefault("rollingUpdate", {})
            if isinstance(rolling, dict):
                rolling.setdefault("maxUnavailable", "25%")
                rolling.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    pod_spec((spec.get("template") or {}).get("spec"))


def replicaset(obj: JSON) -> None:
    spec = obj.get("spec")
    if isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        pod_spec((spec.get("template") or {}).get("spec"))


def pod(obj: JSON) -> None:
    spec = obj.get("spec")
    pod_spec(spec)
    if isinstance(spec, dict):
        spec.setdefault("serviceAccountName", "default")
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("priority", 0)
        tolerations = spec.setdefault("tolerations", [])
        for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
            if isinstance(tolerations, list) and not any(
                    isinstance(t, dict) and t.get("key") == key for t in tolerations):
                tolerations.append({"key": key, "operator": "Exists", "effect": "NoExecute",
                                    "tolerationSeconds": 300})


def service(obj: JSON) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    kind = spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if kind != "ExternalName":
        uid = str((obj.get("metadata") or {}).get("uid", ""))
        digest = hashlib.sha256(uid.encode()).digest()
        if not spec.get("clusterIP"):
            spec["clusterIP"] = f"10.96.{digest[0]}.{max(1, digest[1])}"
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
    for port in spec.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
            if "port" in port:
                port.setdefault("targetPort", port["port"])


def secret(obj: JSON) -> None:
    string_data = obj.pop("stringData", None) or {}
    data = obj.setdefault("data", {})
    if not isinstance(data, dict) or not isinstance(string_data, dict):
        raise ApiError(400, "BadRequest", "Secret in version \"v1\" cannot be handled as a "
                       "Secret: data and stringData must be maps")
    for key, value in data.items():
        try:
            base64.b64decode(str(value), validate=True)
        except ValueError as exc:
            raise ApiError(400, "BadRequest", f"Secret in version \"v1\" cannot be handled as "
                           f"a Secret: illegal base64 data in data[{key}]") from exc
    for k, v in string_data.items():
        data[k] = base64.b64encode(str(v).encode()).decode()
    obj.setdefault("type", "Opaque")


def hpa(obj: JSON) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    spec.setdefault("minReplicas", 1)
    if not spec.get("metrics"):
        spec["metrics"] = [{"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]


def namespace(obj: JSON) -> None:
    name = (obj.get("metadata") or {}).get("name")
    if name:
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name
    obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])


KIND_DEFAULTS: dict[str, Callable[[JSON], None]] = {
    "Deployment": deployment, "ReplicaSet": replicaset, "Pod": pod, "Service": service,
    "Secret": secret, "HorizontalPodAutoscaler": hpa, "Namespace": namespace,
}


def apply(kind: str, obj: JSON) -> None:
    rule = KIND_DEFAULTS.get(kind)
    if rule is not None:
        rule(obj)


def initial_status(kind: str) -> JSON | None:
    """The status a new object starts with (set by the API server on create)."""
    if kind == "Pod":
        return {"phase": "Pending", "qosClass": "BestEffort"}
    if kind == "Namespace":
        return {"phase": "Active"}
    if kind == "Deployment":
        return {}
    if kind == "ReplicaSet":  # its status.replicas is not omitempty
        return {"replicas": 0}
    if kind == "HorizontalPodAutoscaler":  # nor is an HPA's status.desiredReplicas
        return {"desiredReplicas": 0}
    return None
