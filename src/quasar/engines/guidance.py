"""Grammars for llama.cpp, checked with llguidance before a request runs.

llama.cpp compiles a `%llguidance` grammar when a request starts, and when llguidance refuses it (a JSON
Schema keyword it does not implement in a strict schema, a pattern with look-around, a bad `$ref`) the
request runs with no constraint at all and nothing says so. The llguidance package pinned in
requirements.lock is the version xllamacpp links (both built on derivre 0.3.8): it judges a grammar the
same way, in a few milliseconds and without a tokenizer, so a refusal becomes a 400 instead.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from llguidance import LLMatcher

_POSITION = re.compile(r"^at \d+\(\d+\): ")
_LISTING = re.compile(r"^\s*(\d+ \||\^+$)")  # llguidance quotes the grammar's lines under its message


@functools.lru_cache(maxsize=1024)
def grammar_error(grammar: str) -> str | None:
    """Why llguidance would refuse `grammar` (a lark grammar starting `%llguidance`), or None."""
    failed, messages = LLMatcher.validate_grammar_with_warnings(LLMatcher.grammar_from_lark(grammar))
    if not failed:
        return None
    lines = [line.strip() for line in messages[0].splitlines() if line.strip() and not _LISTING.match(line)]
    return _POSITION.sub("", " ".join(lines))


def where(schema: Any, message: str, path: str = "#") -> str | None:
    """The JSON pointer of the first part of `schema` that llguidance's `message` names: an unimplemented
    keyword (it quotes the key) or the value of a type, format, pattern or $ref it could not use."""
    if isinstance(schema, dict):
        for key, value in schema.items():
            named = key in _VALUED and isinstance(value, str) and value.lstrip("#") and value.lstrip("#") in message
            if f'"{key}"' in message or named:
                return f"{path}/{_escape(key)}"
            if (found := where(value, message, f"{path}/{_escape(key)}")) is not None:
                return found
    elif isinstance(schema, list):
        for i, item in enumerate(schema):
            if (found := where(item, message, f"{path}/{i}")) is not None:
                return found
    return None


_VALUED = ("type", "format", "pattern", "$ref")


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")
