"""Reading CanaryRule manifests from files, directories and stdin.

Parsing is pure and lives in :mod:`controller.models.manifest`; this module only finds and
reads the files, so that every read error is reported like a validation error (file,
reason) instead of an exception.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from controller.models.manifest import LoadedRule, ManifestError, load_documents, parse_rule

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


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
