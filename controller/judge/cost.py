"""Cost of judge calls from token usage, only where a price is known.

Which price applies (the rule's ``judge.price``, the ``--price`` flag, or OpenAI's list
price for a model on OpenAI's API) is decided in :mod:`controller.models.price`. Without
one, a call's cost is ``None``: tokens are still counted, a cost is never invented, the
``llmcanary_judge_cost_usd`` metric is not incremented, and a cost budget is refused at
validation (it could never bite).
"""

from __future__ import annotations

from controller.models.price import HOSTED_PRICES, Price, is_hosted, price_for

__all__ = ["HOSTED_PRICES", "Price", "estimate_cost", "is_hosted", "price_for"]


def estimate_cost(prompt_tokens: int, completion_tokens: int, price: Price | None) -> float | None:
    """USD for the tokens at ``price``; None when there is no price."""
    if price is None:
        return None
    return (prompt_tokens * price.input_per_mtok + completion_tokens * price.output_per_mtok) / 1e6
