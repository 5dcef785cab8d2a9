"""The local engine's tool-call text: its grammar, and the parser that streams it back as calls."""

from __future__ import annotations

import pytest

from quasar.api.chat import ChatRequest
from quasar.engines.tools import CallParser, grammar, render_messages, to_message, tool_plan

SCHEMA = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}
TOOLS = [{"type": "function", "function": {"name": "search", "parameters": SCHEMA}}]
TWO_CALLS = (
    '<tool_call>[{"name": "search", "arguments": {"q": "a \\"}\\" b", "n": [1, {"x": 2}]}},'
    '{"name": "search", "arguments": {"q": "c"}}]</tool_call>'
)


def request(**fields) -> ChatRequest:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": TOOLS, **fields}
    return ChatRequest.model_validate(body)


def events_in_pieces(text: str, size: int) -> list[tuple[str, int, str]]:
    parser = CallParser()
    events = []
    for i in range(0, len(text), size):
        events += parser.feed(text[i : i + size])
    return events + parser.close()


def joined(events):
    out: dict[tuple[str, int], str] = {}
    for kind, index, value in events:
        out[(kind, index)] = out.get((kind, index), "") + value
    return out


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_any_split_of_the_text_gives_the_same_calls(size: int) -> None:
    assert joined(events_in_pieces(TWO_CALLS, size)) == {
        ("call", 0): "search",
        ("arguments", 0): '{"q": "a \\"}\\" b", "n": [1, {"x": 2}]}',
        ("call", 1): "search",
        ("arguments", 1): '{"q": "c"}',
    }


@pytest.mark.parametrize("text", ["Hello <tool_call> there", "<tool", "", "plain"])
def test_text_stays_text(text: str) -> None:
    assert joined(events_in_pieces(text, 1)) == ({("content", 0): text} if text else {})


def test_message_shapes() -> None:
    message, called = to_message(TWO_CALLS, tool_plan(request()))
    assert called and message["content"] is None and len(message["tool_calls"]) == 2
    assert message["tool_calls"][0]["id"].startswith("call_")
    legacy = tool_plan(ChatRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "x"}],
                                                   "functions": [TOOLS[0]["function"]]}))  # fmt: skip
    message, _ = to_message(TWO_CALLS, legacy)
    assert message["function_call"]["name"] == "search" and "tool_calls" not in message


def test_grammar_per_choice_and_cached() -> None:
    auto, required = grammar(tool_plan(request())), grammar(tool_plan(request(tool_choice="required")))
    assert "TEXT" in auto and "TEXT" not in required
    assert grammar(tool_plan(request())) is auto  # built once per tool set
    assert '("," call)*' not in grammar(tool_plan(request(parallel_tool_calls=False)))
    assert tool_plan(request(tool_choice="none")) is None


def test_history_is_plain_messages() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "search", "arguments": '{"q": "x"}'}}
    messages = [
        {"role": "user", "content": "find x"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "found"},
        {"role": "tool", "tool_call_id": "call_1", "content": "again"},
    ]
    rendered = render_messages(request(messages=messages), tool_plan(request(messages=messages)))
    assert [m["role"] for m in rendered] == ["system", "user", "assistant", "user"]
    assert '{"name": "search", "arguments": {"q":"x"}}' in rendered[2]["content"]
    assert "found" in rendered[3]["content"] and "again" in rendered[3]["content"]


def test_only_a_strict_function_asks_llguidance_for_every_keyword() -> None:
    strict = [{"type": "function", "function": {"name": "search", "parameters": SCHEMA, "strict": True}}]
    assert '"lenient":true' in grammar(tool_plan(request())) and '"lenient":false' not in grammar(tool_plan(request()))
    assert '"lenient":false' in grammar(tool_plan(request(tools=strict)))
