"""Authorization from stored RBAC objects, and the OwnerReferencesPermissionEnforcement
admission plugin.

A request is allowed when a rule of a Role bound by a RoleBinding in the request's
namespace, or of a ClusterRole bound by a RoleBinding there or by a ClusterRoleBinding,
matches it: verb (``*`` matches all), API group, resource (``deployments``,
``deployments/scale``, ``*``, ``*/scale``), and ``resourceNames`` when the rule has them
(a request without a name - list, watch, create - never matches a rule with names).
Subjects are Users, Groups and ServiceAccounts. ``system:masters`` is always allowed;
every authenticated user may read discovery and create SelfSubjectAccessReviews, as the
bootstrap ``system:discovery`` / ``system:basic-user`` roles allow. No aggregation and no
escalation checks. Denials are 403 with kube-apiserver's message.

Admission: changing ``ownerReferences`` on an update needs ``delete`` on the object, and
setting ``blockOwnerDeletion: true`` on a reference needs ``update`` on the owner's
``<resource>/finalizers``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .auth import Identity
from .errors import JSON, ApiError, forbidden, invalid, required
from .objects import meta
from .resources import Registry, Resource
from .storage import Store

DISCOVERY_PATHS = ("/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/readyz",
                   "/version", "/version/", "/openapi", "/openapi/*")
SELF_REVIEWS = ("selfsubjectaccessreviews", "selfsubjectrulesreviews", "selfsubjectreviews")


@dataclass(frozen=True)
class Attributes:
    user: Identity
    verb: str
    namespace: str = ""
    group: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    path: str = ""
    resource_request: bool = True

    def describe(self) -> str:
        """``User "u" cannot patch resource "deployments/scale" in API group "apps" ...``."""
        user = self.user.username
        if not self.resource_request:
            return f'User "{user}" cannot {self.verb} path "{self.path}"'
        what = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        where = f'in the namespace "{self.namespace}"' if self.namespace else \
            "at the cluster scope"
        return f'User "{user}" cannot {self.verb} resource "{what}" in API group ' \
               f'"{self.group}" {where}'


def _path_matches(rule_path: str, path: str) -> bool:
    if rule_path == "*" or rule_path == path:
        return True
    return rule_path.endswith("*") and path.startswith(rule_path[:-1])


def rule_allows(rule: JSON, a: Attributes) -> bool:
    verbs = rule.get("verbs") or []
    if "*" not in verbs and a.verb not in verbs:
        return False
    if not a.resource_request:
        return any(_path_matches(p, a.path) for p in rule.get("nonResourceURLs") or [])
    groups = rule.get("apiGroups") or []
    if "*" not in groups and a.group not in groups:
        return False
    combined = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
    resources = rule.get("resources") or []
    if not any(r == "*" or r == combined or (a.subresource and r == f"*/{a.subresource}")
               for r in resources):
        return False
    names = rule.get("resourceNames") or []
    return not names or (bool(a.name) and a.name in names)


def _subject_matches(subject: JSON, user: Identity) -> bool:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "User":
        return name == user.username
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        return f"system:serviceaccount:{subject.get('namespace')}:{name}" == user.username
    return False


class Authorizer:
    def __init__(self, store: Store, registry: Registry, *, enforce: bool) -> None:
        self.store, self.registry, self.enforce = store, registry, enforce
        get = registry.get
        self.roles = get("rbac.authorization.k8s.io", "roles")
        self.cluster_roles = get("rbac.authorization.k8s.io", "clusterroles")
        self.bindings = get("rbac.authorization.k8s.io", "rolebindings")
        self.cluster_bindings = get("rbac.authorization.k8s.io", "clusterrolebindings")

    def _role_rules(self, ref: JSON, ns: str) -> list[JSON]:
        if ref.get("kind") == "ClusterRole":
            role = self.store.find(self.cluster_roles, "", str(ref.get("name")))
        else:
            role = self.store.find(self.roles, ns, str(ref.get("name")))
        return list((role or {}).get("rules") or [])

    def rules_for(self, user: Identity, ns: str) -> list[JSON]:
        rules: list[JSON] = []
        for binding in self.store.items(self.cluster_bindings):
            if any(_subject_matches(s, user) for s in binding.get("subjects") or []):
                rules += self._role_rules(binding.get("roleRef") or {}, "")
        if ns:
            for binding in self.store.items(self.bindings, ns):
                if any(_subject_matches(s, user) for s in binding.get("subjects") or []):
                    rules += self._role_rules(binding.get("roleRef") or {}, ns)
        return rules

    def allowed(self, a: Attributes) -> bool:
        if not self.enforce or a.user.admin:
            return True
        authenticated = "system:authenticated" in a.user.groups
        if authenticated and not a.resource_request and a.verb == "get" and \
                any(_path_matches(p, a.path) for p in DISCOVERY_PATHS):
            return True
        if authenticated and a.resource in SELF_REVIEWS and a.verb == "create":
            return True
        return any(rule_allows(r, a) for r in self.rules_for(a.user, a.namespace))

    def check(self, a: Attributes) -> None:
        """403 unless ``a`` is allowed."""
        if not self.allowed(a):
            if not a.resource_request:
                raise ApiError(403, "Forbidden", f"forbidden: {a.describe()}",
                               details={"kind": ""})
            raise forbidden(a.resource, a.group, a.name, a.describe())

    # -- admission -----------------------------------------------------------------------

    def admit_owner_references(self, user: Identity, res: Resource, new: JSON,
                               old: JSON | None) -> None:
        """OwnerReferencesPermissionEnforcement for a create (``old`` None) or update."""
        if not self.enforce or user.admin:
            return
        new_refs = meta(new).get("ownerReferences") or []
        old_refs = (meta(old).get("ownerReferences") or []) if old is not None else []
        if new_refs == old_refs:
            return
        ns = meta(new).get("namespace", "") if res.namespaced else ""
        name = meta(new).get("name", "")
        if old is not None and not self.allowed(Attributes(
                user, "delete", ns, res.group, res.plural, "", name)):
            raise forbidden(res.plural, res.group, name, "cannot set an ownerRef on a resource "
                            "you can't delete: , <nil>")
        blocking_before = {r.get("uid") for r in old_refs if r.get("blockOwnerDeletion")}
        added = [r for r in new_refs if r.get("blockOwnerDeletion")
                 and r.get("uid") not in blocking_before]
        if not added or self.allowed(Attributes(user, "update", "", "*", "*", "finalizers",
                                                "*")):
            return
        for ref in added:
            owner = self.registry.by_kind(str(ref.get("apiVersion", "")), str(ref.get("kind")))
            if owner is None:
                raise forbidden(res.plural, res.group, name, "cannot set blockOwnerDeletion in "
                                "this case because cannot find RESTMapping for APIVersion "
                                f"{ref.get('apiVersion')} Kind {ref.get('kind')}")
            attrs = Attributes(user, "update", ns if owner.namespaced else "", owner.group,
                               owner.plural, "finalizers", str(ref.get("name", "")))
            if not self.allowed(attrs):
                raise forbidden(res.plural, res.group, name, "cannot set blockOwnerDeletion if "
                                "an ownerReference refers to a resource you can't set "
                                "finalizers on: , <nil>")

    # -- access reviews ------------------------------------------------------------------

    def access_review(self, body: JSON, user: Identity | None) -> JSON:
        """SelfSubjectAccessReview (``user``: the caller) or SubjectAccessReview."""
        spec = body.get("spec") or {}
        if user is None:
            if not spec.get("user") and not spec.get("groups"):
                raise invalid("SubjectAccessReview", "authorization.k8s.io", "", [required(
                    "spec.user", "at least one of user or group must be specified")])
            user = Identity(str(spec.get("user") or ""), uid=str(spec.get("uid") or ""),
                            groups=tuple(spec.get("groups") or ()))
        res_attrs, path_attrs = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
        if res_attrs:
            a = Attributes(user, str(res_attrs.get("verb", "")),
                           str(res_attrs.get("namespace", "")), str(res_attrs.get("group", "")),
                           str(res_attrs.get("resource", "")),
                           str(res_attrs.get("subresource", "")), str(res_attrs.get("name", "")))
        else:
            path_attrs = path_attrs or {}
            a = Attributes(user, str(path_attrs.get("verb", "")),
                           path=str(path_attrs.get("path", "")), resource_request=False)
        allowed = self.allowed(a)
        status: JSON = {"allowed": allowed}
        if allowed and user.admin:
            status["reason"] = "system:masters"
        return {"kind": body.get("kind"), "apiVersion": "authorization.k8s.io/v1",
                "metadata": {"creationTimestamp": None}, "spec": spec, "status": status}
