"""The Helm chart's RBAC in the emulator: the controller runs under exactly what it grants.

:func:`load_chart_rbac` renders ``charts/llm-canary`` with a real Helm (``helm_python``),
creates its ServiceAccount, Roles, ClusterRoles and bindings (and the release namespace)
through the API as the admin, issues a token for the controller's ServiceAccount and
writes a kubeconfig for it, then makes all that the emulator's reset baseline.
"""

from __future__ import annotations

import urllib.error
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import JSON

if TYPE_CHECKING:
    from .handle import EmulatorHandle

CHART = Path(__file__).resolve().parents[3] / "charts" / "llm-canary"
RELEASE = NAMESPACE = "llm-canary"
RBAC = "/apis/rbac.authorization.k8s.io/v1"
COLLECTIONS = {
    "Namespace": "/api/v1/namespaces",
    "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
    "Role": RBAC + "/namespaces/{ns}/roles",
    "RoleBinding": RBAC + "/namespaces/{ns}/rolebindings",
    "ClusterRole": RBAC + "/clusterroles",
    "ClusterRoleBinding": RBAC + "/clusterrolebindings",
}
WEEK = 7 * 24 * 3600.0
LOCAL_IMAGE = "localhost/llm-canary"


@dataclass
class ChartIdentity:
    """Who the controller is under the chart's RBAC, and how to connect as it."""

    release: str
    namespace: str
    service_account: str
    token: str
    kubeconfig: str
    lease_name: str
    objects: list[JSON] = field(default_factory=list)

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


def render_chart(values: JSON | None = None, *, release: str = RELEASE,
                 namespace: str = NAMESPACE) -> list[JSON]:
    """Every object the chart renders (NOTES.txt left out). The chart requires
    ``image.repository`` (no image is published); the emulator only uses its RBAC, so the
    local name ``scripts/build-image`` gives stands in unless ``values`` sets one."""
    import helm_python
    import yaml

    values = dict(values or {})
    values["image"] = {"repository": LOCAL_IMAGE, **(values.get("image") or {})}
    with helm_python.Chart.load(CHART) as chart:
        rendered = chart.render(values, name=release, namespace=namespace)
    docs: list[JSON] = []
    for path, text in sorted(rendered.items()):
        if not path.endswith("NOTES.txt"):
            docs += [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
    return docs


def _lease_name(docs: list[JSON]) -> str:
    for doc in docs:
        for rule in doc.get("rules") or []:
            if "leases" in (rule.get("resources") or []) and rule.get("resourceNames"):
                return str(rule["resourceNames"][0])
    return f"{RELEASE}-leader"


def _create(handle: EmulatorHandle, doc: JSON) -> None:
    ns = (doc.get("metadata") or {}).get("namespace", "")
    path = COLLECTIONS[doc["kind"]].format(ns=ns)
    try:
        handle.api("POST", path, doc)
    except urllib.error.HTTPError as exc:
        if exc.code != 409:
            raise
        current = handle.api("GET", f"{path}/{doc['metadata']['name']}")
        doc = {**doc, "metadata": {**doc["metadata"],
                                   "resourceVersion": current["metadata"]["resourceVersion"]}}
        handle.api("PUT", f"{path}/{doc['metadata']['name']}", doc)


def load_chart_rbac(handle: EmulatorHandle, directory: Path, *, values: JSON | None = None,
                    release: str = RELEASE, namespace: str = NAMESPACE,
                    token_seconds: float = WEEK) -> ChartIdentity:
    docs = [d for d in render_chart(values, release=release, namespace=namespace)
            if d.get("kind") in COLLECTIONS]
    _create(handle, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    for doc in docs:
        _create(handle, doc)
    account = next((d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"),
                   "default")
    token = handle.issue_token(f"{namespace}/{account}", expiration_seconds=token_seconds)
    kubeconfig = Path(directory) / "controller.kubeconfig"
    handle.kubeconfig_for(token, kubeconfig, namespace=namespace)
    handle.baseline()
    return ChartIdentity(release, namespace, account, token, str(kubeconfig),
                         _lease_name(docs), docs)
