"""What judge tokens cost, and where a price may be assumed at all.

A cost is reported only when a price is *known*: the rule's ``judge.price`` (or the CLI's
``--price``), else the built-in table below, which holds OpenAI's published list prices
(USD per million tokens, standard tier, uncached input) and therefore applies only to
OpenAI's own API (no ``baseUrl``, or ``https://api.openai.com``). Any other endpoint, a
self-hosted vLLM or Ollama, a LiteLLM proxy, Azure, reports tokens only and its cost is
``null``: never a made-up number. The table is an estimate for budgets, not a bill.
"""

from __future__ import annotations

import math
from urllib.parse import urlsplit

from pydantic import Field

from .base import KubeModel

HOSTED_HOST = "api.openai.com"


class Price(KubeModel):
    """USD per million tokens (``inputPerMtok``, ``outputPerMtok``)."""

    model_config = KubeModel.model_config | {"frozen": True}

    input_per_mtok: float = Field(ge=0, allow_inf_nan=False)
    output_per_mtok: float = Field(ge=0, allow_inf_nan=False)

    @classmethod
    def parse(cls, text: str) -> Price:
        """``"0.15,0.60"`` -> Price (the CLI's ``--price`` format)."""
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 2:
            raise ValueError("price must be INPUT,OUTPUT in USD per million tokens, e.g. 0.15,0.6")
        values = [float(p) for p in parts]
        if not all(math.isfinite(v) and v >= 0 for v in values):
            raise ValueError("prices must be finite numbers >= 0")
        return cls(input_per_mtok=values[0], output_per_mtok=values[1])


HOSTED_PRICES: dict[str, Price] = {
    "gpt-4o-mini": Price(input_per_mtok=0.15, output_per_mtok=0.60),
    "gpt-4o": Price(input_per_mtok=2.50, output_per_mtok=10.00),
    "gpt-4.1": Price(input_per_mtok=2.00, output_per_mtok=8.00),
    "gpt-4.1-mini": Price(input_per_mtok=0.40, output_per_mtok=1.60),
    "gpt-4.1-nano": Price(input_per_mtok=0.10, output_per_mtok=0.40),
    "o4-mini": Price(input_per_mtok=1.10, output_per_mtok=4.40),
}
"""OpenAI list prices; a dated model name (``gpt-4o-mini-2024-07-18``) takes its family's
price by longest prefix."""


def is_hosted(base_url: str | None) -> bool:
    """True for OpenAI's own API (the openai client's default when no base URL is set)."""
    if base_url is None:
        return True
    return (urlsplit(base_url).hostname or "").lower() == HOSTED_HOST


def price_for(model: str, base_url: str | None, override: Price | None = None) -> Price | None:
    """The override, else the table's price for a model on OpenAI's API, else None."""
    if override is not None:
        return override
    if not is_hosted(base_url):
        return None
    if model in HOSTED_PRICES:
        return HOSTED_PRICES[model]
    prefixes = sorted((m for m in HOSTED_PRICES if model.startswith(m)), key=len, reverse=True)
    return HOSTED_PRICES[prefixes[0]] if prefixes else None
