"""Cost estimation from token usage.

Prices are USD per million tokens (input, output), as providers publish them. A model
not in the table is priced at :data:`DEFAULT_PRICE` (a deliberately non-zero guess, so a
cost budget still bites); self-hosted endpoints should set an override such as ``0,0``.
The table is an estimate for budgeting, not a bill.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Price(BaseModel):
    """USD per million tokens."""

    model_config = ConfigDict(frozen=True)

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)

    @classmethod
    def parse(cls, text: str) -> Price:
        """``"0.15,0.60"`` -> Price (the CLI's ``--price`` format)."""
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 2:
            raise ValueError("price must be INPUT,OUTPUT in USD per million tokens, e.g. 0.15,0.6")
        return cls(input_per_mtok=float(parts[0]), output_per_mtok=float(parts[1]))


PRICES: dict[str, Price] = {
    "gpt-4o-mini": Price(input_per_mtok=0.15, output_per_mtok=0.60),
    "gpt-4o": Price(input_per_mtok=2.50, output_per_mtok=10.00),
    "gpt-4.1": Price(input_per_mtok=2.00, output_per_mtok=8.00),
    "gpt-4.1-mini": Price(input_per_mtok=0.40, output_per_mtok=1.60),
    "gpt-4.1-nano": Price(input_per_mtok=0.10, output_per_mtok=0.40),
    "o4-mini": Price(input_per_mtok=1.10, output_per_mtok=4.40),
}
DEFAULT_PRICE = Price(input_per_mtok=1.00, output_per_mtok=3.00)


def price_for(model: str, override: Price | None = None) -> Price:
    """The override, else the table entry (exact, then longest prefix), else the default."""
    if override is not None:
        return override
    if model in PRICES:
        return PRICES[model]
    prefixes = sorted((m for m in PRICES if model.startswith(m)), key=len, reverse=True)
    return PRICES[prefixes[0]] if prefixes else DEFAULT_PRICE


def estimate_cost(prompt_tokens: int, completion_tokens: int, price: Price) -> float:
    return (prompt_tokens * price.input_per_mtok + completion_tokens * price.output_per_mtok) / 1e6
