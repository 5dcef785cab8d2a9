"""translate/to_anthropic.py: a chat request as the Messages body an Anthropic upstream gets, and its answer."""

from __future__ import annotations

from quasar.api.chat import ChatRequest
from quasar.translate.to_anthropic import ChunkReader, chat_body, messages_body


def test_a_conversation_with_images_and_parallel_tool_results() -> None:
    request = ChatRequest.model_validate(
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": "Use metric."},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Both cities?"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    ],
                },
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "a", "type": "function", "function": {"name": "w", "arguments": '{"city": "Oslo"}'}},
                        {"id": "b", "type": "function", "function": {"name": "w", "arguments": ""}},
                    ],
                },
                {"role": "tool", "tool_call_id": "a", "content": "5 C"},
                {"role": "tool", "tool_call_id": "b", "content": [{"type": "text", "text": "9 C"}]},
            ],
            "temperature": 1.7,
            "stop": "END",
            "parallel_tool_calls": False,
            "tools": [{"type": "function", "function": {"name": "w", "parameters": {"type": "object"}}}],
            "tool_choice": {"type": "function", "function": {"name": "w"}},
        }
    )
    body = messages_body(request, "up", 512, stream=True)
    assert body == {
        "model": "up",
        "system": "Be brief.\nUse metric.",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Both cities?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "a", "name": "w", "input": {"city": "Oslo"}},
                    {"type": "tool_use", "id": "b", "name": "w", "input": {}},
                ],
            },
            {  # the two tool messages: one user turn, as Anthropic alternates turns
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "a", "content": "5 C"},
                    {"type": "tool_result", "tool_use_id": "b", "content": "9 C"},
                ],
            },
        ],
        "max_tokens": 512,  # none asked: the deployment's
        "stop_sequences": ["END"],
        "temperature": 1.0,  # Anthropic's range ends at 1
        "tools": [{"name": "w", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "w", "disable_parallel_tool_use": True},
        "stream": True,
    }


def test_an_answer_and_its_usage_in_chat_terms() -> None:
    message = {
        "type": "message",
        "id": "msg_1",
        "content": [{"type": "text", "text": "Hi"}, {"type": "tool_use", "id": "t", "name": "w", "input": {"x": 1}}],
        "stop_reason": "tool_use",
        "usage": {
            "input_tokens": 10,
            "output_tokens": 5,
            "cache_read_input_tokens": 20,
            "cache_creation_input_tokens": 3,
        },
    }
    body = chat_body(message, native=False)
    assert body["choices"][0] == {
        "index": 0,
        "message": {
            "role": "assistant",
            "content": "Hi",
            "tool_calls": [{"id": "t", "type": "function", "function": {"name": "w", "arguments": '{"x":1}'}}],
        },
        "finish_reason": "tool_calls",
    }
    assert body["usage"] == {
        "prompt_tokens": 33,
        "completion_tokens": 5,
        "total_tokens": 38,
        "prompt_tokens_details": {"cached_tokens": 20},
    }
    assert "native" not in body and chat_body(message, native=True)["native"] is message


def test_events_as_chunks_translated_or_carried() -> None:
    events = [
        {"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 7, "output_tokens": 1}}},
        {"type": "ping"},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 4}},
        {"type": "message_stop"},
    ]
    reader = ChunkReader(native=False)
    chunks = [chunk for event in events for chunk in reader.read(event)]
    assert [c["choices"][0]["delta"] if c["choices"] else None for c in chunks] == [
        {"role": "assistant", "content": ""},
        {"content": "Hi"},
        {},
        None,  # the usage chunk
    ]
    assert chunks[2]["choices"][0]["finish_reason"] == "length"
    assert chunks[3]["usage"]["prompt_tokens"] == 7 and chunks[3]["usage"]["completion_tokens"] == 4

    native = ChunkReader(native=True)
    carried = [chunk for event in events for chunk in native.read(event)]
    assert [c["native"] for c in carried] == events  # every event, in order
    assert carried[5]["usage"]["completion_tokens"] == 4 and carried[5]["choices"][0]["finish_reason"] == "length"
