"""The resources the emulator serves, with what discovery and the handlers need to know.

One :class:`Resource` per (group, version, plural). Custom resources come from CRD manifests
(the chart's CanaryRule CRD by default): names, short names, categories, scope,
subresources and printer columns are read from the CRD, as kube-apiserver does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import JSON

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
READ_VERBS = ("get", "list", "watch")
CREATE_ONLY = ("create",)


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    status: bool = False  # has a /status subresource
    scale: bool = False  # has a /scale subresource
    generation: str = ""  # "spec": spec changes bump it; "custom": all but metadata/status
    unconditional_update: bool = True  # PUT without resourceVersion allowed
    strategic: bool = True  # accepts strategic merge patches
    storage: str = ""  # objects live under another resource's key (events.k8s.io events)
    stored: bool = True  # False: a "virtual" resource answered on create (TokenReview)
    name_rule: str = "subdomain"  # subdomain | label | dns1035 | path
    printer_columns: tuple[Any, ...] = field(default=(), compare=False)
    custom: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def storage_key(self) -> str:
        return self.storage or self.key

    @property
    def singular(self) -> str:
        return self.kind.lower()


def _builtin() -> list[Resource]:
    r = Resource
    return [
        r("", "v1", "pods", "Pod", short_names=("po",), categories=("all",), status=True),
        r("", "v1", "services", "Service", short_names=("svc",), categories=("all",),
          status=True, name_rule="dns1035"),
        r("", "v1", "configmaps", "ConfigMap", short_names=("cm",)),
        r("", "v1", "secrets", "Secret"),
        r("", "v1", "serviceaccounts", "ServiceAccount", short_names=("sa",)),
        r("", "v1", "events", "Event", short_names=("ev",)),
        r("", "v1", "namespaces", "Namespace", namespaced=False, short_names=("ns",),
          status=True, name_rule="label",
          verbs=("create", "delete", "get", "list", "patch", "update", "watch")),
        r("apps", "v1", "deployments", "Deployment", short_names=("deploy",),
          categories=("all",), status=True, scale=True, generation="spec"),
        r("apps", "v1", "replicasets", "ReplicaSet", short_names=("rs",), categories=("all",),
          status=True, scale=True, generation="spec"),
        r("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler",
          short_names=("hpa",), categories=("all",), status=True, generation="spec"),
        r("coordination.k8s.io", "v1", "leases", "Lease"),
        r("events.k8s.io", "v1", "events", "Event", short_names=("ev",), storage="events"),
        r("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy",
          short_names=("netpol",), generation="spec"),
        r("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", short_names=("pdb",),
          status=True, generation="spec"),
        r("rbac.authorization.k8s.io", "v1", "roles", "Role", name_rule="path"),
        r("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", name_rule="path"),
        r("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False,
          name_rule="path"),
        r("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding",
          namespaced=False, name_rule="path"),
        r("authentication.k8s.io", "v1", "tokenreviews", "TokenReview", namespaced=False,
          verbs=CREATE_ONLY, stored=False),
        r("authorization.k8s.io", "v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview",
          namespaced=False, verbs=CREATE_ONLY, stored=False),
        r("authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview",
          namespaced=False, verbs=CREATE_ONLY, stored=False),
        r("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition",
          namespaced=False, short_names=("crd", "crds"), verbs=READ_VERBS),
    ]


def resource_from_crd(crd: JSON) -> Resource:
    """The served (storage) version of a CRD as a :class:`Resource`."""
    spec, names = crd["spec"], crd["spec"]["names"]
    version = next((v for v in spec["versions"] if v.get("storage")), spec["versions"][0])
    subresources = version.get("subresources") or {}
    return Resource(
        spec["group"], version["name"], names["plural"], names["kind"],
        namespaced=spec.get("scope", "Namespaced") == "Namespaced",
        short_names=tuple(names.get("shortNames") or ()),
        categories=tuple(names.get("categories") or ()),
        status="status" in subresources, scale="scale" in subresources,
        generation="custom", unconditional_update=False, strategic=False,
        printer_columns=tuple(version.get("additionalPrinterColumns") or ()), custom=True)


class Registry:
    """Every served resource, by URL path, by kind and by key."""

    def __init__(self, crds: list[JSON]) -> None:
        self.crds = crds
        self.resources = _builtin() + [resource_from_crd(c) for c in crds]
        self._by_path = {(r.group, r.version, r.plural): r for r in self.resources}
        self._by_key = {r.key: r for r in self.resources}
        self._by_kind: dict[tuple[str, str], Resource] = {}
        for r in self.resources:
            if not r.storage:  # the storage resource answers for its kind
                self._by_kind.setdefault((r.api_version, r.kind), r)
                self._by_kind.setdefault((r.group, r.kind), r)

    def by_path(self, group: str, version: str, plural: str) -> Resource | None:
        return self._by_path.get((group, version, plural))

    def by_key(self, key: str) -> Resource:
        return self._by_key[key]

    def by_kind(self, api_version: str, kind: str) -> Resource | None:
        """The resource of an ``apiVersion``/``kind`` pair (any served version of the group)."""
        found = self._by_kind.get((api_version, kind))
        if found is None:
            group = api_version.rpartition("/")[0]
            found = self._by_kind.get((group, kind))
        return found

    def get(self, group: str, plural: str) -> Resource:
        return next(r for r in self.resources if r.group == group and r.plural == plural)

    def groups(self) -> dict[str, list[str]]:
        """Group -> served versions (the core group is "")."""
        out: dict[str, list[str]] = {}
        for r in self.resources:
            versions = out.setdefault(r.group, [])
            if r.version not in versions:
                versions.append(r.version)
        return out


def load_crds(paths: list[Path]) -> list[JSON]:
    """CRD manifests from YAML files (missing files are skipped)."""
    import yaml

    crds: list[JSON] = []
    for path in paths:
        if path.exists():
            crds += [d for d in yaml.safe_load_all(path.read_text())
                     if isinstance(d, dict) and d.get("kind") == "CustomResourceDefinition"]
    return crds
