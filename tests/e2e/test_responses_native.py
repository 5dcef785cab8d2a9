"""An `engine: openai` deployment with `apis: [responses]`: an upstream that speaks the Responses API itself.

A `POST /v1/responses` (the official `openai` SDK) reaches it as the client sent it, but for the
conversation, which Quasar keeps (a follow-up's `input` is the whole conversation, `store: false`), and its
Response and events come back as it sent them. The one pipeline still runs: the log row's usage and cost
come from the upstream's answer, and a failing upstream fails over to the local model (translated for it).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx2 as httpx
import openai
import orjson
import pytest

from tests.fake_responses import FakeResponses
from tests.gateway_config import gateway_server, with_local_fallback
from tests.server import Running
from tests.store_support import MASTER, log_rows, wait_for

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeResponses]:
    with FakeResponses("respup") as provider:
        yield provider


@pytest.fixture(scope="module")
def gateway(fake: FakeResponses) -> Iterator[Running]:
    upstream = {
        "engine": "openai",
        "provider": "respup",
        "base_url": fake.url,
        "api_key": "sk-resp-test",
        "model": "gpt-up",
        "apis": ["responses"],
        "price": {"input": 1.0, "output": 2.0, "cached_input": 0.5},
    }
    with gateway_server(with_local_fallback("gpt", upstream), logged=True, retries=0) as running:
        yield running


@pytest.fixture()
def client(gateway: Running, fake: FakeResponses) -> openai.OpenAI:
    fake.reset()
    return openai.OpenAI(base_url=gateway.v1, api_key=MASTER, max_retries=0, timeout=60)


def sent(fake: FakeResponses) -> dict:
    return fake.requests[-1]["body"]


def test_a_request_reaches_the_upstream_as_it_is(gateway: Running, client: openai.OpenAI, fake: FakeResponses) -> None:
    asked = {
        "model": "gpt",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
        "instructions": "Be brief.",
        "max_output_tokens": 50,
        "metadata": {"team": "a"},
    }
    extra = {"reasoning": {"effort": "low"}}  # not translated to chat: only a native upstream gets it
    made = client.responses.with_raw_response.create(**asked, extra_body=extra)
    response = made.parse()
    assert response.id.startswith("resp_respup_") and response.output_text == "Hello from respup"
    assert response.usage.input_tokens == 900 and response.store is True
    assert sent(fake) == {**asked, **extra, "model": "gpt-up", "stream": False, "store": False}
    assert fake.requests[-1]["responses"] and fake.requests[-1]["headers"]["Authorization"] == "Bearer sk-resp-test"

    assert made.headers["x-quasar-deployment"] == "gpt#0"
    assert client.responses.retrieve(response.id).output_text == "Hello from respup"  # kept in Quasar's store
    rows = wait_for(
        lambda: {r["request_id"]: r for r in log_rows(gateway.env["QUASAR_DATABASE_URL"])}.get(
            made.headers["x-request-id"]
        )
    )
    assert (rows["http_status"], rows["prompt_tokens"], rows["completion_tokens"]) == (200, 900, 400)
    assert rows["cost"] == pytest.approx((600 * 1.0 + 300 * 0.5 + 400 * 2.0) / 1e6)


def test_a_stream_is_relayed_event_by_event(gateway: Running, client: openai.OpenAI, fake: FakeResponses) -> None:
    events = list(client.responses.create(model="gpt", input="hi", stream=True))
    types = [event.type for event in events]
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert "response.content_part.added" in types and "response.output_text.done" in types  # the upstream's own
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "Hello from respup"
    assert events[-1].response.id.startswith("resp_respup_") and sent(fake)["stream"] is True
    assert client.responses.retrieve(events[-1].response.id).output_text == "Hello from respup"

    raw = httpx.post(
        f"{gateway.v1}/responses",
        json={"model": "gpt", "input": "hi", "stream": True},
        headers={"authorization": f"Bearer {MASTER}"},
        timeout=60,
    )
    blocks = [block.split("\n") for block in raw.text.strip().split("\n\n")]
    assert all(orjson.loads(b[1].removeprefix("data: "))["type"] == b[0].removeprefix("event: ") for b in blocks)
    assert "[DONE]" not in raw.text


@pytest.mark.parametrize("streamed", [False, True], ids=["create", "stream"])
def test_tool_round_trip_with_previous_response_id(client: openai.OpenAI, fake: FakeResponses, streamed: bool) -> None:
    fake.script("tool-call", "ok")
    if streamed:
        events = list(client.responses.create(model="gpt", input="Weather in Paris?", tools=[WEATHER], stream=True))
        first = events[-1].response
    else:
        first = client.responses.create(model="gpt", input="Weather in Paris?", tools=[WEATHER])
    call = first.output[0]
    assert (call.type, call.name, call.arguments, call.call_id) == (
        "function_call",
        "get_weather",
        '{"city": "Paris"}',
        "call_up",
    )
    assert sent(fake)["tools"] == [WEATHER]

    output = {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 21 C"}
    follow_up = client.responses.create(model="gpt", previous_response_id=first.id, input=[output], tools=[WEATHER])
    assert follow_up.output_text == "Hello from respup" and follow_up.previous_response_id == first.id
    body = sent(fake)
    assert "previous_response_id" not in body  # the conversation is Quasar's: sent whole
    assert body["input"] == [
        {"type": "message", "role": "user", "content": "Weather in Paris?"},
        {"type": "function_call", "call_id": "call_up", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        output,
    ]


def test_an_upstream_error_is_in_openai_envelope(client: openai.OpenAI, fake: FakeResponses) -> None:
    fake.script("400")
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="gpt", input="hi")
    assert refused.value.body["code"] == "upstream_rejected_request"
    assert "respup failed with 400" in refused.value.body["message"]


@pytest.mark.parametrize("streamed", [False, True], ids=["create", "stream"])
def test_a_failing_native_upstream_fails_over_to_the_local_model(
    client: openai.OpenAI, fake: FakeResponses, streamed: bool
) -> None:
    fake.script("500")
    asked = {"model": "guarded", "input": "Say hi", "max_output_tokens": 8}
    if streamed:
        with client.responses.with_streaming_response.create(**asked, stream=True) as made:
            headers = made.headers
            types = [line.removeprefix("event: ") for line in made.iter_lines() if line.startswith("event: ")]
        assert types[0] == "response.created" and types[-1] in ("response.completed", "response.incomplete")
    else:
        made = client.responses.with_raw_response.create(**asked)
        headers, response = made.headers, made.parse()
        assert response.output_text and not response.id.startswith("resp_respup")
    assert len(fake.requests) == 1 and fake.requests[0]["responses"]  # the upstream was tried first, and failed
    assert headers["x-quasar-deployment"] == "guarded-local" and headers["x-quasar-attempts"] == "2"


def test_chat_still_goes_to_chat_completions(client: openai.OpenAI, fake: FakeResponses) -> None:
    reply = client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "Hello from respup"
    assert "responses" not in fake.requests[-1]
