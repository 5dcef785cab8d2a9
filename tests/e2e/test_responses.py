"""POST /v1/responses (and GET / DELETE by id) through a real Quasar, driven by the official openai SDK.

The upstream is a fake chat-only provider, so every test can see the chat request the Responses body
became; one test runs the built-in model.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import openai
import pytest

from tests.fake_provider import FakeProvider
from tests.gateway_config import gateway_server, upstream
from tests.server import Running
from tests.store_support import MASTER, cli, database_url, log_rows, pg_schema, wait_for

OPENAI_JS = "7.59.0"  # the openai npm package the JavaScript test drives, as tests/e2e/js/package-lock.json pins it
KEY_A, KEY_B = "key-a-responses", "key-b-responses"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": True,
}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    with FakeProvider("up") as provider:
        yield provider


@pytest.fixture(scope="module")
def gw(fake: FakeProvider) -> Iterator[Running]:
    models = {"remote": [upstream(fake, model="up-model")]}
    with gateway_server(models, logged=True, env={"QUASAR_API_KEYS": f"{KEY_A},{KEY_B}"}) as running:
        yield running


@pytest.fixture(autouse=True)
def clean(fake: FakeProvider) -> None:
    fake.reset()


def sdk(gw: Running, key: str = KEY_A) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.v1, api_key=key, max_retries=0, timeout=20)


def test_plain_answer_and_what_the_upstream_got(gw: Running, fake: FakeProvider) -> None:
    response = sdk(gw).responses.create(
        model="remote",
        input="Say hello",
        instructions="Be brief.",
        max_output_tokens=20,
        temperature=0.3,
        metadata={"team": "qa"},
        user="u-1",
    )
    assert response.output_text == "Hello from up"
    assert response.id.startswith("resp_") and response.object == "response" and response.status == "completed"
    assert response.model == "remote" and response.instructions == "Be brief." and response.metadata == {"team": "qa"}
    message = response.output[0]
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    assert response.usage.input_tokens == 1000 and response.usage.output_tokens == 500
    assert response.usage.total_tokens == 1500 and response.usage.input_tokens_details.cached_tokens == 400
    sent = fake.requests[-1]["body"]
    assert sent["model"] == "up-model" and sent["max_tokens"] == 20 and sent["temperature"] == 0.3
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]
    assert sent["user"] == "u-1" and "metadata" not in sent and "input" not in sent

    def logged() -> list[dict]:
        return [r for r in log_rows(database_url(gw)) if r["metadata"] == {"team": "qa"}]

    row = wait_for(logged)[0]
    assert row["model"] == "remote" and row["status"] == "ok" and row["completion_tokens"] == 500
    assert row["key_id"] is not None and row["messages"][1]["content"] == "Say hello"
    metrics = httpx.get(f"{gw.url}/metrics", headers={"Authorization": f"Bearer {MASTER}"}).text
    assert 'endpoint="responses"' in metrics


def test_request_breakdown_rides_on_the_response(gw: Running) -> None:
    client = sdk(gw)
    response = client.responses.create(model="remote", input="hi", extra_body={"request_breakdown": True})
    assert response.request_breakdown["completion_tokens"] == 500  # type: ignore[attr-defined]
    events = list(
        client.responses.create(model="remote", input="hi", stream=True, extra_body={"request_breakdown": True})
    )
    assert events[-1].type == "response.completed" and events[-1].response.output_text == "Hello from up"
    assert events[-1].response.request_breakdown["completion_tokens"] == 500  # type: ignore[attr-defined]


def test_streamed_events(gw: Running, fake: FakeProvider) -> None:
    events = list(sdk(gw).responses.create(model="remote", input="Say hello", stream=True))
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"] and events[0].response.output == []
    assert types[2:4] == ["response.output_item.added", "response.content_part.added"]
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    numbers = [e.sequence_number for e in events]
    assert numbers == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    final = events[-1].response
    assert deltas == final.output_text == "Hello from up"
    assert final.status == "completed" and final.usage.output_tokens == 500
    assert fake.requests[-1]["body"]["stream"] is True
    # the wire framing: each event names its type, and there is no [DONE]
    body = {"model": "remote", "input": "hi", "stream": True}
    with httpx.stream("POST", f"{gw.v1}/responses", json=body, headers={"Authorization": f"Bearer {KEY_A}"}) as resp:
        text = resp.read().decode()
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert text.startswith("event: response.created\ndata: {") and "[DONE]" not in text
    assert text.rstrip().split("\n")[-2] == "event: response.completed"


def test_function_tool_and_its_result(gw: Running, fake: FakeProvider) -> None:
    client = sdk(gw)
    fake.script("tool-call")
    first = client.responses.create(model="remote", input="Weather in Paris?", tools=[WEATHER], tool_choice="auto")
    call = first.output[0]
    assert call.type == "function_call" and call.name == "get_weather" and call.call_id == "call_fake"
    assert call.arguments == '{"city": "Paris"}' and first.output_text == ""
    sent = fake.requests[-1]["body"]
    assert sent["tools"] == [{"type": "function", "function": {k: v for k, v in WEATHER.items() if k != "type"}}]
    assert sent["tool_choice"] == "auto"

    result = {"type": "function_call_output", "call_id": call.call_id, "output": "18C and sunny"}
    second = client.responses.create(model="remote", previous_response_id=first.id, input=[result], tools=[WEATHER])
    assert second.output_text == "Hello from up" and second.previous_response_id == first.id
    assert fake.requests[-1]["body"]["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [sent_call(call.call_id)]},
        {"role": "tool", "tool_call_id": "call_fake", "content": "18C and sunny"},
    ]

    fake.script("tool-call")
    events = list(client.responses.create(model="remote", input="Weather?", tools=[WEATHER], stream=True))
    deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert deltas == done.arguments == '{"city": "Paris"}'
    final = events[-1]
    assert final.type == "response.completed" and final.response.output[0].name == "get_weather"


def test_a_broken_stream_ends_failed_and_a_failed_upstream_is_502(gw: Running, fake: FakeProvider) -> None:
    client = sdk(gw)
    fake.script("reset")
    events = list(client.responses.create(model="remote", input="hi", stream=True, metadata={"case": "cut"}))
    types = [e.type for e in events]
    assert "response.output_text.delta" in types and "response.completed" not in types
    assert types[-2:] == ["error", "response.failed"] and events[-1].response.status == "failed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    row = wait_for(lambda: [r for r in log_rows(database_url(gw)) if r["metadata"] == {"case": "cut"}])[0]
    assert row["status"] == "truncated"
    fake.reset("500")  # every attempt
    with pytest.raises(openai.APIStatusError) as failed:
        client.responses.create(model="remote", input="hi", stream=True)
    assert failed.value.status_code == 502 and "up failed with 500" in failed.value.message


def test_a_client_that_leaves_a_stream_cancels_it(gw: Running, fake: FakeProvider) -> None:
    fake.script("stall:2")
    body = {"model": "remote", "input": "hi", "stream": True, "metadata": {"case": "left"}}
    headers = {"Authorization": f"Bearer {KEY_A}"}
    with httpx.stream("POST", f"{gw.v1}/responses", json=body, headers=headers, timeout=20) as resp:
        assert any(line == "event: response.output_text.delta" for line in resp.iter_lines())
    wait_for(lambda: fake.disconnects == 1, timeout=5, every=0.05)
    row = wait_for(lambda: [r for r in log_rows(database_url(gw)) if r["metadata"] == {"case": "left"}])[0]
    assert row["status"] == "cancelled" and "Traceback" not in gw.log()


def sent_call(call_id: str) -> dict:
    return {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}


def test_previous_response_id_continues_the_conversation(gw: Running, fake: FakeProvider) -> None:
    client = sdk(gw)
    first = client.responses.create(model="remote", input="My name is Ada.", instructions="Only for the first turn")
    streamed = client.responses.create(model="remote", input="And my cat?", previous_response_id=first.id, stream=True)
    second_id = [e for e in streamed][-1].response.id
    third = client.responses.create(
        model="remote",
        previous_response_id=second_id,
        input=[{"role": "user", "content": [{"type": "input_text", "text": "What is my name?"}]}],
    )
    assert third.output_text == "Hello from up"
    listed = client.responses.input_items.list(third.id, order="asc")
    assert [(item.type, item.role, item.content[0].text) for item in listed.data] == [
        ("message", "user", "My name is Ada."),
        ("message", "assistant", "Hello from up"),
        ("message", "user", "And my cat?"),
        ("message", "assistant", "Hello from up"),
        ("message", "user", "What is my name?"),
    ]
    newest = client.responses.input_items.list(third.id, limit=2)
    assert [item.id for item in newest.data] == [item.id for item in reversed(listed.data)][:2] and newest.has_more
    assert all(item.id for item in listed.data) and len({item.id for item in listed.data}) == 5
    assert fake.requests[-1]["body"]["messages"] == [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Hello from up"},
        {"role": "user", "content": "And my cat?"},
        {"role": "assistant", "content": "Hello from up"},
        {"role": "user", "content": [{"type": "text", "text": "What is my name?"}]},
    ]


def test_get_delete_and_keys(gw: Running) -> None:
    a, b, master = sdk(gw), sdk(gw, KEY_B), sdk(gw, MASTER)
    made = a.responses.create(model="remote", input="remember me")
    got = a.responses.retrieve(made.id)
    assert got.id == made.id and got.output_text == "Hello from up" and master.responses.retrieve(made.id).id == made.id
    with pytest.raises(openai.NotFoundError) as other:
        b.responses.retrieve(made.id)
    assert other.value.body["code"] == "not_found"
    with pytest.raises(openai.NotFoundError) as follow_up:
        b.responses.create(model="remote", input="and?", previous_response_id=made.id)
    assert follow_up.value.body["param"] == "previous_response_id"
    with pytest.raises(openai.NotFoundError):
        b.responses.delete(made.id)
    with pytest.raises(openai.NotFoundError):
        b.responses.input_items.list(made.id)
    assert [i.content[0].text for i in a.responses.input_items.list(made.id).data] == ["remember me"]
    with pytest.raises(openai.BadRequestError) as bad_limit:
        a.responses.input_items.list(made.id, limit=0)
    assert bad_limit.value.body["param"] == "limit"
    deleted = httpx.delete(f"{gw.v1}/responses/{made.id}", headers={"Authorization": f"Bearer {KEY_A}"})
    assert deleted.status_code == 200
    assert deleted.json() == {"id": made.id, "object": "response.deleted", "deleted": True}
    for client in (a, master):
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(made.id)
    unstored = a.responses.create(model="remote", input="forget me", store=False)
    assert unstored.output_text == "Hello from up" and unstored.store is False
    with pytest.raises(openai.NotFoundError):
        a.responses.retrieve(unstored.id)
    with pytest.raises(openai.AuthenticationError):
        sdk(gw, "wrong-key").responses.create(model="remote", input="hi")


BAD = [
    ({"input": "hi"}, "model"),
    ({"model": "remote"}, "input"),
    ({"model": "remote", "input": []}, "input"),
    ({"model": "remote", "input": 5}, "input"),
    ({"model": "remote", "input": [{"type": "web_search_call"}]}, "input[0].type"),
    ({"model": "remote", "input": [{"role": "user", "content": [{"type": "input_text"}]}]}, "input[0].content[0].text"),
    ({"model": "remote", "input": [{"role": "robot", "content": "hi"}]}, "input[0].role"),
    ({"model": "remote", "input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
    ({"model": "remote", "input": "hi", "tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"model": "remote", "input": "hi", "tools": [{"type": "function"}]}, "tools[0].name"),
    ({"model": "remote", "input": "hi", "tool_choice": "sometimes"}, "tool_choice"),
    ({"model": "remote", "input": "hi", "text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format"),
    ({"model": "remote", "input": "hi", "temperature": 3}, "temperature"),
    ({"model": "remote", "input": "hi", "max_output_tokens": 0}, "max_output_tokens"),
    ({"model": "remote", "input": "hi", "metadata": {"k": 1}}, "metadata.k"),
    ({"model": "remote", "input": "hi", "store": "yes"}, "store"),
]


@pytest.mark.parametrize(("body", "param"), BAD, ids=[param for _, param in BAD])
def test_bad_input_names_the_field(gw: Running, fake: FakeProvider, body: dict, param: str) -> None:
    resp = httpx.post(f"{gw.v1}/responses", json=body, headers={"Authorization": f"Bearer {KEY_A}"})
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error" and param in error["message"]
    assert not fake.requests


def test_unknown_ids_are_404_in_openai_envelope(gw: Running) -> None:
    headers = {"Authorization": f"Bearer {KEY_A}"}
    for method, path in (("GET", "resp_nope"), ("DELETE", "resp_nope"), ("GET", "resp_nope/input_items")):
        resp = httpx.request(method, f"{gw.v1}/responses/{path}", headers=headers)
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"
    body = {"model": "remote", "input": "hi", "previous_response_id": "resp_nope"}
    resp = httpx.post(f"{gw.v1}/responses", json=body, headers=headers)
    assert resp.status_code == 404 and resp.json()["error"]["param"] == "previous_response_id"
    assert httpx.get(f"{gw.v1}/responses", headers=headers).status_code == 405
    spec = httpx.get(f"{gw.url}/openapi.json").json()
    assert {"post"} <= set(spec["paths"]["/v1/responses"]) and "ResponsesRequest" in spec["components"]["schemas"]
    assert {"get", "delete"} <= set(spec["paths"]["/v1/responses/{response_id}"])


def test_built_in_model(client: openai.OpenAI) -> None:
    response = client.responses.create(model="spark", input="Count to twenty.", max_output_tokens=3, temperature=0)
    assert response.output_text and response.usage.output_tokens == 3
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    events = list(client.responses.create(model="spark", input="Say hi.", max_output_tokens=3, stream=True))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert events[-1].type in ("response.completed", "response.incomplete")
    assert deltas == events[-1].response.output_text and deltas
    follow = client.responses.create(
        model="spark", input="Again.", previous_response_id=response.id, max_output_tokens=2
    )
    assert follow.previous_response_id == response.id


def test_postgres_keeps_conversations(fake: FakeProvider) -> None:
    with pg_schema() as url:
        cli("db", "upgrade", env={"QUASAR_DATABASE_URL": url})
        with gateway_server({"remote": [upstream(fake)]}, env={"QUASAR_DATABASE_URL": url}) as running:
            client = openai.OpenAI(base_url=running.v1, api_key="unused", max_retries=0, timeout=20)
            first = client.responses.create(model="remote", input="My name is Ada.", metadata={"db": "pg"})
            second = client.responses.create(model="remote", input="Who am I?", previous_response_id=first.id)
            assert [m["content"] for m in fake.requests[-1]["body"]["messages"]] == [
                "My name is Ada.",
                "Hello from up",
                "Who am I?",
            ]
            assert client.responses.retrieve(second.id).metadata == {}
            assert client.responses.retrieve(first.id).metadata == {"db": "pg"}
            client.responses.delete(first.id)
            with pytest.raises(openai.NotFoundError):
                client.responses.retrieve(first.id)


def test_javascript_sdk(gw: Running, fake: FakeProvider) -> None:
    js = Path(__file__).parent / "js"  # package.json pins the SDK; `make test-install` runs npm ci there
    installed = js / "node_modules" / "openai" / "package.json"
    assert shutil.which("node"), "node is not installed: make test-packages"
    assert installed.is_file(), "the openai npm package is not installed: make test-install (npm ci in tests/e2e/js)"
    assert json.loads(installed.read_text())["version"] == OPENAI_JS
    script = js / "responses.mjs"
    fake.script("ok", "ok", "tool-call")
    env = {"QUASAR_BASE_URL": gw.v1, "QUASAR_KEY": KEY_A, "QUASAR_MODEL": "remote", "PATH": gw.env["PATH"]}
    done = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["plain"] == out["deltas"] == out["final"] == out["followUp"] == "Hello from up"
    assert out["types"][0] == "response.created" and out["types"][-1] == "response.completed"
    assert out["sequence"] == list(range(len(out["types"])))
    assert out["call"] == {"type": "function_call", "name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert out["retrieved"] is True and out["missing"] == 404
    assert fake.requests[-1]["body"]["messages"][-1] == {"role": "tool", "tool_call_id": "call_fake", "content": "18C"}


def test_json_schema_format_on_the_built_in_model(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"colour": {"type": "string", "enum": ["red", "green", "blue"]}},
        "required": ["colour"],
        "additionalProperties": False,
    }
    response = client.responses.create(
        model="spark",
        input="Pick a colour.",
        max_output_tokens=20,
        text={"format": {"type": "json_schema", "name": "pick", "schema": schema, "strict": True}},
    )
    assert json.loads(response.output_text)["colour"] in ("red", "green", "blue")
    assert response.text.format.type == "json_schema" and response.text.format.name == "pick"
