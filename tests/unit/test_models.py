"""The CanaryRule model: shipped rules validate; bad manifests are named precisely."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from controller.models import CanaryRule, Metric, parse_duration
from controller.models.manifest import parse_rule
from controller.sources.manifests import load_rules
from tests.support import ROOT

RULE_FILES = sorted((ROOT / "rules").glob("*.yaml"))


def _support() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "rules" / "support-assistant.yaml").read_text())
    return doc


def _errors(doc: dict[str, Any]) -> list[str]:
    result = parse_rule(doc, "x.yaml", 0)
    assert isinstance(result, list), "expected the manifest to be rejected"
    return [f"{e.path}: {e.reason}" for e in result]


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_every_shipped_rule_validates(path: Path) -> None:
    rules, errors = load_rules([str(path)])
    assert errors == []
    assert len(rules) >= 1


def test_shipped_rules_cover_what_users_need() -> None:
    rules, _ = load_rules([str(ROOT / "rules")])
    by_name = {r.rule.metadata.name: r.rule for r in rules}
    support = by_name["support-assistant"].spec
    metrics = {g.metric for g in support.analysis.guards}
    assert metrics >= {
        Metric.TRUSTED_COMPLETION,
        Metric.CORRECTION_BURDEN,
        Metric.FALLBACK_RATE,
        Metric.POLICY_FAILURE_RATE,
        Metric.F1,
        Metric.LATENCY,
        Metric.COST,
    }
    claims = by_name["claims-triage"].spec
    trusted = next(g for g in claims.analysis.guards if g.metric is Metric.TRUSTED_COMPLETION)
    assert trusted.tolerance_for(risk="high") > trusted.tolerance  # stricter: smaller drop
    assert trusted.tolerance_for(queue="fraud", risk="low") == 0.0
    assert len(by_name["faq-bot"].spec.analysis.guards) == 1


@pytest.mark.parametrize(
    ("mutate", "path", "fragment"),
    [
        (
            lambda d: d["spec"]["steps"].__setitem__(1, {"weight": 3}),
            "spec.steps[1].weight",
            "increase",
        ),
        (
            lambda d: d["spec"]["steps"].append({"weight": 101}),
            "spec.steps[3].weight",
            "less than or equal to 100",
        ),
        (
            lambda d: d["spec"]["analysis"]["guards"][0].__setitem__("tolerance", 0.02),
            "spec.analysis.guards[0].tolerance",
            "wrong sign",
        ),
        (
            lambda d: d["spec"]["analysis"]["guards"][2].__setitem__("tolerance", -0.01),
            "spec.analysis.guards[2].tolerance",
            "wrong sign",
        ),
        (
            lambda d: d["spec"]["analysis"].__setitem__("alpha", 0.5),
            "spec.analysis.alpha",
            "less than 0.5",
        ),
        (
            lambda d: d["spec"]["analysis"].__setitem__("alpha", 0),
            "spec.analysis.alpha",
            "greater than 0",
        ),
        (
            lambda d: d["spec"]["analysis"].__setitem__("interval", "soon"),
            "spec.analysis.interval",
            "invalid duration",
        ),
        (
            lambda d: d["spec"]["analysis"]["guards"].append(
                {"name": "errs", "metric": "prometheus", "tolerance": 0.1, "query": "nope"}
            ),
            "spec.analysis.guards[7].query",
            "names no metrics.queries entry",
        ),
        (lambda d: d["spec"].pop("targetRef"), "spec.targetRef", "required"),
        (
            lambda d: d["spec"]["canary"].__setitem__("imagee", "x"),
            "spec.canary.imagee",
            "unknown field",
        ),
        (lambda d: d.__setitem__("apiVersion", "v1"), "apiVersion", "canary.llmops.dev/v1alpha1"),
        (
            lambda d: d["spec"]["analysis"]["guards"][1].__setitem__("name", "fallback"),
            "spec.analysis.guards",
            "unique",
        ),
        (
            lambda d: d["spec"]["analysis"]["guards"][0].__setitem__(
                "overrides", [{"tolerance": -0.01}]
            ),
            "spec.analysis.guards[0].overrides[0]",
            "queue or a risk",
        ),
    ],
)
def test_invalid_manifest_names_the_field(mutate: Any, path: str, fragment: str) -> None:
    doc = copy.deepcopy(_support())
    mutate(doc)
    errors = _errors(doc)
    assert any(e.startswith(path + ":") and fragment in e for e in errors), errors


def test_errors_carry_file_and_document_index(tmp_path: Path) -> None:
    good = yaml.safe_dump(_support())
    bad = _support()
    bad["spec"]["analysis"]["alpha"] = 2
    (tmp_path / "multi.yaml").write_text(good + "---\n" + yaml.safe_dump(bad))
    rules, errors = load_rules([str(tmp_path)])
    assert len(rules) == 1
    assert [str(e) for e in errors] == [
        f"{tmp_path / 'multi.yaml'}[1]: spec.analysis.alpha: Input should be less than 0.5"
    ]


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("apiVersion: x\nspec: [a\n  b: c\n")
    _, errors = load_rules([str(tmp_path / "broken.yaml")])
    assert len(errors) == 1 and errors[0].line is not None
    assert "YAML syntax" in errors[0].reason


def test_defaults_fill_in_for_a_minimal_rule() -> None:
    rules, _ = load_rules([str(ROOT / "rules" / "minimal.yaml")])
    analysis = rules[0].rule.spec.analysis
    assert analysis.alpha == 0.05 and analysis.on_inconclusive == "hold"
    assert parse_duration(analysis.interval) == 60


def test_round_trip_through_aliases() -> None:
    rule = CanaryRule.model_validate(_support())
    dumped = rule.model_dump(by_alias=True, exclude_none=True, mode="json")
    assert CanaryRule.model_validate(dumped) == rule
    assert "targetRef" in dumped["spec"]


@given(
    st.lists(
        st.tuples(
            st.integers(min_value=1, max_value=500), st.sampled_from(["ms", "s", "m", "h", "d"])
        ),
        min_size=1,
        max_size=4,
    )
)
def test_duration_parser_sums_parts(parts: list[tuple[int, str]]) -> None:
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    text = "".join(f"{n}{u}" for n, u in parts)
    assert parse_duration(text) == pytest.approx(sum(n * scale[u] for n, u in parts))


@given(st.text(max_size=12))
def test_duration_parser_never_crashes(text: str) -> None:
    try:
        assert parse_duration(text) > 0
    except ValueError as exc:
        assert "duration" in str(exc)


@pytest.mark.parametrize(
    ("guard", "path", "reason"),
    [
        ({"metric": "fallbackRate", "tolerance": 0.02, "statistic": "p95"},
         "statistic", "quantiles are for metrics latency and cost"),
        ({"metric": "fbeta", "tolerance": -0.02}, "beta", "is required for metric 'fbeta'"),
        ({"metric": "f1", "tolerance": -0.02, "beta": 2}, "beta", "is only for metric 'fbeta'"),
        ({"metric": "latency", "tolerance": 0.1, "label": "x"}, "label", "only for metrics"),
        ({"metric": "latency", "tolerance": 0.1, "per": "acceptedOutput"}, "per",
         "only for metric 'correctionBurden'"),
        ({"metric": "taskSuccess", "tolerance": -0.02, "minimum": 1.5}, "minimum",
         "not a rate between 0 and 1"),
        ({"metric": "latency", "tolerance": 0.1, "minimum": 900, "maximum": 800}, "maximum",
         "below minimum"),
        ({"metric": "fallbackRate", "tolerance": 0.02, "mustPass": ["risk=high"]},
         "mustPass[0]", "not a slicing dimension"),
        ({"metric": "fallbackRate", "tolerance": 0.02, "groupBy": ["risk"],
          "mustPass": ["risk=severe"]}, "mustPass[0]", "risk is one of"),
        ({"metric": "latency", "tolerance": 0.1, "minimum": float("inf")}, "minimum",
         "finite"),
    ],
)
def test_guard_variants_are_checked(guard: dict[str, Any], path: str, reason: str) -> None:
    doc = _support()
    doc["spec"]["analysis"]["guards"] = [{"name": "g", **guard}]
    errors = _errors(doc)
    assert any(e.startswith(f"spec.analysis.guards[0].{path}") and reason in e
               for e in errors), errors


def test_must_pass_accepts_tasks_for_decision_metrics_and_whole_dimensions() -> None:
    doc = _support()
    doc["spec"]["analysis"]["guards"] = [
        {"name": "f1", "metric": "recall", "label": "escalate", "tolerance": -0.02,
         "mustPass": ["task", "task=claims"]},
        {"name": "fb", "metric": "fallbackRate", "tolerance": 0.02, "groupBy": ["risk"],
         "mustPass": ["risk"]}]
    result = parse_rule(doc, "x.yaml", 0)
    assert not isinstance(result, list), result


def test_budget_and_threshold_entries_need_a_selector() -> None:
    doc = _support()
    doc["spec"]["analysis"]["trusted"]["budgets"] = [{"latencyMs": 100}]
    assert any("needs a task, queue or risk" in e for e in _errors(doc))
    doc = _support()
    doc["spec"]["judge"]["thresholds"] = [{"threshold": 0.5}]
    assert any("needs a task or a queue" in e for e in _errors(doc))
