"""What the judge model must answer, per stage: pydantic models for validation and the
matching JSON schemas (OpenAI ``strict`` subset: every property required, nullable
instead of optional, no additional properties) for ``response_format``.

A stage answer is validated twice: by type (pydantic) and against the request (the
verdict count matches the criteria, the decision is one of the rule's labels, the policy
flag is present when a policy was given). Either failure triggers the one repair attempt.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from controller.models import Level


class Stage(StrEnum):
    GOAL = "goal"
    CRITERIA = "criteria"
    VERDICTS = "verdicts"
    CHECKS = "checks"
    FAST = "fast"

    @property
    def schema_name(self) -> str:
        return f"judge_{self.value}"


class Answer(BaseModel):
    """Base of every stage answer: unknown keys are ignored (models add them)."""

    model_config = ConfigDict(extra="ignore")


class GoalAnswer(Answer):
    goal: str = Field(min_length=1)


class CriteriaAnswer(Answer):
    criteria: list[str] = Field(min_length=1, max_length=3)


class CriterionAnswer(Answer):
    criterion: str = Field(min_length=1)
    verdict: Level
    reason: str

    @field_validator("verdict", mode="before")
    @classmethod
    def _normalise(cls, value: Any) -> Any:
        # Models often capitalise ("Fully"); a number is still rejected as a wrong type.
        return value.strip().lower() if isinstance(value, str) else value


class VerdictsAnswer(Answer):
    verdicts: list[CriterionAnswer] = Field(min_length=1, max_length=3)


class ChecksAnswer(Answer):
    policy_violation: bool | None = None
    policy_reason: str | None = None
    decision: str | None = None


class FastAnswer(ChecksAnswer):
    goal: str = Field(min_length=1)
    criteria: list[CriterionAnswer] = Field(min_length=1, max_length=3)


ANSWER_MODELS: dict[Stage, type[Answer]] = {
    Stage.GOAL: GoalAnswer,
    Stage.CRITERIA: CriteriaAnswer,
    Stage.VERDICTS: VerdictsAnswer,
    Stage.CHECKS: ChecksAnswer,
    Stage.FAST: FastAnswer,
}

_LEVELS = [level.value for level in Level]


def _obj(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _criterion_verdict() -> dict[str, Any]:
    return _obj(
        {
            "criterion": {"type": "string"},
            "verdict": {"type": "string", "enum": _LEVELS},
            "reason": {"type": "string"},
        }
    )


def _checks(policy: bool, labels: tuple[str, ...]) -> dict[str, Any]:
    props: dict[str, Any] = {}
    if policy:
        props["policy_violation"] = {"type": "boolean"}
        props["policy_reason"] = {"type": "string"}
    if labels:
        props["decision"] = {"type": ["string", "null"], "enum": [*labels, None]}
    return props


def json_schema(stage: Stage, policy: bool, labels: tuple[str, ...]) -> dict[str, Any]:
    """The JSON schema of one stage's answer (the ``schema`` part of ``response_format``)."""
    if stage is Stage.GOAL:
        return _obj({"goal": {"type": "string"}})
    if stage is Stage.CRITERIA:
        texts = {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3}
        return _obj({"criteria": texts})
    verdicts = {"type": "array", "items": _criterion_verdict(), "minItems": 1, "maxItems": 3}
    if stage is Stage.VERDICTS:
        return _obj({"verdicts": verdicts})
    if stage is Stage.CHECKS:
        return _obj(_checks(policy, labels))
    return _obj({"goal": {"type": "string"}, "criteria": verdicts, **_checks(policy, labels)})


def check_answer(
    answer: Answer, *, policy: bool, labels: tuple[str, ...], n_criteria: int | None = None
) -> None:
    """Request-dependent checks the type system cannot express; raises ValueError."""
    if (
        isinstance(answer, VerdictsAnswer)
        and n_criteria is not None
        and len(answer.verdicts) != n_criteria
    ):
        raise ValueError(
            f"expected exactly {n_criteria} verdicts (one per criterion), "
            f"got {len(answer.verdicts)}"
        )
    if isinstance(answer, ChecksAnswer):
        if policy and answer.policy_violation is None:
            raise ValueError("policy_violation (true or false) is required")
        if labels and answer.decision is not None and answer.decision not in labels:
            raise ValueError(
                f"decision {answer.decision!r} is not one of: {', '.join(labels)} (or null)"
            )
