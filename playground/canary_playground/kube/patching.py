"""Patch semantics: JSON merge patch (RFC 7386), JSON patch (RFC 6902), the strategic
merge patch subset built-in types need, and the bookkeeping of server-side apply.

Strategic merge (built-ins only; custom resources answer 415, as in Kubernetes): maps merge,
``null`` deletes, the lists in :data:`MERGE_KEYS` merge by their key, ``$patch:
replace|delete`` is honoured, other lists are replaced. Server-side apply: create or merge,
and fields the same manager applied before and dropped now are removed (no per-field
ownership conflicts: always "force").
"""

from __future__ import annotations

import copy
from typing import Any

from .errors import JSON


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (never mutates its arguments)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ValueError(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, parts: list[str], path: str) -> tuple[Any, str]:
    node = doc
    for part in parts[:-1]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise ValueError(f"path {path!r} does not exist")
    return node, parts[-1]


def _get(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    if not parts:
        return doc
    node, last = _parent(doc, parts, path)
    if isinstance(node, dict) and last in node:
        return node[last]
    if isinstance(node, list) and last.isdigit() and int(last) < len(node):
        return node[int(last)]
    raise ValueError(f"path {path!r} does not exist")


def _remove(doc: Any, path: str) -> Any:
    node, last = _parent(doc, _pointer(path), path)
    if isinstance(node, dict) and last in node:
        return node.pop(last)
    if isinstance(node, list) and last.isdigit() and int(last) < len(node):
        return node.pop(int(last))
    raise ValueError(f"path {path!r} does not exist")


def _add(doc: Any, path: str, value: Any, *, replace: bool = False) -> Any:
    parts = _pointer(path)
    if not parts:
        return copy.deepcopy(value)
    node, last = _parent(doc, parts, path)
    if isinstance(node, dict):
        if replace and last not in node:
            raise ValueError(f"path {path!r} does not exist")
        node[last] = copy.deepcopy(value)
    elif isinstance(node, list):
        if last == "-" and not replace:
            node.append(copy.deepcopy(value))
        elif last.isdigit() and int(last) <= len(node) - (1 if replace else 0):
            if replace:
                node[int(last)] = copy.deepcopy(value)
            else:
                node.insert(int(last), copy.deepcopy(value))
        else:
            raise ValueError(f"path {path!r} is out of range")
    else:
        raise ValueError(f"path {path!r} does not exist")
    return doc


def json_patch(doc: Any, operations: Any) -> Any:
    """RFC 6902 JSON patch; ``ValueError`` for a failed test or a bad path."""
    if not isinstance(operations, list):
        raise ValueError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(doc)
    for op in operations:
        kind, path = op.get("op"), op.get("path", "")
        if kind == "add":
            doc = _add(doc, path, op.get("value"))
        elif kind == "replace":
            doc = _add(doc, path, op.get("value"), replace=True)
        elif kind == "remove":
            _remove(doc, path)
        elif kind == "test":
            if _get(doc, path) != op.get("value"):
                raise ValueError(f"test failed at {path!r}")
        elif kind in ("move", "copy"):
            value = copy.deepcopy(_get(doc, op.get("from", "")))
            if kind == "move":
                _remove(doc, op.get("from", ""))
            doc = _add(doc, path, value)
        else:
            raise ValueError(f"unknown JSON patch operation {kind!r}")
    return doc


MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name",
    "env": "name", "volumes": "name", "volumeMounts": "mountPath", "imagePullSecrets": "name",
    "ownerReferences": "uid", "conditions": "type", "ports": "containerPort|port",
}
PRIMITIVE_MERGE = {"finalizers"}  # lists of strings merged as sets (patchStrategy=merge)


def strategic_merge(target: Any, patch: Any) -> Any:
    """The subset of strategic merge patch described in the module docstring."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/") and isinstance(value, list):
            name = key.split("/", 1)[1]
            if isinstance(result.get(name), list):
                result[name] = [v for v in result[name] if v not in value]
            continue
        if key.startswith("$"):
            continue
        if key in PRIMITIVE_MERGE and isinstance(value, list) and \
                isinstance(result.get(key), list):
            result[key] = result[key] + [v for v in value if v not in result[key]]
        elif value is None or (isinstance(value, dict) and value.get("$patch") == "delete"):
            result.pop(key, None)
        elif key in MERGE_KEYS and isinstance(value, list) and isinstance(result.get(key), list):
            result[key] = _merge_list(result[key], value, MERGE_KEYS[key])
        else:
            result[key] = strategic_merge(result.get(key), value)
    return result


def _merge_list(current: list[Any], patch: list[Any], keys: str) -> list[Any]:
    candidates = keys.split("|")
    key = next((k for k in candidates if any(isinstance(i, dict) and k in i
                                             for i in [*current, *patch])), candidates[-1])
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [copy.deepcopy(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    out = [copy.deepcopy(i) for i in current]
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            out.append(copy.deepcopy(item))
            continue
        index = next((n for n, c in enumerate(out) if isinstance(c, dict)
                      and c.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                out.pop(index)
        elif index is None:
            out.append(strategic_merge({}, item))
        else:
            out[index] = strategic_merge(out[index], item)
    return out


def drop_missing(obj: Any, before: Any, after: Any) -> Any:
    """Remove from ``obj`` the map keys ``before`` had and ``after`` no longer has."""
    if not (isinstance(obj, dict) and isinstance(before, dict)):
        return obj
    after = after if isinstance(after, dict) else {}
    out = dict(obj)
    for key, value in before.items():
        if key not in after:
            out.pop(key, None)
        elif key in out:
            out[key] = drop_missing(out[key], value, after[key])
    return out


def applied_fields(applied: JSON) -> JSON:
    """What a server-side apply manager owns: the applied document minus identity fields."""
    fields = copy.deepcopy(applied)
    meta = fields.get("metadata") or {}
    for key in ("resourceVersion", "name", "namespace", "uid"):
        meta.pop(key, None)
    return fields
