"""Pydantic validation errors as (field path, reason) pairs a person can act on.

One formatter for every input the product parses (manifests, sample and feedback records,
request bodies), so a field is named the same way everywhere: ``spec.steps[1].weight``,
``latency_ms``. Cross-field checks raise :class:`~controller.models.base.FieldError`, whose
relative path is joined to the model's location. Pydantic's union-member tags
(``input.str``, ``input.list[Turn]``) and validator wrappers are dropped: users think in
fields, not in types.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydantic import ValidationError

from .base import FieldError

_NOISE = re.compile(r"^(Value error|Assertion failed), ")
_UNION_TAG = re.compile(r"^(str|int|float|bool|list|dict|none|[A-Za-z_]+\[.*\])$")

MAX_FIELD_ERRORS = 3
"""Field errors spelled out per record in one-line summaries."""


def join_path(loc: Iterable[str | int]) -> str:
    """``("spec", "steps", 1, "weight")`` → ``spec.steps[1].weight``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not part.startswith("function-") and not _UNION_TAG.match(part):
            out += ("." if out else "") + part
    return out


def _join(path: str, relative: str) -> str:
    """A model's location and a path relative to it (``[1].weight`` joins without a dot)."""
    if not relative:
        return path
    if not path:
        return relative
    return path + relative if relative.startswith("[") else f"{path}.{relative}"


def field_errors(exc: ValidationError) -> list[tuple[str, str]]:
    """(field path, one-line reason) for each error, cross-field paths joined."""
    found: list[tuple[str, str]] = []
    for err in exc.errors(include_url=False):
        path = join_path(err["loc"])
        original = (err.get("ctx") or {}).get("error")
        if isinstance(original, FieldError):
            for issue in original.issues():  # a model's independent checks, all of them
                where = _join(path, issue.path)
                item = (where, issue.reason.splitlines()[0] if issue.reason else issue.reason)
                if item not in found:
                    found.append(item)
            continue
        if err["type"] == "extra_forbidden":
            reason = ("unknown field (check the spelling and the case: CanaryRule fields are "
                      "camelCase, sample and feedback fields snake_case)")
        elif err["type"] == "missing":
            reason = "required field is missing"
        else:
            reason = _NOISE.sub("", err["msg"]) or err["type"]
        item = (path, reason.splitlines()[0] if reason else reason)
        if item not in found:
            found.append(item)
    return found


def format_field_errors(exc: ValidationError, *, limit: int = MAX_FIELD_ERRORS) -> str:
    """One line naming each failing field: ``field 'cohort': Input should be ...``."""
    merged: dict[str, list[str]] = {}
    for path, reason in field_errors(exc):
        merged.setdefault(path or "record", []).append(reason)
    items = [f"field {path!r}: {' / '.join(reasons)}" for path, reasons in merged.items()]
    extra = len(items) - limit
    return "; ".join(items[:limit]) + (f" (and {extra} more)" if extra > 0 else "")
