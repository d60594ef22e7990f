"""Builders shared by the analysis tests (rule specs and samples)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from controller.models import CanaryRuleSpec, Cohort, RecordedVerdict, Risk, Sample

TS = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def make_spec(guards: list[dict[str, Any]], **analysis: Any) -> CanaryRuleSpec:
    """A valid rule spec with the given guards (camelCase dicts) and analysis fields."""
    body: dict[str, Any] = {
        "targetRef": {"name": "assistant"},
        "canary": {"image": "assistant:v2"},
        "steps": [{"weight": 10}, {"weight": 50}],
        "analysis": {"guards": guards, **analysis},
        "judge": {"model": "judge-model", "threshold": 0.7},
    }
    if any(g.get("metric") == "prometheus" for g in guards):
        body["metrics"] = {
            "prometheusUrl": "http://127.0.0.1:9090",
            "queries": [{"name": "errors", "events": "sum(errors{cohort='${cohort}'})"}],
        }
    return CanaryRuleSpec.model_validate(body)


def make_sample(
    i: int,
    cohort: Cohort | str = Cohort.CANARY,
    *,
    queue: str = "default",
    risk: Risk | str = Risk.LOW,
    score: float | None = 0.9,
    judge_policy: bool | None = None,
    judge_decision: str | None = None,
    validate: bool = True,
    **fields: Any,
) -> Sample:
    """One sample; ``score=None`` leaves it unjudged. ``validate=False`` skips pydantic
    validation (for large simulations; inputs are trusted there)."""
    judge = None
    if score is not None:
        judge = RecordedVerdict(score=score, policy_violation=judge_policy,
                                decision=judge_decision)
    data: dict[str, Any] = {
        "id": f"s{i}-{cohort}",
        "rule": "r",
        "cohort": Cohort(cohort),
        "ts": TS,
        "queue": queue,
        "risk": Risk(risk),
        "input": "q",
        "output": "a",
        "latency_ms": 1000.0,
        "cost_usd": 0.01,
        "fallback": False,
        "judge": judge,
    }
    data.update(fields)
    if validate:
        return Sample.model_validate(data)
    return Sample.model_construct(**data)
