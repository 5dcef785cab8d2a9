"""The grammar check before llama.cpp: what llguidance refuses, and where in the schema."""

from __future__ import annotations

import pytest

from quasar.engines.guidance import grammar_error, where
from quasar.engines.tools import json_grammar

UNIQUE = {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True}}}
LOOKAROUND = {"type": "object", "properties": {"code": {"type": "string", "pattern": "(?=A)[A-Z]+"}}}


def test_a_supported_schema_compiles_strict_or_not() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0}}, "required": ["n"]}
    assert grammar_error(json_grammar(schema, True)) is None and grammar_error(json_grammar(schema, False)) is None


def test_an_unimplemented_keyword_is_refused_only_when_strict() -> None:
    assert grammar_error(json_grammar(UNIQUE, False)) is None  # lenient: left unenforced, the rest constrains
    message = grammar_error(json_grammar(UNIQUE, True))
    assert message is not None and "uniqueItems" in message and "|" not in message  # no grammar listing
    assert where(UNIQUE, message) == "#/properties/tags/uniqueItems"


@pytest.mark.parametrize(
    ("schema", "part"),
    [
        (LOOKAROUND, "#/properties/code/pattern"),
        ({"type": "object", "properties": {"a": {"$ref": "#/nowhere"}}}, "#/properties/a/$ref"),
        ({"type": "object", "properties": {"a/b": {"type": "strnig"}}}, "#/properties/a~1b/type"),
    ],
)
def test_what_cannot_compile_is_refused_even_lenient(schema: dict, part: str) -> None:
    message = grammar_error(json_grammar(schema, False))
    assert message is not None and where(schema, message) == part


def test_a_bad_grammar_is_refused() -> None:
    assert "unknown name" in (grammar_error('%llguidance {}\nstart: "x" nowhere\n') or "")
