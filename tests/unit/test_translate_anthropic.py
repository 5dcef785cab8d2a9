"""translate/anthropic.py: Anthropic's Messages bodies to chat requests, chat replies and chunks back."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from quasar.errors import InvalidRequest
from quasar.translate.anthropic import MessageStream, chat_request, count_request, message

TOOL = {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}}


def chat(**body: Any) -> dict[str, Any]:
    fields = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}], **body}
    return chat_request(orjson.dumps(fields)).model_dump(exclude_unset=True, exclude_none=True)


def refused(body: dict[str, Any]) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        chat_request(orjson.dumps(body))
    return caught.value


def test_fields_map_to_their_chat_equivalents() -> None:
    request = chat(
        system=[{"type": "text", "text": "one"}, {"type": "text", "text": "two"}],
        stop_sequences=["END"],
        temperature=0.2,
        top_p=0.9,
        top_k=4,
        metadata={"user_id": "u"},
        stream=True,
        thinking={"type": "disabled"},  # accepted, not passed on
    )
    assert request["messages"][0] == {"role": "system", "content": "one\ntwo"}
    assert (request["max_tokens"], request["stop"], request["temperature"], request["top_p"]) == (10, ["END"], 0.2, 0.9)
    assert (request["top_k"], request["user"], request["stream"]) == (4, "u", True)
    assert request["stream_options"] == {"include_usage": True}
    assert "thinking" not in request


def test_content_blocks() -> None:
    png = {"type": "base64", "media_type": "image/png", "data": "iVBOR"}
    request = chat(
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image", "source": png}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "calling"},
                    {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Oslo"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "and this?"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "content": [
                            {"type": "text", "text": "rain"},
                            {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
                        ],
                    },
                ],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1"}]},  # a second result, empty
        ]
    )
    assert request["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
            ],
        },
        {
            "role": "assistant",
            "content": "calling",
            "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}
            ],
        },
        # a tool message first (OpenAI wants it right after the call), then the rest of the user's message
        {"role": "tool", "tool_call_id": "t1", "content": "rain"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "and this?"},
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
            ],
        },
        {"role": "tool", "tool_call_id": "t1", "content": ""},
    ]


def test_an_assistant_message_of_tool_calls_only_has_no_content() -> None:
    use = {"type": "tool_use", "id": "t1", "name": "f", "input": {}}
    (_, assistant) = chat(messages=[{"role": "user", "content": "x"}, {"role": "assistant", "content": [use]}])[
        "messages"
    ]
    assert "content" not in assistant and assistant["tool_calls"][0]["function"]["arguments"] == "{}"


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, {"tool_choice": "auto"}),
        ({"type": "any"}, {"tool_choice": "required"}),
        ({"type": "none"}, {"tool_choice": "none"}),
        (
            {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
            {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}, "parallel_tool_calls": False},
        ),
    ],
)
def test_tools_and_tool_choice(choice: dict[str, Any], expected: dict[str, Any]) -> None:
    request = chat(tools=[TOOL], tool_choice=choice)
    assert request["tools"] == [
        {
            "type": "function",
            "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object"}},
        }
    ]
    assert {k: request[k] for k in expected} == expected


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        ({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "m", "max_tokens": 5, "messages": []}, "messages"),
        ({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}, "messages[0].role"),
        ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "text"}]}]}, None),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "assistant", "content": [{"type": "tool_use", "name": "f", "input": {}}]}],
            },
            "messages[0].content[0].id",
        ),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": [{"type": "tool_use", "id": "a", "name": "f", "input": {}}]}],
            },
            "messages[0].content[0].type",
        ),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [
                    {"role": "assistant", "content": [{"type": "image", "source": {"type": "url", "url": "u"}}]}
                ],
            },
            "messages[0].content[0].type",
        ),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file"}}]}],
            },
            "messages[0].content[0].source",
        ),
        ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "top_p": 0}, "top_p"),
        ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "tools": [{}]}, None),
    ],
)
def test_bad_bodies_name_the_field(body: dict[str, Any], param: str | None) -> None:
    error = refused(body)
    if param is None:  # a missing field inside a block: the deepest one
        assert error.param is not None and error.param.startswith(("messages[0].content[0].", "tools[0]."))
    else:
        assert error.param == param, error.message
        assert param in error.message or error.message.startswith(("A user", "An assistant"))


def test_a_text_block_without_text_names_it() -> None:
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "text"}]}]}
    assert refused(body).param == "messages[0].content[0].text"


def test_empty_and_malformed_bodies() -> None:
    for raw in (b"", b"{not json", b"[]"):
        with pytest.raises(InvalidRequest):
            chat_request(raw)


def test_count_request_has_no_output_fields() -> None:
    request = count_request(orjson.dumps({"model": "m", "system": "s", "messages": [{"role": "user", "content": "x"}]}))
    assert request.max_tokens is None and not request.stream
    assert [m.role for m in request.messages] == ["system", "user"]


# -- replies --------------------------------------------------------------------------------------


def completion(message_: dict[str, Any], finish: str | None, usage: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "m", "choices": [{"index": 0, "message": message_, "finish_reason": finish}]}
    if usage is not None:
        body["usage"] = usage
    return body


def test_a_completion_becomes_a_message() -> None:
    usage = {"prompt_tokens": 30, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 10}}
    calls = [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}},
        {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "not json"}},
    ]
    reply = message(completion({"role": "assistant", "content": "hi", "tool_calls": calls}, "tool_calls", usage), "m1")
    assert reply == {
        "id": "m1",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [
            {"type": "text", "text": "hi"},
            {"type": "tool_use", "id": "c1", "name": "f", "input": {"a": 1}},
            {"type": "tool_use", "id": "c2", "name": "g", "input": {}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 20, "output_tokens": 7, "cache_read_input_tokens": 10},
    }


@pytest.mark.parametrize(
    ("finish", "stop_reason"),
    [("stop", "end_turn"), ("length", "max_tokens"), ("content_filter", "refusal"), (None, "end_turn")],
)
def test_stop_reasons(finish: str | None, stop_reason: str) -> None:
    reply = message(completion({"role": "assistant", "content": "x"}, finish), "m1")
    assert reply["stop_reason"] == stop_reason and reply["usage"] == {"input_tokens": 0, "output_tokens": 0}


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def run(chunks: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    stream = MessageStream("m1", "m")
    events = stream.start()
    for c in chunks:
        events += stream.feed(c)
    return events + stream.finish()


def test_a_text_stream() -> None:
    events = run(
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": "Hel"}),
            chunk({"content": "lo"}),
            chunk({}, "length"),
            {"model": "m", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}},
        ]
    )
    assert [name for name, _ in events] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(data["type"] == name for name, data in events)
    start = events[0][1]["message"]
    assert (start["id"], start["model"], start["content"], start["stop_reason"]) == ("m1", "m", [], None)
    assert events[2][1] == {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    assert [e[1]["delta"] for e in events[3:5]] == [
        {"type": "text_delta", "text": "Hel"},
        {"type": "text_delta", "text": "lo"},
    ]
    assert events[6][1]["delta"] == {"stop_reason": "max_tokens", "stop_sequence": None}
    assert events[6][1]["usage"] == {"input_tokens": 5, "output_tokens": 2}


def test_text_then_tool_calls_are_blocks_in_turn() -> None:
    def call(index: int, **fields: Any) -> dict[str, Any]:
        return chunk({"tool_calls": [{"index": index, **fields}]})

    events = run(
        [
            chunk({"content": "Let me check."}),
            call(0, id="c1", type="function", function={"name": "f", "arguments": ""}),
            call(0, function={"arguments": '{"a":'}),
            call(0, function={"arguments": " 1}"}),
            call(1, id="c2", function={"name": "g", "arguments": "{}"}),
            chunk({}, "tool_calls"),
        ]
    )
    blocks = [(name, data.get("index"), data.get("content_block") or data.get("delta")) for name, data in events[2:-2]]
    assert blocks == [
        ("content_block_start", 0, {"type": "text", "text": ""}),
        ("content_block_delta", 0, {"type": "text_delta", "text": "Let me check."}),
        ("content_block_stop", 0, None),
        ("content_block_start", 1, {"type": "tool_use", "id": "c1", "name": "f", "input": {}}),
        ("content_block_delta", 1, {"type": "input_json_delta", "partial_json": '{"a":'}),
        ("content_block_delta", 1, {"type": "input_json_delta", "partial_json": " 1}"}),
        ("content_block_stop", 1, None),
        ("content_block_start", 2, {"type": "tool_use", "id": "c2", "name": "g", "input": {}}),
        ("content_block_delta", 2, {"type": "input_json_delta", "partial_json": "{}"}),
        ("content_block_stop", 2, None),
    ]
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
