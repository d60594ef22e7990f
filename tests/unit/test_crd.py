"""The CRD in the chart is generated from the models and is a structural schema."""

from __future__ import annotations

from typing import Any

import yaml

from controller.models.crd import CRD_FILE, build_crd, render_crd
from tests.support import ROOT

CRD_PATH = ROOT / CRD_FILE


def test_chart_crd_matches_the_models() -> None:
    assert CRD_PATH.read_text() == render_crd(), (
        "charts CRD is stale: run `scripts/generate` and commit the result"
    )


def _walk(node: Any, path: str = "") -> list[str]:
    """Structural-schema violations under one node (what the API server would reject)."""
    problems: list[str] = []
    if not isinstance(node, dict):
        return problems
    for bad in ("$ref", "$defs", "anyOf", "oneOf", "allOf", "const", "title"):
        if bad in node:
            problems.append(f"{path}: has {bad}")
    if "type" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        problems.append(f"{path}: no type")
    for key in ("exclusiveMinimum", "exclusiveMaximum"):
        if key in node and not isinstance(node[key], bool):
            problems.append(f"{path}: {key} must be a boolean in OpenAPI v3.0")
    if node.get("additionalProperties") is not None and not isinstance(
        node["additionalProperties"], dict
    ):
        problems.append(f"{path}: additionalProperties must be a schema")
    for name, child in node.get("properties", {}).items():
        problems += _walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        problems += _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        problems += _walk(node["additionalProperties"], f"{path}{{}}")
    return problems


def test_crd_schema_is_structural() -> None:
    crd = build_crd()
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert _walk(version["schema"]["openAPIV3Schema"]) == []


def test_crd_has_printer_columns_for_operators() -> None:
    version = build_crd()["spec"]["versions"][0]
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Phase"] == ".status.phase"
    assert columns["Step"] == ".status.currentStep"
    assert columns["Weight"] == ".status.weight"
    assert columns["Age"] == ".metadata.creationTimestamp"


def test_schema_enforces_what_the_models_enforce() -> None:
    spec = yaml.safe_load(CRD_PATH.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    analysis = spec["properties"]["spec"]["properties"]["analysis"]["properties"]
    assert analysis["alpha"]["maximum"] == 0.5 and analysis["alpha"]["exclusiveMaximum"] is True
    assert analysis["interval"]["pattern"].startswith("^")
    guard = analysis["guards"]["items"]["properties"]
    assert "trustedCompletion" in guard["metric"]["enum"]
