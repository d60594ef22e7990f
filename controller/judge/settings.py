"""Judge settings: what a rule's ``spec.judge`` says plus the knobs only operators touch.

The API key is deliberately *not* a setting: settings are logged, printed and compared,
the key must never be. It travels separately (see :mod:`controller.judge.api_keys`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from controller.models import DEFAULT_THRESHOLD, Aggregation, JudgeSpec
from controller.models.price import Price, price_for
from controller.models.rule import Redaction
from controller.models.verdict import check_temperature

Mode = Literal["fast", "thorough"]


class JudgeSettings(BaseModel):
    """Everything the judge needs except the API key."""

    model_config = ConfigDict(frozen=True)

    model: str = Field(min_length=1)
    base_url: str | None = Field(default=None, description="None: the openai client default.")
    mode: Mode = "fast"
    threshold: float = Field(default=DEFAULT_THRESHOLD, ge=0, le=1)
    aggregation: Aggregation = Aggregation.EVAL_LIB
    temperature: float | None = Field(
        default=None, gt=0, description="Aggregation strictness; None: the aggregation's default."
    )
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
    redaction: Redaction | None = Field(
        default=None, description="What the judge may see (controller.judge.redaction)."
    )

    @model_validator(mode="after")
    def _check(self) -> JudgeSettings:
        if self.temperature is not None:
            check_temperature(self.aggregation, self.temperature)
        if self.max_cost_usd_per_interval is not None and self.unit_price is None:
            raise ValueError(
                f"a cost budget needs a price: model {self.model!r} at {self.endpoint} has "
                "none (pass --price IN,OUT or set judge.price, or budget calls instead)"
            )
        return self

    @property
    def effective_temperature(self) -> float:
        """The temperature set, else the aggregation's default (0.5 evalLib, 0.1 softMin)."""
        if self.temperature is not None:
            return self.temperature
        return Aggregation(self.aggregation).default_temperature

    @property
    def unit_price(self) -> Price | None:
        """The price that applies (override or OpenAI's table), None when unknown."""
        return price_for(self.model, self.base_url, self.price)

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
            "aggregation": spec.aggregation,
            "temperature": spec.temperature,
            "policy": spec.policy,
            "decision_labels": tuple(spec.decision_labels),
            "timeout_seconds": spec.timeout_seconds,
            "max_retries": spec.max_retries,
            "concurrency": spec.concurrency,
            "max_calls_per_interval": spec.budget.max_calls_per_interval,
            "max_cost_usd_per_interval": spec.budget.max_cost_usd_per_interval,
            "interval_seconds": interval_seconds,
            "price": spec.price,
            "redaction": spec.redaction,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def endpoint(self) -> str:
        """A stable name for the endpoint (for remembering its structured-output support)."""
        return (self.base_url or "https://api.openai.com/v1").rstrip("/")
