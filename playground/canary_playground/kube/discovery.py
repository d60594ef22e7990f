"""Discovery, so ``kubectl`` and client-go find their way: ``/api``, ``/apis``, the
resource lists of every group version (verbs, namespaced, short names, categories,
subresources), and a minimal OpenAPI v3 (one document per group version whose PATCH
operations name their kind and the ``fieldValidation`` parameter, which is what kubectl
checks before relying on server-side field validation).

Aggregated discovery (``apidiscovery.k8s.io/v2``) is not served: the answers are plain
``application/json`` and client-go falls back to these legacy documents by itself.
"""

from __future__ import annotations

import hashlib
import json

from .errors import JSON
from .resources import Registry, Resource

STATUS_VERBS = ["get", "patch", "update"]


def _entry(res: Resource) -> JSON:
    entry: JSON = {"name": res.plural, "singularName": res.singular, "namespaced": res.namespaced,
                   "kind": res.kind, "verbs": sorted(res.verbs)}
    if res.short_names:
        entry["shortNames"] = list(res.short_names)
    if res.categories:
        entry["categories"] = list(res.categories)
    entry["storageVersionHash"] = hashlib.sha256(res.key.encode()).hexdigest()[:11]
    return entry


def resource_list(registry: Registry, group: str, version: str) -> JSON | None:
    served = [r for r in registry.resources if r.group == group and r.version == version]
    if not served:
        return None
    items: list[JSON] = []
    for res in served:
        items.append(_entry(res))
        if res.status:
            items.append({"name": f"{res.plural}/status", "singularName": "",
                          "namespaced": res.namespaced, "kind": res.kind,
                          "verbs": STATUS_VERBS})
        if res.scale:
            items.append({"name": f"{res.plural}/scale", "singularName": "",
                          "namespaced": res.namespaced, "group": "autoscaling",
                          "version": "v1", "kind": "Scale", "verbs": STATUS_VERBS})
        if res.kind == "ServiceAccount":
            items.append({"name": "serviceaccounts/token", "singularName": "",
                          "namespaced": True, "group": "authentication.k8s.io", "version": "v1",
                          "kind": "TokenRequest", "verbs": ["create"]})
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
            "resources": items}


def api_versions(server_address: str) -> JSON:
    return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
        {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def _group(name: str, versions: list[str]) -> JSON:
    listed = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": listed, "preferredVersion": listed[0]}


def group_list(registry: Registry) -> JSON:
    groups = [_group(g, vs) for g, vs in registry.groups().items() if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def group(registry: Registry, name: str) -> JSON | None:
    versions = registry.groups().get(name)
    if not name or not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name, versions)}


# --------------------------------------------------------------------------- OpenAPI v3


def _gv_path(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def openapi_root(registry: Registry) -> JSON:
    paths = {}
    for g, versions in registry.groups().items():
        for v in versions:
            path = _gv_path(g, v)
            digest = hashlib.sha256(path.encode()).hexdigest()[:32].upper()
            paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
    return {"paths": paths}


def openapi_group_version(registry: Registry, path: str) -> JSON | None:
    served = [r for r in registry.resources if _gv_path(r.group, r.version) == path]
    if not served:
        return None
    params = [{"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
              for n in ("dryRun", "fieldManager", "fieldValidation", "force")]
    paths: JSON = {}
    for res in served:
        gvk = {"group": res.group, "version": res.version, "kind": res.kind}
        scope = "/namespaces/{namespace}" if res.namespaced else ""
        content = ["application/json-patch+json", "application/merge-patch+json",
                   "application/apply-patch+yaml"]
        op = {"operationId": f"patch{res.kind}", "parameters": params,
              "requestBody": {"content": {c: {"schema": {"type": "object"}} for c in content}},
              "responses": {"200": {"description": "OK"}},
              "x-kubernetes-action": "patch", "x-kubernetes-group-version-kind": gvk}
        paths[f"/{path}{scope}/{res.plural}/{{name}}"] = {"patch": op}
        paths[f"/{path}{scope}/{res.plural}"] = {"post": {
            **op, "operationId": f"create{res.kind}", "x-kubernetes-action": "post"}}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.30.0"},
            "paths": paths, "components": {"schemas": {}}}


def openapi_bytes(doc: JSON) -> bytes:
    return json.dumps(doc).encode()
