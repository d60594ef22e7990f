"""Load CanaryRule manifests from files with errors a person can act on.

Every error names the file, the document index in a multi-document YAML file, the
field path and a one-line reason. Nothing is half-loaded: a document is either a
valid :class:`CanaryRule` or a list of errors.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .base import FieldError
from .rule import CanaryRule

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class ManifestError:
    file: str
    doc: int | None
    path: str
    reason: str
    line: int | None = None

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
        if self.doc is not None:
            where += f"[{self.doc}]"
        return f"{where}: {self.path}: {self.reason}" if self.path else f"{where}: {self.reason}"


@dataclass(frozen=True)
class LoadedRule:
    file: str
    doc: int
    rule: CanaryRule
    raw: dict[str, Any]


def _join(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


_NOISE = re.compile(r"^(Value error|Assertion failed), ")


def validation_errors(exc: ValidationError) -> list[tuple[str, str]]:
    """(field path, one-line reason) for each pydantic error, with cross-field paths joined."""
    found: list[tuple[str, str]] = []
    for err in exc.errors(include_url=False):
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        path = _join(loc)
        original = (err.get("ctx") or {}).get("error")
        if isinstance(original, FieldError):
            if original.path:
                path = f"{path}.{original.path}" if path else original.path
            reason = original.reason
        else:
            reason = _NOISE.sub("", err["msg"])
            if err["type"] == "extra_forbidden":
                reason = "unknown field (check the spelling; fields are camelCase)"
            elif err["type"] == "missing":
                reason = "required field is missing"
        found.append((path, reason.splitlines()[0] if reason else reason))
    return found


def expand_paths(paths: Iterable[str]) -> Iterator[Path | None]:
    """Files named directly, and manifest files under directories (sorted). ``-`` is stdin."""
    for p in paths:
        if p == "-":
            yield None
            continue
        path = Path(p)
        if path.is_dir():
            yield from sorted(
                f for f in path.rglob("*") if f.is_file() and f.suffix in MANIFEST_SUFFIXES
            )
        else:
            yield path


def load_documents(text: str, name: str) -> tuple[list[tuple[int, Any]], list[ManifestError]]:
    """YAML documents with their index; a syntax error is reported with its line."""
    docs: list[tuple[int, Any]] = []
    try:
        for i, doc in enumerate(yaml.safe_load_all(text)):
            if doc is not None:
                docs.append((i, doc))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return [], [ManifestError(name, len(docs) or None, "", f"YAML syntax: {problem}", line)]
    return docs, []


def parse_rule(doc: Any, name: str, index: int) -> LoadedRule | list[ManifestError]:
    if not isinstance(doc, dict):
        return [ManifestError(name, index, "", f"expected a mapping, got {type(doc).__name__}")]
    if doc.get("kind") != "CanaryRule":
        return [
            ManifestError(name, index, "kind", f"must be 'CanaryRule', got {doc.get('kind')!r}")
        ]
    try:
        rule = CanaryRule.model_validate(doc)
    except ValidationError as exc:
        return [ManifestError(name, index, p, r) for p, r in validation_errors(exc)]
    return LoadedRule(name, index, rule, doc)


def load_rules(paths: Iterable[str]) -> tuple[list[LoadedRule], list[ManifestError]]:
    """Every CanaryRule in the given files/directories, and every error found."""
    rules: list[LoadedRule] = []
    errors: list[ManifestError] = []
    seen_any = False
    for path in expand_paths(paths):
        seen_any = True
        name = "<stdin>" if path is None else str(path)
        try:
            text = sys.stdin.read() if path is None else path.read_text(encoding="utf-8")
        except OSError as exc:
            errors.append(ManifestError(name, None, "", f"cannot read: {exc.strerror or exc}"))
            continue
        except UnicodeDecodeError:
            errors.append(ManifestError(name, None, "", "not UTF-8 text"))
            continue
        docs, errs = load_documents(text, name)
        errors.extend(errs)
        if not docs and not errs:
            errors.append(ManifestError(name, None, "", "no documents in file"))
        for index, doc in docs:
            result = parse_rule(doc, name, index)
            if isinstance(result, LoadedRule):
                rules.append(result)
            else:
                errors.extend(result)
    if not seen_any:
        errors.append(ManifestError("-f", None, "", "no manifest files found"))
    return rules, errors
