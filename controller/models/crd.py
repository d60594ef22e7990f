"""Generate the CanaryRule CustomResourceDefinition from the pydantic models.

Kubernetes wants a *structural* OpenAPI v3.0 schema: no ``$ref``, every node typed,
no ``anyOf`` carrying types, ``exclusiveMinimum`` as a boolean beside ``minimum``.
Pydantic emits JSON Schema 2020-12, so this module rewrites it; a test regenerates
the chart's CRD and fails on any difference, so the two never drift.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from controller import API_GROUP, API_VERSION, KIND, PLURAL

from .rule import CanaryRuleSpec
from .status import CanaryRuleStatus

CRD_NAME = f"{PLURAL}.{API_GROUP}"
CRD_FILE = "charts/llm-canary/crds/canaryrules.yaml"
"""Where ``scripts/generate`` writes :func:`render_crd`, relative to the repository root."""

_DROP_KEYS = {"title", "$defs", "examples"}


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    """Rewrite one JSON Schema node into Kubernetes' structural dialect."""
    if isinstance(node, list):
        return [_structural(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        merged = {**copy.deepcopy(defs[name]), **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs)
    out: dict[str, Any] = {}
    nullable = False
    for key, value in node.items():
        if key == "anyOf":
            variants = [v for v in value if v.get("type") != "null"]
            nullable = len(variants) != len(value)
            if len(variants) != 1:
                raise ValueError(f"cannot express anyOf with {len(variants)} typed variants")
            out.update(_structural(variants[0], defs))
        else:
            out.update(_keyword(key, value, defs))
    return _finish(out, nullable)


def _keyword(key: str, value: Any, defs: dict[str, Any]) -> dict[str, Any]:
    """One JSON Schema keyword in the structural dialect (empty: dropped)."""
    if key in _DROP_KEYS or (key == "default" and value is None):
        return {}
    if key == "const":
        return {"enum": [value]}
    if key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
        return {"minimum" if key == "exclusiveMinimum" else "maximum": value, key: True}
    if key == "additionalProperties" and isinstance(value, bool):
        return {"x-kubernetes-preserve-unknown-fields": True} if value else {}
    return {key: _structural(value, defs)}


def _finish(out: dict[str, Any], nullable: bool) -> dict[str, Any]:
    if nullable:
        out["nullable"] = True
    if out.get("type") == "object" and not {"properties", "additionalProperties"} & out.keys():
        out["x-kubernetes-preserve-unknown-fields"] = True
    if not out:
        return {"x-kubernetes-preserve-unknown-fields": True}
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    return out


def structural_schema(model: type[Any]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    result: dict[str, Any] = _structural(raw, defs)
    return result


def build_crd() -> dict[str, Any]:
    """The CRD object (apiextensions.k8s.io/v1) for CanaryRule."""
    spec_schema = structural_schema(CanaryRuleSpec)
    status_schema = structural_schema(CanaryRuleStatus)
    status_schema.pop("required", None)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": ["crule"],
                "categories": ["all", "canary"],
            },
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        {"name": "Step", "type": "integer", "jsonPath": ".status.currentStep"},
                        {"name": "Weight", "type": "integer", "jsonPath": ".status.weight"},
                        {
                            "name": "Message",
                            "type": "string",
                            "jsonPath": ".status.message",
                            "priority": 1,
                        },
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "Canary rollout of an LLM-powered service, decided "
                            "by anytime-valid quality guards.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


def render_crd() -> str:
    header = (
        "# Generated from controller/models by `scripts/generate`. Do not edit.\n"
    )
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=100)
