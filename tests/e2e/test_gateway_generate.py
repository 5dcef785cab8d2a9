"""Seed 003's `POST /api/generate/` and its fields, also through `extra_body` on the chat endpoint."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator

import httpx2 as httpx
import openai
import orjson
import pytest
import requests

from quasar.errors import InvalidRequest
from quasar.gateway.credentials import check_base_url
from tests.fake_provider import FakeProvider
from tests.gateway_config import gateway_config, upstream
from tests.server import Running, quasar_server

KEY = "a4EUZEcl.RmrDVwbTI8yOFZNuKwSwYnrdCc03Qn6Z"  # the seed's example token, as this server's key
SECRET = "sk-customer-DEacrWTDndFYhdcLYKF6T3Blbk"
SEED_SUMMARY_FIELDS = {
    "prompt_tokens",
    "completion_tokens",
    "cost",
    "prompt_messages",
    "completion_message",
    "model",
    "cached",
    "timestamp",
    "status_code",
    "stream",
    "latency",
    "routing_time",
    "full_request",
    "metadata",
}


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeProvider, FakeProvider]]:
    with FakeProvider("a") as a, FakeProvider("b") as b:
        yield a, b


@pytest.fixture(autouse=True)
def clean(fakes) -> None:
    for fake in fakes:
        fake.reset()


@pytest.fixture(scope="module")
def gw(fakes) -> Iterator[Running]:
    a, b = fakes
    models = {
        "gpt-3.5-turbo": [upstream(a, provider="openai", price={"input": 0.5, "output": 1.5})],
        "gpt-3.5-turbo-16k": [upstream(b, provider="azure-ish", price={"input": 3, "output": 4})],
    }
    config = gateway_config(models, allowed_hosts=["127.0.0.1", "localhost"])
    with quasar_server(config, env={"QUASAR_API_KEYS": KEY}, args=("--log-level", "debug")) as running:
        yield running


def post(gw: Running, body: dict) -> httpx.Response:
    return httpx.post(f"{gw.url}/api/generate/", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=20)


def test_seed_curl_example(gw: Running) -> None:
    body = """{ "messages": [ { "role": "user", "content": "Hello" } ], "models": ["gpt-3.5-turbo", "gpt-3.5-turbo-16k"], "stream": false, "max_tokens": 100 }"""  # noqa: E501
    out = subprocess.run(
        ["curl", "-sS", "-X", "POST", f"{gw.url}/api/generate/", "-H", "Content-Type: application/json",
         "-H", f"Authorization: Bearer {KEY}", "-d", body],
        capture_output=True, check=True, timeout=30,
    )  # fmt: skip
    reply = json.loads(out.stdout)
    assert reply["object"] == "chat.completion"
    assert reply["model"] in ("gpt-3.5-turbo", "gpt-3.5-turbo-16k")
    assert reply["choices"][0]["message"]["content"].startswith("Hello from")


def test_seed_python_example(gw: Running, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"{gw.url}/api/generate/"

    def demo_call(input, model="claude-2", token=KEY, stream=False):  # noqa: A002 (the seed's code, as written)
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {token}",
        }
        data = {
            "model": model,
            "messages": [{"role": "user", "content": input}],
            "stream": stream,
            "models": ["gpt-3.5-turbo", "gpt-3.5-turbo-16k"],
        }
        response = requests.post(url, headers=headers, json=data, stream=stream)
        return response

    messages = "Say 'Hello World'"
    print(demo_call(messages).json())
    printed = capsys.readouterr().out
    assert "'object': 'chat.completion'" in printed and "Hello from" in printed


def test_generate_needs_a_key_and_a_model(gw: Running) -> None:
    resp = httpx.post(f"{gw.url}/api/generate/", json={"messages": [{"role": "user", "content": "x"}]})
    assert resp.status_code == 401
    resp = post(gw, {"messages": [{"role": "user", "content": "x"}]})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "model"
    resp = post(gw, {"messages": [{"role": "user", "content": "x"}], "models": ["nope"]})
    assert resp.status_code == 404 and resp.json()["error"]["param"] == "models"


def test_breakdown_in_the_body(gw: Running, fakes) -> None:
    body = {
        "messages": [{"role": "user", "content": "How are you doing today?"}],
        "model": "gpt-3.5-turbo",
        "logprobs": True,
        "request_breakdown": True,
        "metadata": {"my_value_key": "my_value"},
        "customer_identifier": "user-42",
        "customer_credentials": {"openai": {"api_key": SECRET}},
    }
    resp = post(gw, body)
    assert resp.status_code == 200
    summary = resp.json()["request_breakdown"]
    assert set(summary) >= SEED_SUMMARY_FIELDS
    assert summary["prompt_tokens"] == 1000 and summary["completion_tokens"] == 500
    assert summary["cost"] == pytest.approx((1000 * 0.5 + 500 * 1.5) / 1e6)
    assert summary["prompt_messages"] == body["messages"]
    assert summary["completion_message"] == {"role": "assistant", "content": "Hello from a"}
    assert summary["model"] == "gpt-3.5-turbo" and summary["status_code"] == 200 and summary["stream"] is False
    assert summary["cached"] is False and summary["timestamp"].endswith("Z")
    assert summary["metadata"] == {"my_value_key": "my_value"} and summary["customer_identifier"] == "user-42"
    assert 0 <= summary["routing_time"] <= summary["latency"]
    assert summary["full_request"]["logprobs"] is True and "customer_credentials" not in summary["full_request"]
    attempt = summary["routing"]["attempts"][0]
    assert attempt["deployment"] == "gpt-3.5-turbo#0" and attempt["status"] == 200 and attempt["latency"] >= 0
    assert summary["engine_timings"] is None  # llama.cpp's timings: an upstream provider has none
    assert SECRET not in resp.text
    sent = fakes[0].requests[-1]
    assert sent["headers"]["Authorization"] == f"Bearer {SECRET}"
    assert not {"metadata", "customer_identifier", "request_breakdown", "customer_credentials"} & set(sent["body"])
    resp = post(gw, {**body, "cache_enabled": False, "cache_ttl": 60, "disable_log": True})
    assert resp.status_code == 200
    assert not {"cache_enabled", "cache_ttl", "disable_log"} & set(fakes[0].requests[-1]["body"])


def test_breakdown_as_the_last_stream_chunk(gw: Running) -> None:
    body = {
        "messages": [{"role": "user", "content": "Hello"}],
        "models": ["gpt-3.5-turbo-16k"],
        "stream": True,
        "request_breakdown": True,
    }
    with httpx.stream(
        "POST", f"{gw.url}/api/generate/", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=20
    ) as resp:
        events = [line[6:] for line in resp.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    last = orjson.loads(events[-2])
    assert last["id"] == "request_breakdown" and last["object"] == "chat.completion.chunk"
    assert last["model"] == "extra_parameter" and last["usage"] == {} and last["system_fingerprint"] is None
    choice = last["choices"][0]
    assert choice["delta"] == {"content": None, "role": "assistant"} and choice["finish_reason"] == "stop"
    assert choice["index"] == 0 and choice["message"] == {"content": None, "role": "assistant"}
    summary = choice["request_breakdown"]
    assert set(summary) >= SEED_SUMMARY_FIELDS
    assert summary["stream"] is True and summary["completion_message"]["content"] == "Hello from b"
    assert summary["model"] == "gpt-3.5-turbo-16k" and summary["ttft"] > 0
    assert all(orjson.loads(e)["id"] != "request_breakdown" for e in events[:-2])


def test_exclusions_through_extra_body(gw: Running) -> None:
    client = openai.OpenAI(base_url=gw.v1, api_key=KEY, max_retries=0, timeout=20)
    both = ["gpt-3.5-turbo", "gpt-3.5-turbo-16k"]
    for extra, served in [
        ({"exclude_models": ["gpt-3.5-turbo"]}, "gpt-3.5-turbo-16k"),
        ({"exclude_providers": ["azure-ish"]}, "gpt-3.5-turbo"),
    ]:
        reply = client.chat.completions.create(
            model="ignored-when-models-given", messages=[{"role": "user", "content": "x"}],
            extra_body={"models": both, "request_breakdown": True, **extra},
        )  # fmt: skip
        assert reply.model == served
        assert reply.model_extra["request_breakdown"]["routing"]["dropped"]
    # A single `models` entry acts as `model`: exclude_models does not apply to it.
    reply = client.chat.completions.create(
        model="x", messages=[{"role": "user", "content": "x"}],
        extra_body={"models": ["gpt-3.5-turbo"], "exclude_models": ["gpt-3.5-turbo"], "disable_log": True},
    )  # fmt: skip
    assert reply.model == "gpt-3.5-turbo"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model="x", messages=[{"role": "user", "content": "x"}], extra_body={"models": both, "exclude_models": both}
        )
    assert err.value.body["param"] == "exclude_models"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"models": "gpt-3.5-turbo"}, "models"),
        ({"fallback_models": ["nope"]}, "fallback_models"),
        ({"metadata": 5}, "metadata"),
        ({"disable_log": "yes"}, "disable_log"),
        ({"request_breakdown": 1}, "request_breakdown"),
        ({"customer_identifier": ["x"]}, "customer_identifier"),
        ({"exclude_providers": "openai"}, "exclude_providers"),
        ({"customer_credentials": {"openai": {"api_key": 5}}}, "customer_credentials.openai.api_key"),
        ({"customer_identifier": ""}, "customer_identifier"),
        ({"cache_ttl": 0}, "cache_ttl"),
    ],
)
def test_bad_gateway_fields_are_400s_naming_the_field(gw: Running, fields: dict, param: str) -> None:
    resp = post(gw, {"messages": [{"role": "user", "content": "x"}], "model": "gpt-3.5-turbo", **fields})
    assert resp.status_code in (400, 404), resp.text
    assert resp.json()["error"]["param"] == param


@pytest.mark.parametrize(
    ("base_url", "why"),
    [
        ("https://evil.example.com/v1", "not on this server's router.allowed_hosts"),
        ("https://127.0.0.1/v1", "non-public address"),
        ("https://localhost/v1", "non-public address"),
        ("http://127.0.0.1/v1", "https://"),
    ],
)
def test_customer_base_url_is_refused_unless_allowed_and_public(gw: Running, base_url: str, why: str) -> None:
    creds = {"openai": {"api_key": SECRET, "base_url": base_url}}
    body = {"messages": [{"role": "user", "content": "x"}], "model": "gpt-3.5-turbo", "customer_credentials": creds}
    resp = post(gw, body)
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "customer_credentials.openai.base_url"
    assert why in resp.json()["error"]["message"] and SECRET not in resp.text


def test_public_allowed_host_passes_the_check() -> None:
    asyncio.run(check_base_url("https://8.8.8.8/v1", ["8.8.8.8"], "p"))  # an IP literal: no DNS, no traffic
    with pytest.raises(InvalidRequest):
        asyncio.run(check_base_url("https://10.0.0.1/v1", ["10.0.0.1"], "p"))


def test_credentials_never_reach_logs_or_errors(gw: Running, fakes) -> None:
    a, _ = fakes
    a.script("echo-key")
    body = {
        "messages": [{"role": "user", "content": "x"}],
        "model": "gpt-3.5-turbo",
        "customer_credentials": {"openai": {"api_key": SECRET}},
        "request_breakdown": True,
    }
    resp = post(gw, body)
    assert resp.status_code == 502
    assert "Incorrect API key provided" in resp.json()["error"]["message"]
    assert SECRET not in resp.text
    assert a.requests[-1]["headers"]["Authorization"] == f"Bearer {SECRET}"
    resp = post(gw, {**body, "stream": True})
    assert SECRET not in resp.text
    assert SECRET not in gw.log() and KEY not in gw.log()


def test_deprecated_customer_api_keys_name_a_key_per_model(gw: Running, fakes) -> None:
    key = "sk-per-model-7Hq2"
    body = {"messages": [{"role": "user", "content": "x"}], "model": "gpt-3.5-turbo"}
    resp = post(gw, {**body, "customer_api_keys": {"gpt-3.5-turbo": key}})
    assert resp.status_code == 200
    assert fakes[0].requests[-1]["headers"]["Authorization"] == f"Bearer {key}"
    assert key not in gw.log()
