"""Anthropic's Messages API in front of an OpenAI-compatible upstream, driven by the official `anthropic` SDK.

The fake provider speaks chat completions only, so every request here is translated both ways; the
tests look at what the SDK gets and at what the upstream was sent.
"""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import httpx2 as httpx
import orjson
import pytest

from tests.fake_provider import FakeProvider
from tests.gateway_config import gateway_server, upstream
from tests.server import Running
from tests.store_support import MASTER, admin_headers, log_rows, wait_for

WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    with FakeProvider("anthro-up") as provider:
        yield provider


@pytest.fixture(scope="module")
def gateway(fake: FakeProvider) -> Iterator[Running]:
    with gateway_server({"up": [upstream(fake, price={"input": 1.0, "output": 2.0})]}, logged=True) as running:
        yield running


@pytest.fixture()
def client(gateway: Running, fake: FakeProvider) -> anthropic.Anthropic:
    fake.reset()
    return anthropic.Anthropic(base_url=gateway.url, api_key=MASTER, max_retries=0, timeout=30)


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_create_translates_the_request_and_the_reply(client: anthropic.Anthropic, fake: FakeProvider) -> None:
    reply = client.messages.create(
        model="up",
        max_tokens=20,
        system="Be brief.",
        messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        stop_sequences=["END"],
        metadata={"user_id": "u-1"},
        extra_body={"temperature": 0.5, "top_k": 3},  # this SDK version has no arguments for them
    )
    assert reply.type == "message" and reply.role == "assistant" and reply.id.startswith("msg_")
    assert reply.model == "up"
    assert [(b.type, b.text) for b in reply.content] == [("text", "Hello from anthro-up")]
    assert reply.stop_reason == "end_turn" and reply.stop_sequence is None
    # the fake reports 1000 prompt tokens, 400 of them cached: Anthropic counts those apart
    assert (reply.usage.input_tokens, reply.usage.cache_read_input_tokens, reply.usage.output_tokens) == (600, 400, 500)
    sent = fake.requests[-1]["body"]
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    assert (sent["max_tokens"], sent["stop"], sent["temperature"], sent["top_k"], sent["user"]) == (
        20,
        ["END"],
        0.5,
        3,
        "u-1",
    )


def test_stream(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model="up", max_tokens=20, messages=user("hi")) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello from anthro-up"
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (600, 500)


def test_stream_events_in_anthropic_order(gateway: Running, fake: FakeProvider) -> None:
    fake.reset()
    body = {"model": "up", "max_tokens": 20, "messages": user("hi"), "stream": True}
    reply = httpx.post(f"{gateway.v1}/messages", json=body, headers={"x-api-key": MASTER}, timeout=30)
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
    events = [block.split("\n") for block in reply.text.strip().split("\n\n")]
    names = [lines[0].removeprefix("event: ") for lines in events]
    assert names == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    for lines, name in zip(events, names, strict=True):
        assert orjson.loads(lines[1].removeprefix("data: "))["type"] == name
    delta = orjson.loads(events[-2][1].removeprefix("data: "))
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}


@pytest.mark.parametrize("streamed", [False, True])
def test_tool_round_trip(client: anthropic.Anthropic, fake: FakeProvider, streamed: bool) -> None:
    fake.script("tool-call")
    question = user("What is the weather in Paris?")
    if streamed:
        with client.messages.stream(model="up", max_tokens=50, messages=question, tools=[WEATHER]) as stream:
            first = stream.get_final_message()
    else:
        first = client.messages.create(
            model="up", max_tokens=50, messages=question, tools=[WEATHER], tool_choice={"type": "any"}
        )
    assert first.stop_reason == "tool_use"
    (call,) = first.content
    assert (call.type, call.name, call.input) == ("tool_use", "get_weather", {"city": "Paris"})
    sent = fake.requests[-1]["body"]
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": WEATHER["description"],
                "parameters": WEATHER["input_schema"],
            },
        }
    ]
    if not streamed:
        assert sent["tool_choice"] == "required"

    answer = client.messages.create(
        model="up",
        max_tokens=50,
        tools=[WEATHER],
        messages=[
            *question,
            {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Sunny, 21 C"}]},
        ],
    )
    assert answer.stop_reason == "end_turn" and answer.content[0].text == "Hello from anthro-up"
    assistant, result = fake.requests[-1]["body"]["messages"][1:]
    assert assistant["tool_calls"] == [
        {"id": call.id, "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
    ]
    assert result == {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 C"}


def test_errors_in_anthropic_envelope(gateway: Running, client: anthropic.Anthropic) -> None:
    wrong = anthropic.Anthropic(base_url=gateway.url, api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as refused:
        wrong.messages.create(model="up", max_tokens=5, messages=user("hi"))
    assert refused.value.body["type"] == "error"
    assert refused.value.body["error"]["type"] == "authentication_error"

    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="nope", max_tokens=5, messages=user("hi"))
    assert missing.value.body["error"]["type"] == "not_found_error"
    assert "'nope' does not exist" in missing.value.body["error"]["message"]

    cases = [
        ({"model": "up", "messages": user("hi")}, "'max_tokens'"),
        ({"model": "up", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "x"}]}]}, "content[0]"),
        ({"model": "up", "max_tokens": 5, "messages": user("hi"), "temperature": 3}, "'temperature'"),
        ({"model": "up", "max_tokens": 5, "messages": user("hi"), "tool_choice": {"type": "tool"}}, "tool_choice"),
    ]
    for body, named in cases:
        reply = httpx.post(f"{gateway.v1}/messages", json=body, headers={"x-api-key": MASTER})
        assert reply.status_code == 400, reply.text
        error = reply.json()
        assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
        assert named in error["error"]["message"], error

    wrong_method = httpx.get(f"{gateway.v1}/messages", headers={"x-api-key": MASTER})
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
    assert wrong_method.json()["error"]["type"] == "invalid_request_error"


def test_bearer_key_and_anthropic_version(gateway: Running) -> None:
    bearer = anthropic.Anthropic(base_url=gateway.url, auth_token=MASTER, max_retries=0)
    assert bearer.messages.create(model="up", max_tokens=5, messages=user("hi")).content[0].text


def test_failure_after_the_first_event_is_an_error_event(gateway: Running, fake: FakeProvider) -> None:
    fake.reset()
    fake.script("reset")
    body = {"model": "up", "max_tokens": 20, "messages": user("hi"), "stream": True}
    reply = httpx.post(f"{gateway.v1}/messages", json=body, headers={"x-api-key": MASTER}, timeout=30)
    names = [block.split("\n")[0] for block in reply.text.strip().split("\n\n")]
    assert names[0] == "event: message_start" and names[-1] == "event: error"
    assert "event: message_stop" not in names
    error = orjson.loads(reply.text.strip().split("\n\n")[-1].split("\n")[1].removeprefix("data: "))
    assert error["type"] == "error" and error["error"]["type"] == "api_error"


def test_each_request_has_a_log_row(gateway: Running, client: anthropic.Anthropic) -> None:
    made = client.messages.with_raw_response.create(model="up", max_tokens=5, messages=user("logged"))
    request_id = made.headers["x-request-id"]
    refused = httpx.post(f"{gateway.v1}/messages", json={"model": "up"}, headers={"x-api-key": MASTER})
    rows = wait_for(
        lambda: (
            {r["request_id"]: r for r in log_rows(gateway.env["QUASAR_DATABASE_URL"])}.keys()
            >= {request_id, refused.headers["x-request-id"]}
            and {r["request_id"]: r for r in log_rows(gateway.env["QUASAR_DATABASE_URL"])}
        )
    )
    row = rows[request_id]
    assert (row["model"], row["http_status"], row["prompt_tokens"], row["completion_tokens"]) == ("up", 200, 1000, 500)
    assert row["cost"] > 0
    assert rows[refused.headers["x-request-id"]]["http_status"] == 400


def test_rate_limit_is_a_429_in_anthropic_envelope(gateway: Running) -> None:
    made = httpx.post(f"{gateway.url}/admin/keys", json={"name": "one-rpm", "rpm": 1}, headers=admin_headers()).json()
    limited = anthropic.Anthropic(base_url=gateway.url, api_key=made["key"], max_retries=0)
    assert limited.messages.create(model="up", max_tokens=5, messages=user("hi")).content
    with pytest.raises(anthropic.RateLimitError) as refused:
        limited.messages.create(model="up", max_tokens=5, messages=user("hi"))
    assert refused.value.body["error"]["type"] == "rate_limit_error"
    assert int(refused.value.response.headers["retry-after"]) >= 1


def test_count_tokens(gateway: Running, client: anthropic.Anthropic) -> None:
    short = client.messages.count_tokens(model="up", messages=user("hi"))
    longer = client.messages.count_tokens(model="up", system="x" * 400, messages=user("hi"), tools=[WEATHER])
    assert 0 < short.input_tokens < longer.input_tokens
    with pytest.raises(anthropic.NotFoundError):
        client.messages.count_tokens(model="nope", messages=user("hi"))
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=gateway.url, api_key="wrong").messages.count_tokens(model="up", messages=user("x"))
    reply = httpx.post(f"{gateway.v1}/messages/count_tokens", json={"model": "up"}, headers={"x-api-key": MASTER})
    assert reply.status_code == 400 and "'messages'" in reply.json()["error"]["message"]


def test_openapi_describes_both_operations(gateway: Running) -> None:
    spec = httpx.get(f"{gateway.url}/openapi.json").json()
    for path, schema in [("/v1/messages", "MessagesRequest"), ("/v1/messages/count_tokens", "CountTokensRequest")]:
        body = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        name = body["$ref"].rsplit("/", 1)[1]
        assert name == f"Anthropic{schema}"
        assert "messages" in spec["components"]["schemas"][name]["required"]
    assert "max_tokens" in spec["components"]["schemas"]["AnthropicMessagesRequest"]["required"]


def test_a_client_that_leaves_a_stream_cancels_the_upstream_request(gateway: Running, fake: FakeProvider) -> None:
    fake.reset()
    fake.script("stall:2")
    body = {"model": "up", "max_tokens": 20, "messages": user("hi"), "stream": True}
    headers = {"x-api-key": MASTER}
    with httpx.stream("POST", f"{gateway.v1}/messages", json=body, headers=headers, timeout=30) as reply:
        request_id = reply.headers["x-request-id"]
        assert next(reply.iter_bytes()).startswith(b"event: message_start")
    wait_for(lambda: fake.disconnects == 1, timeout=10)
    rows = wait_for(lambda: [r for r in log_rows(gateway.env["QUASAR_DATABASE_URL"]) if r["request_id"] == request_id])
    assert rows[0]["status"] == "cancelled"


def test_a_body_over_the_limit_is_a_413_in_anthropic_envelope(gateway: Running, client: anthropic.Anthropic) -> None:
    huge = "x" * (4 * 1024 * 1024 + 1)  # past server.max_body_bytes' default
    with pytest.raises(anthropic.APIStatusError) as declared:  # the SDK declares its body's length
        client.messages.create(model="up", max_tokens=5, messages=user(huge))
    assert declared.value.status_code == 413
    assert declared.value.body == {
        "type": "error",
        "error": {"type": "request_too_large", "message": "Request body is larger than the limit of 4194304 bytes."},
    }

    def chunks() -> Iterator[bytes]:  # no length declared: the limit is found while reading
        data = orjson.dumps({"model": "up", "max_tokens": 5, "messages": user(huge)})
        for i in range(0, len(data), 1 << 16):
            yield data[i : i + (1 << 16)]

    streamed = httpx.post(f"{gateway.v1}/messages", content=chunks(), headers={"x-api-key": MASTER}, timeout=30)
    assert streamed.status_code == 413
    assert streamed.json()["type"] == "error" and streamed.json()["error"]["type"] == "request_too_large"
