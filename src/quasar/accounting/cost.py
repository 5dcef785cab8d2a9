"""What a request cost: the provider's usage times the deployment's price (USD per million tokens).

When a provider reports no usage, tokens are estimated at one per four characters and the cost is
marked estimated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from quasar.accounting.tokens import estimate
from quasar.config import Price


@dataclass(frozen=True)
class Cost:
    usd: float
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    estimated: bool


def price_usage(
    usage: dict[str, Any] | None, price: Price, prompt_text: Callable[[], str], completion_text: str
) -> Cost:
    """`prompt_text` is called only when the usage is missing and tokens must be estimated."""
    if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
        estimated = False
        prompt = usage["prompt_tokens"]
        completion = int(usage.get("completion_tokens") or 0)
        details = usage.get("prompt_tokens_details")
        cached = int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
    else:
        estimated = True
        prompt, completion, cached = estimate(prompt_text()), estimate(completion_text), 0
    return Cost(round(cost_of(price, prompt, cached, completion), 10), prompt, completion, cached, estimated)


def cost_of(price: Price, prompt_tokens: int, cached_tokens: int, completion_tokens: int) -> float:
    """USD for a token count at `price`; cached prompt tokens at the cached rate where one is set."""
    cached_rate = price.cached_input if price.cached_input is not None else price.input
    uncached = max(prompt_tokens - cached_tokens, 0)
    return (uncached * price.input + cached_tokens * cached_rate + completion_tokens * price.output) / 1e6


def price_version(price: Price) -> str:
    cached = price.cached_input if price.cached_input is not None else price.input
    return f"{price.input:g}/{price.output:g}/{cached:g}"
