"""Helpers shared by the emulator's tests: manifests, errors, watching pods."""

from __future__ import annotations

import json
import uuid
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException


def new_ns() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def error_of(exc: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.body)
    return body


def deployment(name: str = "web", replicas: int = 2, image: str = "app:1", *,
               strategy: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "app", "image": image}]}},
                 **spec},
    }
    if strategy is not None:
        body["spec"]["strategy"] = strategy
    return body


def set_image(apps: client.AppsV1Api, ns: str, name: str, image: str) -> None:
    apps.patch_namespaced_deployment(name, ns, [
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": image}])


def condition(dep: client.V1Deployment, kind: str) -> client.V1DeploymentCondition | None:
    return next((c for c in (dep.status.conditions or []) if c.type == kind), None)


def rolled_out(apps: client.AppsV1Api, ns: str, name: str) -> bool:
    """What ``kubectl rollout status`` waits for."""
    d = apps.read_namespaced_deployment(name, ns)
    st, want = d.status, d.spec.replicas
    return bool((st.observed_generation or 0) >= d.metadata.generation
                and (st.updated_replicas or 0) == want and (st.replicas or 0) == want
                and (st.available_replicas or 0) == want)


class PodHistory:
    """The pods of a namespace after every change since it was created: replays the watch
    from a resourceVersion taken before a rollout, so a rollout is checked pod by pod (the
    store applies one change at a time; these are exactly the states it went through)."""

    def __init__(self, core: client.CoreV1Api, ns: str) -> None:
        self.core, self.ns = core, ns
        listed = core.list_namespaced_pod(ns)
        self.start = {p.metadata.name: p for p in listed.items}
        self.rv = listed.metadata.resource_version

    def states(self) -> list[tuple[int, int, dict[str, int]]]:
        """``(pods, ready pods, pods per pod-template-hash)`` after each event so far."""
        pods = dict(self.start)
        out = []
        for event in watch.Watch().stream(self.core.list_namespaced_pod, self.ns,
                                          resource_version=self.rv, timeout_seconds=1):
            pod = event["object"]
            if event["type"] == "DELETED":
                pods.pop(pod.metadata.name, None)
            else:
                pods[pod.metadata.name] = pod
            per_rs: dict[str, int] = {}
            for p in pods.values():
                key = (p.metadata.labels or {}).get("pod-template-hash", "")
                per_rs[key] = per_rs.get(key, 0) + 1
            ready = sum(1 for p in pods.values() if any(
                c.type == "Ready" and c.status == "True"
                for c in ((p.status.conditions or []) if p.status else [])))
            out.append((len(pods), ready, per_rs))
        return out
