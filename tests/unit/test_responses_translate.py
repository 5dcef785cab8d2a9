"""The Responses <-> chat translation: requests to ChatRequest, chat chunks to typed events."""

from __future__ import annotations

from typing import Any

import pytest

from quasar.api.responses import ResponsesRequest
from quasar.errors import InvalidRequest, UpstreamError
from quasar.translate.responses import parse_items, responses_param, to_chat, to_response
from quasar.translate.responses_stream import ResponseEvents


def request(**fields: Any) -> ResponsesRequest:
    return ResponsesRequest.model_validate({"model": "m", **fields})


def test_a_whole_conversation_becomes_chat_messages() -> None:
    items: list[dict[str, Any]] = [
        {"role": "developer", "content": "Use metric units."},
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "What is this?"},
                {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "low"},
            ],
        },
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "A map."}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "g", "arguments": '{"x": 1}'},
        {"type": "function_call_output", "call_id": "c1", "output": "one"},
        {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "two"}]},
    ]
    req = request(input=items, instructions="Be brief.")
    chat = to_chat(req, parse_items(req.input))
    dumped = [m.model_dump(exclude_none=True) for m in chat.messages]
    assert dumped == [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": "Use metric units."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}},
            ],
        },
        {
            "role": "assistant",
            "content": "A map.",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                {"id": "c2", "type": "function", "function": {"name": "g", "arguments": '{"x": 1}'}},
            ],
        },
        {"role": "tool", "content": "one", "tool_call_id": "c1"},
        {"role": "tool", "content": "two", "tool_call_id": "c2"},
    ]


def test_fields_take_chat_names_and_shapes() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    req = request(
        input="hi",
        max_output_tokens=7,
        top_p=0.5,
        tools=[{"type": "function", "name": "f", "parameters": schema, "strict": True}],
        tool_choice={"type": "function", "name": "f"},
        text={"format": {"type": "json_schema", "name": "out", "schema": schema, "strict": True}},
        stream=True,
        customer_identifier="cust-1",
        reasoning={"effort": "low"},
    )
    chat = to_chat(req, parse_items(req.input))
    assert chat.max_tokens == 7 and chat.top_p == 0.5 and chat.stream and chat.include_usage
    assert [t.model_dump(exclude_none=True) for t in chat.tools or []] == [
        {"type": "function", "function": {"name": "f", "parameters": schema, "strict": True}}
    ]
    choice = chat.tool_choice
    assert not isinstance(choice, str) and choice is not None
    assert choice.model_dump(exclude_none=True) == {"type": "function", "function": {"name": "f"}}
    assert chat.response_format is not None and chat.response_format.json_schema is not None
    assert chat.response_format.json_schema.name == "out" and chat.response_format.json_schema.schema_ == schema
    assert chat.model_extra == {"customer_identifier": "cust-1"}  # a gateway field; `reasoning` is not forwarded


def test_item_errors_name_the_item_field() -> None:
    with pytest.raises(InvalidRequest) as err:
        parse_items([{"role": "user", "content": "ok"}, {"role": "user", "content": [{"type": "input_image"}]}])
    assert err.value.param == "input[1].content[0].image_url"
    assert "'input[1].content[0].image_url'" in err.value.message
    assert responses_param("max_tokens") == "max_output_tokens" and responses_param("messages[2].content") == "input"


def test_a_length_cut_is_incomplete() -> None:
    body = {
        "model": "m",
        "created": 5,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "par"}, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1},
    }
    response = to_response(body, request(input="hi", max_output_tokens=1), "resp_1", 5)
    assert response["status"] == "incomplete" and response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response["output"][0]["status"] == "incomplete" and response["usage"]["total_tokens"] == 4


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def test_text_then_a_tool_call_as_events() -> None:
    events = ResponseEvents(request(input="hi"), "resp_1")
    out = events.start()
    out += events.take(chunk({"role": "assistant", "content": "Let me"}))
    out += events.take(chunk({"content": " check."}))
    call = {"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a"'}}
    out += events.take(chunk({"tool_calls": [call]}))
    out += events.take(chunk({"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}, "tool_calls"))
    out += events.take({"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 3}})
    out += events.close()
    final = events.final(events.response(events.status()))
    out.append(final)
    assert [e["type"] for e in out] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in out] == list(range(len(out)))
    assert out[9]["output_index"] == 1 and out[12]["arguments"] == '{"a": 1}'
    message, function_call = final["response"]["output"]
    assert message["content"][0]["text"] == "Let me check." and message["status"] == "completed"
    assert function_call["call_id"] == "c1" and function_call["name"] == "f"
    assert final["response"]["usage"]["output_tokens"] == 3


def test_a_failure_is_an_error_then_failed() -> None:
    events = ResponseEvents(request(input="hi"), "resp_1")
    events.start()
    events.take(chunk({"content": "par"}))
    error, failed = events.failed(UpstreamError("the upstream went away"))
    assert error["type"] == "error" and error["code"] == "upstream_error"
    assert failed["type"] == "response.failed" and failed["response"]["status"] == "failed"
    assert failed["response"]["error"]["message"] == "the upstream went away"
