"""The sample record: one real interaction from one cohort, as an application reports it.

These models are the ingestion contract. Their field descriptions, units and examples are
published as JSON Schema (``docs/schemas/``, served at ``GET /v1/schema``), so every
constraint written here is what a client sees. Numbers must be finite: ``NaN`` and
``Infinity`` are refused at parse time, never stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from .verdict import RecordedVerdict

NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
"""A Kubernetes object name (DNS subdomain): what ``metadata.name`` of a CanaryRule accepts."""
NAMESPACE_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
"""A Kubernetes namespace name (DNS label)."""
DEFAULT_NAMESPACE = "default"

MAX_LATENCY_MS = 86_400_000.0
"""One day: no interaction a user waited for takes longer; more is a unit or encoding bug."""
MAX_COST_USD = 1_000_000.0
"""Per interaction."""
MAX_CORRECTION_MINUTES = 525_600.0
"""One year of one person's time."""


@dataclass(frozen=True, order=True)
class RuleKey:
    """A CanaryRule's identity: evidence is kept per namespace and rule name, so a rule
    ``bot`` in two namespaces never shares samples."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


class Cohort(StrEnum):
    BASELINE = "baseline"
    CANARY = "canary"


class Risk(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class Turn(BaseModel):
    """One conversational turn; extra keys (tool calls, names) are kept."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={"examples": [{"role": "user", "content": "Where is my refund?"}]},
    )
    role: str = Field(description="Who spoke: system, user, assistant or tool.")
    content: str = Field(description="The text of the turn.")


Conversation = str | list[Turn]

_CONVERSATION_HELP = "plain text, or a list of turns {role, content} in the order they happened"

SAMPLE_EXAMPLE: dict[str, Any] = {
    "id": "req-7f3c2a",
    "rule": "support-assistant",
    "cohort": "canary",
    "revision": "5d41402abc4b",
    "ts": "2026-11-22T12:00:00Z",
    "queue": "billing",
    "risk": "medium",
    "input": [{"role": "user", "content": "I was charged twice for order 1042."}],
    "output": "Sorry about that: I have opened a refund of 24.90 EUR for the duplicate charge.",
    "latency_ms": 1840,
    "cost_usd": 0.0031,
    "fallback": False,
    "task": "refund",
    "decision": "approve",
}


class Sample(BaseModel):
    """One interaction served by one cohort. Ids are idempotency keys.

    Unknown fields are kept with the record but never analysed (forward compatibility:
    send custom signals freely; a misspelt known field is *not* detected, so check names
    against this schema).
    """

    model_config = ConfigDict(extra="allow", allow_inf_nan=False,
                              json_schema_extra={"examples": [SAMPLE_EXAMPLE]})

    id: str = Field(
        min_length=1,
        max_length=256,
        description="Unique idempotency key. A record whose id is already stored is dropped, so "
        "clients may retry a batch freely. Feedback names the sample by this id.",
        examples=["req-7f3c2a"],
    )
    rule: str = Field(
        min_length=1,
        max_length=253,
        pattern=NAME_PATTERN,
        description="metadata.name of the CanaryRule this interaction is evidence for. A name "
        "that matches no CanaryRule is refused (reject kind unknown_rule).",
        examples=["support-assistant"],
    )
    namespace: str | None = Field(
        default=None,
        max_length=63,
        pattern=NAMESPACE_PATTERN,
        description="Namespace of the CanaryRule. Default: the namespace of the ServiceAccount "
        "that reports.",
        examples=["default"],
    )
    cohort: Cohort = Field(
        description="Who served it: the value of CANARY_COHORT in the serving pod; pods without "
        "that variable are the baseline.",
    )
    revision: str | None = Field(
        default=None,
        max_length=63,
        description="The canary revision that served it: CANARY_REVISION in canary pods. Absent "
        "for the baseline. Lets the controller ignore samples from an older canary.",
        examples=["5d41402abc4b"],
    )
    ts: AwareDatetime = Field(
        description="When it was served: RFC 3339 with a time zone.",
        examples=["2026-11-22T12:00:00Z"],
    )
    queue: str = Field(
        default="default",
        min_length=1,
        max_length=128,
        description="Traffic segment (team, product area, channel); guards with groupBy: [queue] "
        "test each one on its own.",
        examples=["billing"],
    )
    risk: Risk = Field(default=Risk.LOW, description="Risk tier of the request.")
    input: Conversation = Field(description=f"What the user sent: {_CONVERSATION_HELP}.")
    output: Conversation = Field(description=f"What the service answered: {_CONVERSATION_HELP}.")
    latency_ms: float = Field(
        ge=0,
        le=MAX_LATENCY_MS,
        allow_inf_nan=False,
        description="End-to-end latency as the user saw it, in milliseconds.",
        examples=[1840],
    )
    cost_usd: float | None = Field(
        ge=0,
        le=MAX_COST_USD,
        allow_inf_nan=False,
        description="What serving it cost, in US dollars. Required; null when unknown (a sample "
        "of unknown cost counts for every metric but cost, and is not trusted when the rule "
        "sets analysis.trusted.costBudgetUsd).",
        examples=[0.0031],
    )
    fallback: bool = Field(
        description="True when the fallback path answered (a canned reply, a human handoff, an "
        "older model) instead of the normal one.",
    )
    policy_violation: bool | None = Field(
        default=None,
        description="The application's own policy check, when it has one; otherwise the "
        "judge's flag is used.",
    )
    decision: str | None = Field(
        default=None,
        max_length=256,
        description="The system's decision label for classification tasks (compared with "
        "label for F1).",
        examples=["approve"],
    )
    label: str | None = Field(
        default=None,
        max_length=256,
        description="Ground-truth label, usually sent later as feedback.",
        examples=["approve"],
    )
    task: str | None = Field(
        default=None,
        max_length=128,
        description="Task kind; F1 is also tested per task kind.",
        examples=["refund"],
    )
    correction_minutes: float | None = Field(
        default=None,
        ge=0,
        le=MAX_CORRECTION_MINUTES,
        allow_inf_nan=False,
        description="Minutes a human spent correcting the output, usually sent later as "
        "feedback.",
        examples=[2.5],
    )
    accepted: bool | None = Field(
        default=None,
        description="Whether the output was used, as it was or after edits; false when it was "
        "discarded or rejected. Usually sent later as feedback. Guards with "
        "per: acceptedOutput measure correction burden over outputs not discarded.",
    )
    judge: RecordedVerdict | None = Field(
        default=None,
        description="A verdict recorded elsewhere (offline replays). In a cluster the "
        "controller's own judge decides and a client-sent verdict is ignored unless the rule "
        "opts in.",
    )
    feedback_closed: bool = Field(
        default=False,
        description="Server-owned, never sent by clients (ingestion refuses it): set by the "
        "controller, and by canaryctl analyze, once the rule's analysis.feedbackWindow has "
        "passed since ts. From then on an output without correction_minutes counts as 0 "
        "correction minutes.",
    )

    @property
    def key(self) -> RuleKey:
        return RuleKey(self.namespace or DEFAULT_NAMESPACE, self.rule)

    def extras(self) -> dict[str, Any]:
        """Fields the record carried that the schema does not know."""
        return dict(self.model_extra or {})


FEEDBACK_EXAMPLE: dict[str, Any] = {
    "id": "req-7f3c2a",
    "rule": "support-assistant",
    "correction_minutes": 2.5,
    "label": "approve",
    "accepted": False,
}


class Feedback(BaseModel):
    """Delayed human feedback, joined to a sample by id; may arrive before its sample.

    Several records for one id are applied in order; a field left out (or null) keeps its
    previous value. Unknown fields are refused: feedback only ever sets the three fields
    below, so a misspelt one must not vanish silently.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False,
                              json_schema_extra={"examples": [FEEDBACK_EXAMPLE]})

    id: str = Field(
        min_length=1, max_length=256, description="The id of the sample it is about.",
        examples=["req-7f3c2a"],
    )
    rule: str = Field(
        min_length=1,
        max_length=253,
        pattern=NAME_PATTERN,
        description="The sample's CanaryRule (feedback is authorised per rule before anything "
        "is stored).",
        examples=["support-assistant"],
    )
    namespace: str | None = Field(
        default=None,
        max_length=63,
        pattern=NAMESPACE_PATTERN,
        description="The rule's namespace; default: the reporting ServiceAccount's namespace.",
    )
    correction_minutes: float | None = Field(
        default=None,
        ge=0,
        le=MAX_CORRECTION_MINUTES,
        allow_inf_nan=False,
        description="Minutes a human spent correcting the output.",
        examples=[2.5],
    )
    label: str | None = Field(
        default=None, max_length=256, description="Ground-truth label (for F1).",
        examples=["approve"],
    )
    accepted: bool | None = Field(
        default=None,
        description="Whether the output was used, as it was or after edits; false when it was "
        "discarded or rejected.",
    )

    @property
    def key(self) -> RuleKey:
        return RuleKey(self.namespace or DEFAULT_NAMESPACE, self.rule)

    def overlay(self) -> dict[str, Any]:
        """The sample fields this feedback sets. ``None`` means "nothing to say", never
        "clear"; the addressing fields (id, rule, namespace) are not sample values."""
        data = self.model_dump(mode="json", include={"correction_minutes", "label", "accepted"})
        return {k: v for k, v in data.items() if v is not None}
