"""Judge settings: what a rule's ``spec.judge`` says plus the knobs only operators touch.

The API key is deliberately *not* a setting: settings are logged, printed and compared,
the key must never be. It travels separately (see :mod:`controller.judge.secrets`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from controller.models import DEFAULT_THRESHOLD, JudgeSpec

from .cost import Price

Mode = Literal["fast", "thorough"]


class JudgeSettings(BaseModel):
    """Everything the judge needs except the API key."""

    model_config = ConfigDict(frozen=True)

    model: str = Field(min_length=1)
    base_url: str | None = Field(default=None, description="None: the openai client default.")
    mode: Mode = "fast"
    threshold: float = Field(default=DEFAULT_THRESHOLD, ge=0, le=1)
    temperature: float = Field(default=0.1, gt=0, description="Aggregation strictness.")
    policy: str | None = None
    decision_labels: tuple[str, ...] = ()
    timeout_seconds: float = Field(default=30.0, gt=0)
    max_retries: int = Field(default=3, ge=0, le=10)
    concurrency: int = Field(default=8, ge=1, le=256)
    max_calls_per_interval: int | None = Field(default=None, ge=1)
    max_cost_usd_per_interval: float | None = Field(default=None, gt=0)
    interval_seconds: float = Field(default=60.0, gt=0)
    sampling_temperature: float = Field(
        default=0.0, ge=0, le=2, description="The judge model's own sampling temperature."
    )
    max_tokens: int = Field(default=1024, ge=16)
    backoff_base_seconds: float = Field(default=0.5, ge=0)
    backoff_max_seconds: float = Field(default=20.0, ge=0)
    max_retry_after_seconds: float = Field(
        default=30.0, ge=0, description="Cap on a server's Retry-After."
    )
    price: Price | None = Field(default=None, description="Override the price table.")

    @classmethod
    def from_spec(
        cls, spec: JudgeSpec, interval_seconds: float = 60.0, **overrides: Any
    ) -> JudgeSettings:
        """Settings for a rule's judge; ``overrides`` (None values skipped) win."""
        values: dict[str, Any] = {
            "model": spec.model,
            "base_url": spec.base_url,
            "mode": spec.mode,
            "threshold": spec.threshold,
            "temperature": spec.temperature,
            "policy": spec.policy,
            "decision_labels": tuple(spec.decision_labels),
            "timeout_seconds": spec.timeout_seconds,
            "max_retries": spec.max_retries,
            "concurrency": spec.concurrency,
            "max_calls_per_interval": spec.budget.max_calls_per_interval,
            "max_cost_usd_per_interval": spec.budget.max_cost_usd_per_interval,
            "interval_seconds": interval_seconds,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def endpoint(self) -> str:
        """A stable name for the endpoint (for remembering its structured-output support)."""
        return (self.base_url or "https://api.openai.com/v1").rstrip("/")
