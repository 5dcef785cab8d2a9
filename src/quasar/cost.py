"""What a request cost: the provider's usage times the deployment's price (USD per million tokens).

When a provider reports no usage, tokens are estimated at one per four characters and the cost is
marked estimated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from quasar.config import Price

_CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / _CHARS_PER_TOKEN)


@dataclass(frozen=True)
class Cost:
    usd: float
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    estimated: bool


def price_usage(usage: dict[str, Any] | None, price: Price, prompt_text: str, completion_text: str) -> Cost:
    if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
        estimated = False
        prompt = usage["prompt_tokens"]
        completion = int(usage.get("completion_tokens") or 0)
        details = usage.get("prompt_tokens_details")
        cached = int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
    else:
        estimated = True
        prompt, completion, cached = estimate_tokens(prompt_text), estimate_tokens(completion_text), 0
    cached_price = price.input if price.cached_input is None else price.cached_input
    usd = ((prompt - cached) * price.input + cached * cached_price + completion * price.output) / 1e6
    return Cost(round(usd, 10), prompt, completion, cached, estimated)
