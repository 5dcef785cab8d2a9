"""Streaming: SSE framing, usage chunk, [DONE], the SDK's sync and async streams."""

from __future__ import annotations

import json

import httpx2 as httpx
import openai

from tests.server import Running

ASK = [{"role": "user", "content": "Tell me about the sea."}]


def sse_events(server: Running, body: dict) -> list[str]:
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        return [line.removeprefix("data: ") for line in r.iter_lines() if line.startswith("data: ")]


def test_stream_framing_with_usage(server: Running) -> None:
    events = sse_events(
        server,
        {
            "model": "spark",
            "messages": ASK,
            "max_tokens": 6,
            "stream": True,
            "stream_options": {"include_usage": True},
            "logit_bias": {"2": -100},
        },
    )
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "spark" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 6
    finish = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert len(finish) == 1 and finish[0]["choices"][0]["finish_reason"] == "length"
    assert chunks.index(finish[0]) == len(chunks) - 2  # the last choice chunk, right before usage
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text


def test_stream_without_usage_has_no_usage_chunk(server: Running) -> None:
    events = sse_events(server, {"model": "spark", "messages": ASK, "max_tokens": 3, "stream": True})
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["choices"] for c in chunks)
    assert all("usage" not in c or c["usage"] is None for c in chunks)


def test_stream_text_equals_non_stream_text(server: Running) -> None:
    body = {"model": "spark", "messages": ASK, "max_tokens": 15, "temperature": 0}
    whole = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=60).json()
    events = sse_events(server, {**body, "stream": True})
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == whole["choices"][0]["message"]["content"]


def test_sdk_sync_stream(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="spark", messages=ASK, max_tokens=5, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[-1].usage.completion_tokens <= 5
    assert any(c.choices and c.choices[0].delta.content for c in chunks)


async def test_sdk_async_stream_and_n(aclient: openai.AsyncOpenAI) -> None:
    stream = await aclient.chat.completions.create(model="spark", messages=ASK, max_tokens=4, n=2, stream=True)
    indexes = set()
    async for chunk in stream:
        for choice in chunk.choices:
            indexes.add(choice.index)
    assert indexes == {0, 1}


async def test_sdk_async_non_stream(aclient: openai.AsyncOpenAI) -> None:
    reply = await aclient.chat.completions.create(model="spark", messages=ASK, max_tokens=3)
    assert reply.choices[0].message.content is not None


def test_stream_error_before_first_byte_is_a_plain_http_error(server: Running) -> None:
    r = httpx.post(
        server.url + "/v1/chat/completions",
        json={"model": "spark", "messages": [{"role": "user", "content": "hi " * 9000}], "stream": True},
        timeout=60,
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "context_length_exceeded"
