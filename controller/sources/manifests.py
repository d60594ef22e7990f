"""Reading CanaryRule manifests from files, directories and stdin.

Parsing is pure and lives in :mod:`controller.models.manifest`; this module only finds and
reads the files, so that every read error is reported like a validation error (file,
reason) instead of an exception.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

from controller.models.manifest import (
    LoadedRule,
    ManifestError,
    ManifestWarning,
    load_documents,
    parse_rule,
)

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


def _manifest_files(directory: Path) -> list[Path]:
    return sorted(f for f in directory.rglob("*")
                  if f.is_file() and f.suffix in MANIFEST_SUFFIXES)


def _other_kind(doc: object) -> tuple[str, str] | None:
    """(kind, "kind name") of a Kubernetes object that is not a CanaryRule, else None."""
    if not isinstance(doc, dict):
        return None
    kind = doc.get("kind")
    if not isinstance(kind, str) or kind == "CanaryRule" or "apiVersion" not in doc:
        return None
    meta = doc.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    return kind, f"{kind} {name}" if name else kind


def load_rules(paths: Iterable[str], skipped: list[ManifestWarning] | None = None,
               ) -> tuple[list[LoadedRule], list[ManifestError]]:
    """Every CanaryRule in the given files/directories, and every error found.

    A directory is read like ``kubectl apply -f DIR``: every .yaml/.yml/.json file under
    it. Other Kubernetes objects found there (the app's Deployment beside its rule) are
    not errors: each is noted in ``skipped`` when given. A directory without any manifest
    file, or without any CanaryRule, is an error naming the directory. A file named
    directly must hold CanaryRules only.
    """
    rules: list[LoadedRule] = []
    errors: list[ManifestError] = []
    seen_any = False
    for p in paths:
        path = None if p == "-" else Path(p)
        from_dir = path is not None and path.is_dir()
        files: list[Path | None] = list(_manifest_files(path)) if from_dir and path else [path]
        if from_dir and not files:
            errors.append(ManifestError(p, None, "", "is a directory without any .yaml, "
                                        ".yml or .json file"))
            continue
        seen_any = True
        found, failed, notes = len(rules), len(errors), list[tuple[str, ManifestWarning]]()
        for file in files:
            _load_file(file, from_dir, rules, errors, notes)
        if skipped is not None:
            skipped.extend(note for _, note in notes)
        if from_dir and len(rules) == found and len(errors) == failed:
            kinds = ", ".join(sorted({kind for kind, _ in notes}))
            errors.append(ManifestError(p, None, "", "is a directory without any CanaryRule"
                                        + (f" (it holds: {kinds})" if kinds else "")))
    if not seen_any and not errors:
        errors.append(ManifestError("-f", None, "", "no manifest files found"))
    return rules, errors


def _load_file(path: Path | None, from_dir: bool, rules: list[LoadedRule],
               errors: list[ManifestError], skipped: list[tuple[str, ManifestWarning]],
               ) -> None:
    name = "<stdin>" if path is None else str(path)
    try:
        text = sys.stdin.read() if path is None else path.read_text(encoding="utf-8")
    except OSError as exc:
        errors.append(ManifestError(name, None, "", f"cannot read: {exc.strerror or exc}"))
        return
    except UnicodeDecodeError:
        errors.append(ManifestError(name, None, "", "not UTF-8 text"))
        return
    docs, errs = load_documents(text, name)
    errors.extend(errs)
    if not docs and not errs:
        errors.append(ManifestError(name, None, "", "no documents in file"))
    for index, doc in docs:
        other = _other_kind(doc) if from_dir else None
        if other is not None:
            kind, what = other
            skipped.append((kind, ManifestWarning(name, index, "",
                                                  f"{what} (not a CanaryRule)")))
            continue
        result = parse_rule(doc, name, index)
        if isinstance(result, LoadedRule):
            rules.append(result)
        else:
            errors.extend(result)
