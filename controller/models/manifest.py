"""Parse CanaryRule manifests (text in, rules or errors out) with errors a person can act on.

Every error names the file, the document index in a multi-document YAML file, the
field path and a one-line reason. Nothing is half-loaded: a document is either a
valid :class:`CanaryRule` or a list of errors. Reading files is the sources layer's job
(:mod:`controller.sources.manifests`); this module only parses text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

from .errors import field_errors
from .rule import CanaryRule


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
        return [ManifestError(name, index, p, r) for p, r in field_errors(exc)]
    return LoadedRule(name, index, rule, doc)
