"""Label selectors (query strings and ``LabelSelector`` objects) and field selectors."""

from __future__ import annotations

import re
from typing import Any

from .errors import JSON, ApiError

Term = tuple[str, str, list[str]]
FieldTerm = tuple[str, bool, str]

_SEL_SET = re.compile(r"^\s*([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_SEL_EQ = re.compile(r"^\s*([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)\s*$")
_SEL_EXISTS = re.compile(r"^\s*(!?)([\w./-]+)\s*$")


def parse_label_selector(text: str) -> list[Term]:
    terms: list[Term] = []
    for part in re.split(r",(?![^()]*\))", text or ""):
        if not part.strip():
            continue
        if m := _SEL_SET.match(part):
            terms.append((m[1], m[2], [v.strip() for v in m[3].split(",") if v.strip()]))
        elif m := _SEL_EQ.match(part):
            terms.append((m[1], "!=" if m[2] == "!=" else "=", [m[3]]))
        elif m := _SEL_EXISTS.match(part):
            terms.append((m[2], "!" if m[1] else "exists", []))
        else:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {part!r}")
    return terms


def labels_match(labels: dict[str, str], terms: list[Term]) -> bool:
    for key, op, values in terms:
        have = labels.get(key)
        ok = {
            "=": have == values[0] if values else False,
            "!=": have != values[0] if values else True,
            "in": have in values,
            "notin": have not in values,
            "exists": key in labels,
            "!": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def parse_field_selector(text: str) -> list[FieldTerm]:
    out: list[FieldTerm] = []
    for part in (text or "").split(","):
        if not part.strip():
            continue
        m = re.match(r"^\s*([\w.]+)\s*(==|=|!=)\s*(.*?)\s*$", part)
        if not m:
            raise ApiError(400, "BadRequest", f"invalid field selector: {part!r}")
        out.append((m[1], m[2] != "!=", m[3]))
    return out


def fields_match(obj: JSON, terms: list[FieldTerm]) -> bool:
    for path, equal, value in terms:
        node: Any = obj
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        have = "" if node is None else str(node)
        if (have == value) != equal:
            return False
    return True


def selector_matches(selector: JSON, labels: dict[str, str]) -> bool:
    """A LabelSelector object (matchLabels + matchExpressions) against labels. An empty
    selector matches everything (as for Deployments and PodDisruptionBudgets)."""
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if (op == "In" and labels.get(key) not in values) or \
           (op == "NotIn" and labels.get(key) in values) or \
           (op == "Exists" and key not in labels) or \
           (op == "DoesNotExist" and key in labels):
            return False
    return True


def selector_string(selector: JSON) -> str:
    """A LabelSelector object as the query form (``a=b,c in (d,e)``), sorted by key."""
    parts: list[tuple[str, str]] = []
    for k, v in (selector.get("matchLabels") or {}).items():
        parts.append((k, f"{k}={v}"))
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key", ""), expr.get("operator"), expr.get("values") or []
        text = {"In": f"{key} in ({','.join(sorted(values))})",
                "NotIn": f"{key} notin ({','.join(sorted(values))})",
                "Exists": key, "DoesNotExist": f"!{key}"}.get(str(op), key)
        parts.append((key, text))
    return ",".join(t for _, t in sorted(parts))
