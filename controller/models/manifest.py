"""Parse CanaryRule manifests (text in, rules or errors out) with errors a person can act on.

Every error names the file, the document index in a multi-document YAML file, the
field path and a one-line reason. Nothing is half-loaded: a document is either a
valid :class:`CanaryRule` or a list of errors. A valid rule may still carry
*warnings* (:func:`rule_warnings`): settings that are legal but measure less than the
user probably thinks (a trusted-completion guard with no latency budget). Warnings
never fail validation; ``canaryctl validate`` and ``apply`` print them. Reading files
is the sources layer's job (:mod:`controller.sources.manifests`); this module only
parses text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

from .errors import field_errors
from .rule import CanaryRule, Metric


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
class ManifestWarning:
    """A legal setting that weakens what a guard measures."""

    file: str
    doc: int | None
    path: str
    reason: str

    def __str__(self) -> str:
        where = self.file if self.doc is None else f"{self.file}[{self.doc}]"
        return f"{where}: {self.path}: {self.reason}" if self.path else f"{where}: {self.reason}"


@dataclass(frozen=True)
class LoadedRule:
    file: str
    doc: int
    rule: CanaryRule
    raw: dict[str, Any]
    warnings: tuple[ManifestWarning, ...] = ()


def rule_warnings(rule: CanaryRule) -> list[tuple[str, str]]:
    """(field path, reason) for each setting that silently weakens a guard."""
    spec = rule.spec
    out: list[tuple[str, str]] = []
    trusted = spec.analysis.trusted
    for i, g in enumerate(spec.analysis.guards):
        where = f"spec.analysis.guards[{i}]"
        if g.metric is Metric.TRUSTED_COMPLETION:
            if not trusted.has_latency_budget:
                out.append((f"{where} ({g.name})", "trusted completion does not check latency: "
                            "set analysis.trusted.latencyBudgetMs or budgets[].latencyMs"))
            if not trusted.has_cost_budget:
                out.append((f"{where} ({g.name})", "trusted completion does not check cost: "
                            "set analysis.trusted.costBudgetUsd or budgets[].costUsd"))
            if spec.judge is None or not spec.judge.policy:
                verdict = {"untrusted": "is never trusted",
                           "trusted": "counts as trusted without any policy check",
                           "exclude": "is left out"}
                out.append((f"{where} ({g.name})", "no policy source (judge.policy is unset): "
                            "a sample that does not carry policy_violation "
                            f"{verdict[trusted.unknown_policy]} (trusted.unknownPolicy: "
                            f"{trusted.unknown_policy})"))
        if (g.metric in (Metric.LATENCY, Metric.COST) and g.stat == "mean"
                and getattr(spec.analysis.plausibility_cap,
                            "latency_ms" if g.metric is Metric.LATENCY else "cost_usd") is None):
            out.append((f"{where} ({g.name})", f"a mean {g.metric.value} without "
                        "analysis.plausibilityCap: one absurd value can hold this guard; "
                        "set a cap or compare a quantile (statistic: p95)"))
    return out


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
    warnings = tuple(ManifestWarning(name, index, p, r) for p, r in rule_warnings(rule))
    return LoadedRule(name, index, rule, doc, warnings)
