"""The sample record (DESIGN §5): one real interaction from one cohort."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from .verdict import RecordedVerdict

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

    model_config = ConfigDict(extra="allow")
    role: str
    content: str


Conversation = str | list[Turn]


class Sample(BaseModel):
    """One interaction. Unknown fields are kept but ignored (forward compatibility)."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    id: str = Field(min_length=1, description="Unique idempotency key; duplicates are dropped.")
    rule: str = Field(min_length=1)
    namespace: str | None = Field(
        default=None, description="The rule's namespace (default: the caller's, else default)."
    )
    cohort: Cohort
    ts: AwareDatetime
    queue: str = Field(default="default", min_length=1)
    risk: Risk = Risk.LOW
    input: Conversation
    output: Conversation
    latency_ms: float = Field(ge=0, le=MAX_LATENCY_MS, allow_inf_nan=False)
    cost_usd: float = Field(ge=0, le=MAX_COST_USD, allow_inf_nan=False)
    fallback: bool
    policy_violation: bool | None = None
    decision: str | None = None
    label: str | None = None
    task: str | None = None
    correction_minutes: float | None = Field(
        default=None, ge=0, le=MAX_CORRECTION_MINUTES, allow_inf_nan=False)
    judge: RecordedVerdict | None = None
    revision: str | None = Field(
        default=None,
        description="The canary revision that served it (CANARY_REVISION in canary pods).",
    )

    @property
    def key(self) -> RuleKey:
        return RuleKey(self.namespace or DEFAULT_NAMESPACE, self.rule)

    def extras(self) -> dict[str, Any]:
        """Fields the record carried that the schema does not know."""
        return dict(self.model_extra or {})


class Feedback(BaseModel):
    """Delayed human feedback, joined to a sample by id."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    id: str = Field(min_length=1)
    rule: str = Field(min_length=1, description="The rule of the sample it corrects.")
    namespace: str | None = None
    correction_minutes: float | None = Field(
        default=None, ge=0, le=MAX_CORRECTION_MINUTES, allow_inf_nan=False)
    label: str | None = None

    @property
    def key(self) -> RuleKey:
        return RuleKey(self.namespace or DEFAULT_NAMESPACE, self.rule)
