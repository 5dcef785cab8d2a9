"""How many tokens a prompt has, before any tokenizer has seen it: an estimate and an upper bound.

The estimate (one token per four characters) orders and filters candidates and prices a reply whose
provider reported no usage. The upper bound (one token per UTF-8 byte, no tokenizer gives more, plus
the chat template's share per message and per prompt, some templates adding a default system prompt)
is what limits and budgets reserve, so that a request can never settle above its reservation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from quasar.api.chat import Message

CHARS_PER_TOKEN = 4
TEMPLATE_TOKENS_PER_MESSAGE = 8
TEMPLATE_TOKENS_BASE = 64


def estimate(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def prompt_estimate(messages: Iterable[Message]) -> int:
    return sum(estimate(m.text()) + TEMPLATE_TOKENS_PER_MESSAGE for m in messages)


def prompt_upper_bound(messages: Iterable[Message]) -> int:
    return TEMPLATE_TOKENS_BASE + sum(len(m.text().encode()) + TEMPLATE_TOKENS_PER_MESSAGE for m in messages)


EMBEDDING_TOKENS_PER_INPUT = 2  # the tokens an embedding model adds around each input ([CLS] and [SEP])


def longest_input_estimate(inputs: list[str] | list[list[int]]) -> int:
    """The tokens of the longest embedding input, estimated (token-id lists are counted): each input must
    fit the model's context on its own."""
    return max(len(i) if isinstance(i, list) else estimate(i) for i in inputs) + EMBEDDING_TOKENS_PER_INPUT


def inputs_upper_bound(inputs: list[str] | list[list[int]]) -> int:
    """At most this many tokens: a UTF-8 byte per token of a text, token-id lists as they are."""
    return sum(len(i) if isinstance(i, list) else len(i.encode()) for i in inputs) + EMBEDDING_TOKENS_PER_INPUT * len(
        inputs
    )
