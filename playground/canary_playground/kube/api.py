"""The Kubernetes API proper: request attributes, authorization, and every verb on every
resource, independent of the HTTP transport (``http.py`` streams the answers).

Request attributes follow kube-apiserver's ``RequestInfoFactory``: ``/api/v1/...`` and
``/apis/<group>/<version>/...``, ``namespaces/<ns>/<resource>[/<name>[/<subresource>]]``,
verbs get/list/watch/create/update/patch/delete/deletecollection. Patches: JSON merge,
JSON patch, strategic merge (built-ins only: 415 for custom resources) and server-side
apply (``application/apply-patch+yaml``, ``fieldManager`` required). Lists and gets
answer a Table when asked. ``fieldValidation`` (Strict/Warn/Ignore) is honoured for
custom resources. ``dryRun=All`` writes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import conversion, discovery, tables
from .auth import Identity
from .emulator import Emulator
from .errors import (
    JSON,
    ApiError,
    bad_request,
    invalid,
    invalid_value,
    method_not_allowed,
    route_not_found,
    status_object,
)
from .patching import applied_fields, drop_missing, json_patch, merge_patch, strategic_merge
from .rbac import Attributes
from .resources import Resource
from .selectors import selector_string
from .storage import WriteOptions, check_type

NAMESPACE_SUBRESOURCES = ("status", "finalize")
VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}


@dataclass
class RequestInfo:
    resource_request: bool
    path: str
    verb: str
    group: str = ""
    version: str = ""
    namespace: str = ""
    resource: str = ""
    name: str = ""
    subresource: str = ""


def request_info(method: str, path: str, query: dict[str, str]) -> RequestInfo:
    parts = [p for p in path.strip("/").split("/") if p]
    lower = method.lower()
    if len(parts) < 2 or parts[0] not in ("api", "apis") or \
            (parts[0] == "apis" and len(parts) < 3):
        return RequestInfo(False, path, "get" if method == "HEAD" else lower)
    if parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    else:
        group, version, rest = parts[1], parts[2], parts[3:]
    if not rest:
        return RequestInfo(False, path, "get" if method == "HEAD" else lower)
    ns = ""
    if rest[0] == "namespaces" and len(rest) > 1:
        ns = rest[1]
        if len(rest) > 2 and rest[2] not in NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    sub = rest[2] if len(rest) > 2 else ""
    watching = query.get("watch") in ("true", "1", "True")
    if method in ("GET", "HEAD"):
        verb = "watch" if watching else ("get" if name else "list")
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    else:
        verb = VERBS.get(method, lower)
    return RequestInfo(True, path, verb, group, version, ns, resource, name, sub)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: bytes
    content_type: str
    accept: str
    user: Identity
    info: RequestInfo
    host: str = "127.0.0.1"


@dataclass
class Response:
    code: int
    body: Any
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class WatchSpec:
    """What the transport needs to stream a watch."""

    res: Resource  # the view the client asked for
    storage: Resource
    namespace: str | None
    labels: str
    fields: str
    since: str
    timeout: float
    bookmarks: bool


def parse_json(body: bytes) -> JSON:
    try:
        value = json.loads(body or b"null")
    except ValueError as exc:
        raise bad_request(f"invalid JSON body: {exc}") from exc
    if not isinstance(value, dict):
        raise bad_request("the request body must be a JSON object")
    return value


def to_scale(obj: JSON) -> JSON:
    meta = obj["metadata"]
    selector = (obj.get("spec") or {}).get("selector") or {}
    return {
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                           "creationTimestamp") if k in meta},
        "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 1)},
        "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                   "selector": selector_string(selector)},
    }


MAX_WATCH_SECONDS = 1800.0


class Api:
    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.store = emu.store
        self.registry = emu.registry

    # -- entry -------------------------------------------------------------------------

    def handle(self, req: Request) -> Response | WatchSpec:
        info = req.info
        self.emu.authorizer.check(Attributes(
            req.user, info.verb, info.namespace, info.group, info.resource, info.subresource,
            info.name, info.path, info.resource_request))
        if not info.resource_request:
            return self.non_resource(req)
        res = self.registry.by_path(info.group, info.version, info.resource)
        if res is None:
            raise route_not_found()
        ns = info.namespace if res.namespaced else ""
        if res.namespaced and not ns and info.name:
            raise route_not_found()
        if not res.stored:
            return self.virtual(req, res)
        sub = info.subresource
        if sub == "token" and res.kind == "ServiceAccount" and req.method == "POST":
            return Response(201, self.emu.auth.token_request(ns, info.name,
                                                             parse_json(req.body)))
        if sub and not ((sub == "status" and res.status) or (sub == "scale" and res.scale)):
            raise route_not_found()
        if info.verb not in res.verbs and not sub:
            raise method_not_allowed(req.method)
        return self.resource(req, res, ns)

    def non_resource(self, req: Request) -> Response:
        path = req.info.path.rstrip("/") or "/"
        reg = self.registry
        if path == "/api":
            return Response(200, discovery.api_versions(req.host))
        if path == "/apis":
            return Response(200, discovery.group_list(reg))
        parts = path.strip("/").split("/")
        found: JSON | None = None
        if parts[0] == "api" and len(parts) == 2:
            found = discovery.resource_list(reg, "", parts[1])
        elif parts[0] == "apis" and len(parts) == 2:
            found = discovery.group(reg, parts[1])
        elif parts[0] == "apis" and len(parts) == 3:
            found = discovery.resource_list(reg, parts[1], parts[2])
        elif path == "/openapi/v3":
            found = discovery.openapi_root(reg)
        elif path.startswith("/openapi/v3/"):
            found = discovery.openapi_group_version(reg, path.removeprefix("/openapi/v3/"))
        if found is None:
            raise route_not_found()
        return Response(200, found)

    def virtual(self, req: Request, res: Resource) -> Response:
        if req.method != "POST" or req.info.name:
            raise method_not_allowed(req.method)
        body = parse_json(req.body)
        if res.kind == "TokenReview":
            return Response(201, self.emu.auth.token_review(body))
        if res.kind == "SelfSubjectAccessReview":
            return Response(201, self.emu.authorizer.access_review(body, req.user))
        return Response(201, self.emu.authorizer.access_review(body, None))

    # -- stored resources --------------------------------------------------------------

    def _opts(self, req: Request, storage: Resource, warnings: list[str]) -> WriteOptions:
        user = req.user
        authorizer = self.emu.authorizer

        def admit(new: JSON, old: JSON | None) -> None:
            authorizer.admit_owner_references(user, storage, new, old)

        return WriteOptions(dry_run=req.query.get("dryRun") == "All", admit=admit,
                            field_validation=req.query.get("fieldValidation") or "Warn",
                            warnings=warnings)

    def resource(self, req: Request, res: Resource, ns: str) -> Response | WatchSpec:
        storage = self.registry.by_key(res.storage_key)
        info = req.info
        name, sub = info.name, info.subresource
        if req.method in ("GET", "HEAD"):
            if info.verb == "watch":
                return self.watch_spec(req, res, storage, ns)
            if name:
                obj = self.store.get(storage, ns, name)
                if sub == "scale":
                    return Response(200, to_scale(obj))
                return self._read(req, res, [conversion.from_storage(res, obj)], single=True)
            items, rv = self.store.select(storage, ns or None, req.query.get("labelSelector", ""),
                                        self._fields(res, req.query.get("fieldSelector", "")))
            return self._read(req, res, [conversion.from_storage(res, o) for o in items],
                              rv=str(rv))
        warnings: list[str] = []
        opts = self._opts(req, storage, warnings)
        if req.method == "POST" and not name:
            if res.namespaced and not ns:
                raise method_not_allowed(req.method)
            body = conversion.to_storage(res, parse_json(req.body))
            created = self.store.create(storage, ns, body, opts)
            return self._written(201, res, created, warnings)
        if req.method == "DELETE":
            return self.delete(req, res, storage, ns)
        if not name:
            raise method_not_allowed(req.method)
        if req.method == "PUT":
            new_body = conversion.to_storage(res, parse_json(req.body))
            return self._written(200, res, self._write(
                storage, ns, name, sub, lambda cur: new_body, opts, require_rv=True), warnings,
                scale=sub == "scale")
        if req.method == "PATCH":
            code, obj = self.patch(req, res, storage, ns, opts)
            return self._written(code, res, obj, warnings, scale=sub == "scale")
        raise method_not_allowed(req.method)

    @staticmethod
    def _fields(res: Resource, text: str) -> str:
        if not text:
            return text
        parts = []
        for term in text.split(","):
            for op in ("!=", "==", "="):
                if op in term:
                    left, _, right = term.partition(op)
                    term = f"{conversion.field_path(res, left.strip())}{op}{right}"
                    break
            parts.append(term)
        return ",".join(parts)

    def _read(self, req: Request, res: Resource, items: list[JSON], *, single: bool = False,
              rv: str = "") -> Response:
        if tables.wants_table(req.accept):
            version = items[0]["metadata"].get("resourceVersion", "") if single else rv
            return Response(200, tables.table(res, items, version,
                                              req.query.get("includeObject", "Metadata")))
        if single:
            return Response(200, items[0])
        return Response(200, {"kind": f"{res.kind}List", "apiVersion": res.api_version,
                              "metadata": {"resourceVersion": rv}, "items": items})

    @staticmethod
    def _written(code: int, res: Resource, obj: JSON, warnings: list[str], *,
                 scale: bool = False) -> Response:
        headers = [("Warning", "299 - " + json.dumps(w)) for w in warnings]
        body = obj if scale else conversion.from_storage(res, obj)
        return Response(code, body, headers)

    def _write(self, storage: Resource, ns: str, name: str, sub: str,
               change: Callable[[JSON], JSON], opts: WriteOptions, *,
               require_rv: bool = False) -> JSON:
        if sub == "scale":
            def on_object(cur: JSON) -> JSON:
                scale = change(to_scale(cur))
                sent = (scale.get("metadata") or {}).get("resourceVersion")
                replicas = (scale.get("spec") or {}).get("replicas")
                if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                    raise invalid("Scale", "autoscaling", name, [invalid_value(
                        "spec.replicas", replicas, "must be greater than or equal to 0")])
                cur["spec"]["replicas"] = replicas
                cur["metadata"]["resourceVersion"] = sent or None
                return cur
            scale_opts = WriteOptions(dry_run=opts.dry_run)
            return to_scale(self.store.update(storage, ns, name, on_object, opts=scale_opts))
        return self.store.update(storage, ns, name, change, subresource=sub,
                                 require_rv=require_rv, opts=opts)

    # -- patch and apply ---------------------------------------------------------------

    def patch(self, req: Request, res: Resource, storage: Resource, ns: str,
              opts: WriteOptions) -> tuple[int, JSON]:
        name, sub = req.info.name, req.info.subresource
        ctype = req.content_type
        if ctype == "application/apply-patch+yaml":
            return self.apply(req, res, storage, ns, opts)
        if ctype == "application/merge-patch+json":
            patch = conversion.to_storage(res, parse_json(req.body)) if res.storage \
                else parse_json(req.body)
            return 200, self._write(storage, ns, name, sub, lambda cur: merge_patch(cur, patch),
                                    opts)
        if ctype == "application/json-patch+json":
            try:
                ops = json.loads(req.body or b"null")
            except ValueError as exc:
                raise bad_request(f"invalid JSON patch: {exc}") from exc

            def apply_ops(cur: JSON) -> JSON:
                try:
                    result = json_patch(cur, ops)
                except ValueError as exc:
                    raise ApiError(422, "Invalid", f"the server rejected our request due to "
                                   f"an error in our request: {exc}") from exc
                return result if isinstance(result, dict) else {}
            return 200, self._write(storage, ns, name, sub, apply_ops, opts)
        if ctype == "application/strategic-merge-patch+json":
            if not res.strategic:
                raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an "
                               "unknown format - accepted media types include: "
                               "application/json-patch+json, application/merge-patch+json, "
                               "application/apply-patch+yaml")
            patch = parse_json(req.body)
            return 200, self._write(storage, ns, name, sub,
                                    lambda cur: strategic_merge(cur, patch), opts)
        raise ApiError(415, "UnsupportedMediaType", f"unsupported patch type {ctype!r}")

    def apply(self, req: Request, res: Resource, storage: Resource, ns: str,
              opts: WriteOptions) -> tuple[int, JSON]:
        name, sub = req.info.name, req.info.subresource
        manager = req.query.get("fieldManager")
        if not manager:
            raise bad_request("PATCH with apply requires fieldManager")
        try:
            applied = json.loads(req.body)
        except ValueError:
            import yaml

            applied = yaml.safe_load(req.body)
        if not isinstance(applied, dict):
            raise bad_request("apply body must be an object")
        check_type(res, applied)
        applied = conversion.to_storage(res, applied)
        meta = applied.get("metadata") or {}
        if meta.get("name", name) != name:
            raise bad_request("the name of the object does not match the URL")
        key = (storage.key, ns, name, f"{manager}/{sub}")
        if self.store.find(storage, ns, name) is None:
            if sub:
                self.store.get(storage, ns, name)  # 404
            created = self.store.create(storage, ns, applied, opts)
            if not opts.dry_run:
                self.store.applied[key] = applied_fields(applied)
            return 201, created
        previous = self.store.applied.get(key, {})
        fields = applied_fields(applied)

        def apply_change(cur: JSON) -> JSON:
            merged = merge_patch(drop_missing(cur, previous, fields), applied)
            merged["metadata"]["resourceVersion"] = meta.get("resourceVersion")
            return merged
        result = self._write(storage, ns, name, sub, apply_change, opts)
        if not opts.dry_run:
            self.store.applied[key] = fields
        return 200, result

    # -- delete ------------------------------------------------------------------------

    def delete(self, req: Request, res: Resource, storage: Resource, ns: str) -> Response:
        options = parse_json(req.body) if req.body.strip() else {}
        policy = req.query.get("propagationPolicy") or options.get("propagationPolicy")
        orphan = options.get("orphanDependents", req.query.get("orphanDependents"))
        if policy is None and orphan in (True, "true"):
            policy = "Orphan"
        if policy not in (None, "Background", "Foreground", "Orphan"):
            raise invalid("DeleteOptions", "", "", [invalid_value(
                "propagationPolicy", policy, 'must be one of "Background", "Foreground", '
                '"Orphan", or nil')])
        dry = req.query.get("dryRun") == "All" or "All" in (options.get("dryRun") or [])
        pre = options.get("preconditions") or {}
        name = req.info.name
        if not name:
            items, _ = self.store.select(storage, ns or None, req.query.get("labelSelector", ""),
                                       self._fields(res, req.query.get("fieldSelector", "")))
            gone = []
            for obj in items:
                m = obj["metadata"]
                try:
                    done, _ = self.store.delete(storage, ns, m["name"], propagation=policy,
                                                dry_run=dry)
                except ApiError as exc:
                    if exc.code != 404:
                        raise
                    continue
                gone.append(conversion.from_storage(res, done))
            return Response(200, {"kind": f"{res.kind}List", "apiVersion": res.api_version,
                                  "metadata": {}, "items": gone})
        obj, deleted = self.store.delete(storage, ns, name, preconditions=pre,
                                         propagation=policy, dry_run=dry)
        if not deleted:
            return Response(200, conversion.from_storage(res, obj))
        if res.kind == "Pod":  # pods answer with the object, as kube-apiserver does
            return Response(200, conversion.from_storage(res, obj))
        return Response(200, status_object(200, "", "", {
            "name": name, "group": res.group, "kind": res.plural,
            "uid": obj["metadata"]["uid"]}))

    # -- watch -------------------------------------------------------------------------

    def watch_spec(self, req: Request, res: Resource, storage: Resource, ns: str) -> WatchSpec:
        query = req.query
        since = query.get("resourceVersion", "")
        if since not in ("", "0") and not since.isdigit():
            raise bad_request(f"invalid resourceVersion {since!r}")
        labels = query.get("labelSelector", "")
        fields = self._fields(res, query.get("fieldSelector", ""))
        if req.info.name:
            fields = ",".join(f for f in (fields, f"metadata.name={req.info.name}") if f)
        try:
            timeout = float(query.get("timeoutSeconds") or MAX_WATCH_SECONDS)
        except ValueError as exc:
            raise bad_request("invalid timeoutSeconds") from exc
        return WatchSpec(res, storage, ns or None, labels, fields, since,
                         min(timeout, MAX_WATCH_SECONDS),
                         query.get("allowWatchBookmarks") in ("true", "1", "True"))
