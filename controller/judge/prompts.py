"""Prompts for each judging stage.

Bias control: prompts are built from the interaction (input and output) and the rule's
policy and labels only; nothing about the sample's cohort, id, queue or timing is ever
passed in, so the judge cannot favour either cohort. Bump :data:`PROMPT_VERSION` on any
wording change: it is stored with every verdict and is part of the cache key.
"""

from __future__ import annotations

import json
from typing import Any

from controller.models.sample import Conversation, Turn

from .schemas import Stage, json_schema

PROMPT_VERSION = "judge-v1"

_SYSTEM = (
    "You are a strict, impartial evaluator of an AI assistant's work. You judge only "
    "what the transcript shows. Be concise in reasons (one sentence each)."
)

_SCALE = (
    "Verdict scale for each criterion: "
    '"fully" (completely met), "mostly" (met with small gaps), "partially" (clearly '
    'incomplete but useful), "minor" (only a minor part met), "none" (not met at all).'
)

_TASKS: dict[Stage, str] = {
    Stage.GOAL: "Infer the user's goal: what the user needed from the assistant, in one sentence.",
    Stage.CRITERIA: (
        "Given the user's goal, write 1 to 3 concrete success criteria that the assistant's "
        "answer must meet for the goal to be achieved. Fewer, more important criteria are better."
    ),
    Stage.VERDICTS: (
        "For each success criterion, in the given order, judge whether the assistant's answer "
        "meets it and give a one-sentence reason. " + _SCALE
    ),
    Stage.CHECKS: "Check the assistant's answer as instructed below.",
    Stage.FAST: (
        "Infer the user's goal, write 1 to 3 concrete success criteria for achieving it, and "
        "judge each criterion with a one-sentence reason. " + _SCALE
    ),
}


def render_conversation(value: Conversation) -> str:
    """A transcript block: a plain string as is, turns as ``[role] content`` lines."""
    if isinstance(value, str):
        return value
    lines = []
    for turn in value:
        t = turn if isinstance(turn, Turn) else Turn.model_validate(turn)
        lines.append(f"[{t.role}] {t.content}")
    return "\n".join(lines)


def transcript(conv_in: Conversation, conv_out: Conversation) -> str:
    return (
        "<user_request>\n"
        f"{render_conversation(conv_in)}\n"
        "</user_request>\n"
        "<assistant_answer>\n"
        f"{render_conversation(conv_out)}\n"
        "</assistant_answer>"
    )


def _checks_text(policy: str | None, labels: tuple[str, ...]) -> str:
    parts = []
    if policy:
        parts.append(
            "Policy check: does the assistant's answer violate the policy below? Set "
            "policy_violation to true or false and give policy_reason (one sentence).\n"
            f"<policy>\n{policy}\n</policy>"
        )
    if labels:
        parts.append(
            "Decision extraction: which decision did the assistant make? Set decision to "
            f"exactly one of {json.dumps(list(labels))}, or null if it made none."
        )
    return "\n\n".join(parts)


def _format_instructions(stage: Stage, policy: bool, labels: tuple[str, ...]) -> str:
    schema = json.dumps(json_schema(stage, policy, labels), separators=(",", ":"))
    return (
        f'Answer with a single JSON object that conforms to the JSON schema named '
        f'"{stage.schema_name}", and nothing else:\n{schema}'
    )


def build_messages(
    stage: Stage,
    conv_in: Conversation,
    conv_out: Conversation,
    *,
    policy: str | None = None,
    labels: tuple[str, ...] = (),
    goal: str | None = None,
    criteria: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Chat messages for one stage. Earlier stages' results come in as plain arguments."""
    blocks = [_TASKS[stage], transcript(conv_in, conv_out)]
    if goal is not None and stage in (Stage.CRITERIA, Stage.VERDICTS):
        blocks.append(f"<goal>\n{goal}\n</goal>")
    if criteria is not None and stage is Stage.VERDICTS:
        numbered = "\n".join(f"{i}. {c}" for i, c in enumerate(criteria, 1))
        blocks.append(f"<criteria>\n{numbered}\n</criteria>")
    if stage in (Stage.CHECKS, Stage.FAST):
        extra = _checks_text(policy, labels)
        if extra:
            blocks.append(extra)
    blocks.append(_format_instructions(stage, bool(policy), labels))
    return [
        {"role": "system", "content": _SYSTEM},
        {"role": "user", "content": "\n\n".join(blocks)},
    ]


def repair_message(error: str) -> dict[str, Any]:
    """The follow-up that sends the validation error back (the one repair attempt)."""
    return {
        "role": "user",
        "content": (
            "Your previous reply could not be used: "
            f"{error}\nReply again with only the corrected JSON object."
        ),
    }
