"""An `engine: anthropic` deployment: an upstream that speaks Anthropic's Messages API itself.

A message (`POST /v1/messages`, the official `anthropic` SDK) reaches it as the client sent it and its answer
and events come back as the upstream sent them; a chat request (the official `openai` SDK) is translated to
a message and back. Both go through the one pipeline: the log row's usage and cost are read from the
upstream's own answer, and a failing upstream fails over to the local model (translated for it). A legacy
completion, which Messages cannot carry, goes to another deployment of the model, or is refused.
"""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import httpx2 as httpx
import openai
import orjson
import pytest

from tests.fake_anthropic import FakeAnthropic
from tests.fake_provider import FakeProvider
from tests.gateway_config import gateway_server, upstream, with_local_fallback
from tests.server import Running
from tests.store_support import MASTER, log_rows, wait_for

WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
UPSTREAM_KEY = "sk-ant-test-key"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic("anthro") as provider:
        yield provider


@pytest.fixture(scope="module")
def openai_fake() -> Iterator[FakeProvider]:
    with FakeProvider("gpt-up") as provider:
        yield provider


@pytest.fixture(scope="module")
def gateway(fake: FakeAnthropic, openai_fake: FakeProvider) -> Iterator[Running]:
    native = {
        "engine": "anthropic",
        "base_url": fake.url,
        "api_key": UPSTREAM_KEY,
        "model": "claude-up-1",
        "price": {"input": 1.0, "output": 2.0, "cached_input": 0.5},
    }
    models = {
        **with_local_fallback("claude", native),
        "mixed": [{**native, "name": "mixed-claude"}, upstream(openai_fake, name="mixed-gpt")],
    }
    with gateway_server(models, logged=True, retries=0) as running:
        yield running


@pytest.fixture()
def claude(gateway: Running, fake: FakeAnthropic) -> anthropic.Anthropic:
    fake.reset()
    return anthropic.Anthropic(base_url=gateway.url, api_key=MASTER, max_retries=0, timeout=60)


@pytest.fixture()
def gpt(gateway: Running, fake: FakeAnthropic) -> openai.OpenAI:
    fake.reset()
    return openai.OpenAI(base_url=gateway.v1, api_key=MASTER, max_retries=0, timeout=60)


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def sent(fake: FakeAnthropic) -> dict:
    return fake.requests[-1]["body"]


def test_a_message_reaches_the_upstream_as_it_is(
    gateway: Running, claude: anthropic.Anthropic, fake: FakeAnthropic
) -> None:
    asked = {
        "model": "claude",
        "max_tokens": 30,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "metadata": {"user_id": "u-1"},
    }
    extra = {"top_k": 3, "thinking": {"type": "disabled"}}  # the latter has no chat equivalent
    made = claude.messages.with_raw_response.create(**asked, extra_body=extra)
    reply = made.parse()
    assert reply.id == "msg_anthro" and reply.model == "claude-up-1"  # the upstream's own message
    assert reply.content[0].text == "Hello from anthro" and reply.stop_reason == "end_turn"
    assert reply.usage.input_tokens == 600 and reply.usage.cache_read_input_tokens == 400

    assert sent(fake) == {**asked, **extra, "model": "claude-up-1", "stream": False}
    headers = {name.lower(): value for name, value in fake.requests[-1]["headers"].items()}
    assert headers["x-api-key"] == UPSTREAM_KEY and headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in headers

    assert made.headers["x-quasar-deployment"] == "claude#0"
    request_id = made.headers["x-request-id"]
    rows = wait_for(lambda: {r["request_id"]: r for r in log_rows(gateway.env["QUASAR_DATABASE_URL"])}.get(request_id))
    assert (rows["http_status"], rows["prompt_tokens"], rows["completion_tokens"]) == (
        200,
        1000,
        500,
    )  # prompt: with cache reads
    assert rows["cost"] == pytest.approx((600 * 1.0 + 400 * 0.5 + 500 * 2.0) / 1e6)


def test_a_stream_is_relayed_event_by_event(gateway: Running, claude: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    with claude.messages.stream(model="claude", max_tokens=30, messages=user("hi")) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello from anthro" and final.id == "msg_anthro"
    assert final.usage.output_tokens == 500
    assert sent(fake)["stream"] is True

    body = {"model": "claude", "max_tokens": 30, "messages": user("hi"), "stream": True}
    raw = httpx.post(f"{gateway.v1}/messages", json=body, headers={"x-api-key": MASTER}, timeout=60)
    events = [block.split("\n") for block in raw.text.strip().split("\n\n")]
    names = [lines[0].removeprefix("event: ") for lines in events]
    assert names == [
        "message_start",
        "ping",  # the upstream's own, relayed
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(
        orjson.loads(lines[1].removeprefix("data: "))["type"] == name for lines, name in zip(events, names, strict=True)
    )
    rows = wait_for(
        lambda: {r["request_id"]: r for r in log_rows(gateway.env["QUASAR_DATABASE_URL"])}.get(
            raw.headers["x-request-id"]
        )
    )
    assert rows["stream"] and (rows["prompt_tokens"], rows["completion_tokens"]) == (1000, 500)


@pytest.mark.parametrize("streamed", [False, True], ids=["create", "stream"])
def test_tool_round_trip(claude: anthropic.Anthropic, fake: FakeAnthropic, streamed: bool) -> None:
    fake.script("tool-call", "ok")
    asked = {"model": "claude", "max_tokens": 50, "messages": user("Weather in Paris?"), "tools": [WEATHER]}
    if streamed:
        with claude.messages.stream(**asked) as stream:
            first = stream.get_final_message()
    else:
        first = claude.messages.create(**asked)
    call = first.content[0]
    assert (first.stop_reason, call.type, call.name, call.input) == (
        "tool_use",
        "tool_use",
        "get_weather",
        {"city": "Paris"},
    )
    assert sent(fake)["tools"] == [WEATHER]

    follow_up = [
        *asked["messages"],
        {"role": "assistant", "content": [call.model_dump(exclude_none=True)]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Sunny, 21 C"}]},
    ]
    reply = claude.messages.create(**{**asked, "messages": follow_up})
    assert reply.content[0].text == "Hello from anthro"
    assert sent(fake)["messages"] == follow_up


def test_an_upstream_error_is_in_anthropic_envelope(claude: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    fake.script("400")
    with pytest.raises(anthropic.BadRequestError) as refused:
        claude.messages.create(model="claude", max_tokens=5, messages=user("hi"))
    assert refused.value.body["type"] == "error"
    assert refused.value.body["error"]["type"] == "invalid_request_error"
    assert "anthro failed with 400" in refused.value.body["error"]["message"]

    fake.script("529")
    with pytest.raises(anthropic.APIStatusError) as overloaded:
        claude.messages.create(model="claude", max_tokens=5, messages=user("hi"))
    assert overloaded.value.status_code == 502
    assert overloaded.value.body["type"] == "error" and overloaded.value.body["error"]["type"] == "api_error"
    assert "anthro failed with 529" in overloaded.value.body["error"]["message"]


def test_an_error_event_after_the_first_ends_the_stream_with_an_error_event(
    gateway: Running, fake: FakeAnthropic
) -> None:
    fake.reset()
    fake.script("error-event")
    body = {"model": "claude", "max_tokens": 30, "messages": user("hi"), "stream": True}
    raw = httpx.post(f"{gateway.v1}/messages", json=body, headers={"x-api-key": MASTER}, timeout=60)
    names = [block.split("\n")[0] for block in raw.text.strip().split("\n\n")]
    assert names[0] == "event: message_start" and names[-1] == "event: error"
    assert "event: message_stop" not in names
    error = orjson.loads(raw.text.strip().split("\n\n")[-1].split("\n")[1].removeprefix("data: "))
    assert error["type"] == "error" and "Overloaded" in error["error"]["message"]


@pytest.mark.parametrize("streamed", [False, True], ids=["create", "stream"])
def test_a_failing_native_upstream_fails_over_to_the_local_model(
    gateway: Running, claude: anthropic.Anthropic, fake: FakeAnthropic, streamed: bool
) -> None:
    fake.script("529")
    asked = {"model": "guarded", "max_tokens": 8, "messages": user("Say hi")}
    if streamed:
        with claude.messages.with_streaming_response.create(**asked, stream=True) as made:
            headers = made.headers
            names = [line.removeprefix("event: ") for line in made.iter_lines() if line.startswith("event: ")]
        assert names[0] == "message_start" and names[-1] == "message_stop" and "ping" in names
    else:
        made = claude.messages.with_raw_response.create(**asked)
        headers, reply = made.headers, made.parse()
        assert reply.type == "message" and reply.id.startswith("msg_") and reply.id != "msg_anthro"
        assert reply.content[0].text and reply.stop_reason in ("end_turn", "max_tokens")
    assert len(fake.requests) == 1  # the upstream was tried first, and failed
    assert headers["x-quasar-deployment"] == "guarded-local" and headers["x-quasar-attempts"] == "2"


def test_chat_is_translated_to_a_message_and_back(gpt: openai.OpenAI, fake: FakeAnthropic) -> None:
    reply = gpt.chat.completions.create(
        model="claude",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        max_tokens=40,
        stop=["END"],
        temperature=0.5,
    )
    assert reply.choices[0].message.content == "Hello from anthro" and reply.choices[0].finish_reason == "stop"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (1000, 500)
    assert sent(fake) == {
        "model": "claude-up-1",
        "system": "Be brief.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "max_tokens": 40,
        "stop_sequences": ["END"],
        "temperature": 0.5,
    }

    chunks = list(
        gpt.chat.completions.create(
            model="claude", messages=user("hi"), stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from anthro"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 500
    assert sent(fake)["max_tokens"] == 1024  # none asked: the deployment's max_output_tokens


@pytest.mark.parametrize("streamed", [False, True], ids=["create", "stream"])
def test_chat_tool_round_trip_through_a_message(gpt: openai.OpenAI, fake: FakeAnthropic, streamed: bool) -> None:
    fake.script("tool-call", "ok")
    tool = {"type": "function", "function": {"name": WEATHER["name"], "parameters": WEATHER["input_schema"]}}
    messages: list[dict] = user("Weather in Paris?")
    if streamed:
        chunks = list(gpt.chat.completions.create(model="claude", messages=messages, tools=[tool], stream=True))
        deltas = [c.choices[0].delta for c in chunks if c.choices and c.choices[0].delta.tool_calls]
        call_id, name = deltas[0].tool_calls[0].id, deltas[0].tool_calls[0].function.name
        arguments = "".join(d.tool_calls[0].function.arguments or "" for d in deltas)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        assert finish == ["tool_calls"]
    else:
        reply = gpt.chat.completions.create(model="claude", messages=messages, tools=[tool], tool_choice="required")
        assert reply.choices[0].finish_reason == "tool_calls"
        call = reply.choices[0].message.tool_calls[0]
        call_id, name, arguments = call.id, call.function.name, call.function.arguments
        assert sent(fake)["tool_choice"] == {"type": "any"}
    assert (call_id, name, orjson.loads(arguments)) == ("toolu_fake", "get_weather", {"city": "Paris"})
    assert sent(fake)["tools"] == [{"name": "get_weather", "input_schema": WEATHER["input_schema"]}]

    messages += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}],
        },
        {"role": "tool", "tool_call_id": call_id, "content": "Sunny, 21 C"},
    ]
    reply = gpt.chat.completions.create(model="claude", messages=messages, tools=[tool])
    assert reply.choices[0].message.content == "Hello from anthro"
    assert sent(fake)["messages"][1:] == [
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_fake", "name": "get_weather", "input": {"city": "Paris"}}],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_fake", "content": "Sunny, 21 C"}]},
    ]


def test_an_upstream_error_on_chat_is_in_openai_envelope(gpt: openai.OpenAI, fake: FakeAnthropic) -> None:
    fake.script("400")
    with pytest.raises(openai.BadRequestError) as refused:
        gpt.chat.completions.create(model="claude", messages=user("hi"))
    assert refused.value.body["code"] == "upstream_rejected_request"
    assert "anthro failed with 400" in refused.value.body["message"]


def test_a_legacy_completion_skips_the_anthropic_deployment(
    gpt: openai.OpenAI, fake: FakeAnthropic, openai_fake: FakeProvider
) -> None:
    openai_fake.reset()
    made = gpt.completions.with_raw_response.create(
        model="mixed", prompt="Say hi", max_tokens=8, extra_body={"request_breakdown": True}
    )
    reply = made.parse()
    assert reply.choices[0].text == "Hello from gpt-up" and made.headers["x-quasar-deployment"] == "mixed-gpt"
    assert fake.requests == [] and openai_fake.requests[-1]["legacy"]  # sent as a legacy completion, once
    routing = reply.model_extra["request_breakdown"]["routing"]
    reason = "does not support legacy completions"
    assert routing["dropped"] == [{"deployment": "mixed-claude", "model": "mixed", "reason": reason}]
    assert routing["candidates"] == ["mixed-gpt"]


def test_a_legacy_completion_with_only_an_anthropic_deployment_is_400(gpt: openai.OpenAI, fake: FakeAnthropic) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        gpt.completions.create(model="claude", prompt="Say hi", max_tokens=8)
    assert refused.value.body["param"] == "model" and refused.value.body["type"] == "invalid_request_error"
    assert "does not support legacy completions" in refused.value.body["message"]
    assert fake.requests == []
