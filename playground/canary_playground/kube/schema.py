"""Structural-schema behaviour of a CRD: prune unknown fields, default, validate.

Pruning records the paths it dropped, so a request with ``fieldValidation=Strict`` is
refused (400) and ``Warn`` (the default) answers with ``Warning`` headers, as
kube-apiserver does for custom resources.
"""

from __future__ import annotations

import copy
from typing import Any

from .errors import JSON, FieldError

_DROP = object()


class CrdSchema:
    def __init__(self, schema: JSON) -> None:
        import jsonschema  # type: ignore[import-untyped]

        self.schema = schema
        self._validator = jsonschema.Draft7Validator(_to_json_schema(schema))

    @classmethod
    def from_crd(cls, crd: JSON) -> CrdSchema | None:
        try:
            import jsonschema  # noqa: F401
        except ImportError:  # pragma: no cover - a test dependency
            return None
        versions = crd["spec"]["versions"]
        version = next((v for v in versions if v.get("storage")), versions[0])
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        return cls(schema) if schema else None

    def normalize(self, obj: JSON, pruned: list[str] | None = None) -> JSON:
        """Prune unknown fields (their paths go to ``pruned``) and apply defaults."""
        out = {k: v for k, v in obj.items() if k in ("apiVersion", "kind", "metadata")}
        props = self.schema.get("properties", {})
        for key, value in obj.items():
            if key in out:
                continue
            if key not in props:
                if pruned is not None:
                    pruned.append(key)
                continue
            cleaned = _prune_default(value, props[key], key, pruned)
            if cleaned is not _DROP:
                out[key] = cleaned
        return out

    def errors(self, obj: JSON) -> list[FieldError]:
        body = {k: v for k, v in obj.items() if k != "metadata"}
        found = []
        for err in sorted(self._validator.iter_errors(body), key=lambda e: list(e.path)):
            path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.path)
            found.append(FieldError(path.lstrip("."), "FieldValueInvalid", err.message))
        return found


def _prune_default(value: Any, schema: JSON, path: str, pruned: list[str] | None) -> Any:
    if value is None:
        return None if schema.get("nullable") else _DROP
    if isinstance(value, dict) and schema.get("type") == "object":
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        keep = schema.get("x-kubernetes-preserve-unknown-fields")
        out: JSON = {}
        for key, item in value.items():
            sub = (props or {}).get(key)
            if sub is None and isinstance(extra, dict):
                sub = extra
            if sub is None:
                if keep or (props is None and extra is None) or extra is True:
                    out[key] = item
                elif pruned is not None:
                    pruned.append(f"{path}.{key}")
                continue
            cleaned = _prune_default(item, sub, f"{path}.{key}", pruned)
            if cleaned is not _DROP:
                out[key] = cleaned
        for key, sub in (props or {}).items():
            if key not in out and "default" in sub:
                out[key] = copy.deepcopy(sub["default"])
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        items = [_prune_default(v, schema["items"], f"{path}[{i}]", pruned)
                 for i, v in enumerate(value)]
        return [i for i in items if i is not _DROP]
    return value


def _to_json_schema(schema: Any) -> Any:
    """OpenAPI v3 (``nullable``, ``x-kubernetes-*``) to plain JSON Schema."""
    if isinstance(schema, list):
        return [_to_json_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _to_json_schema(v) for k, v in schema.items()
           if not k.startswith("x-kubernetes-") and k not in ("nullable", "format", "default")}
    if schema.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    if schema.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(schema.get(bound), bool):  # OpenAPI 3.0 boolean form
            if schema[bound] and limit in schema:
                out[bound] = schema[limit]
                out.pop(limit, None)
            else:
                out.pop(bound, None)
    return out
