"""The router through a real Quasar: each strategy's choice, cooldown and recovery, fallbacks, filtering."""

from __future__ import annotations

import collections
import concurrent.futures
import time
from collections.abc import Iterator

import openai
import pytest

from tests.fake_provider import FakeProvider
from tests.gateway_config import gateway_config, upstream
from tests.server import Running, quasar_server

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeProvider, FakeProvider, FakeProvider]]:
    with FakeProvider("a") as a, FakeProvider("b") as b, FakeProvider("c") as c:
        yield a, b, c


@pytest.fixture(autouse=True)
def clean(fakes) -> None:
    for fake in fakes:
        fake.reset()


def sdk(running: Running) -> openai.OpenAI:
    return openai.OpenAI(base_url=running.v1, api_key="unused", max_retries=0, timeout=20)


def served_by(client: openai.OpenAI, model: str = "m", **extra) -> str:
    reply = client.chat.completions.create(model=model, messages=HI, extra_body=extra or None)
    return reply.choices[0].message.content.rsplit(" ", 1)[-1]


def test_priority_takes_config_order(fakes) -> None:
    a, b, c = fakes
    with quasar_server(gateway_config({"m": [upstream(b), upstream(a), upstream(c)]})) as gw:
        client = sdk(gw)
        assert {served_by(client) for _ in range(5)} == {"b"}


def test_weighted_follows_the_weights(fakes) -> None:
    a, b, _ = fakes
    config = gateway_config({"m": [upstream(a, weight=1), upstream(b, weight=1000)]}, strategy="weighted")
    with quasar_server(config) as gw:
        client = sdk(gw)
        counts = collections.Counter(served_by(client) for _ in range(30))
        assert counts["b"] >= 27
    config = gateway_config({"m": [upstream(a), upstream(b)]}, strategy="weighted")
    with quasar_server(config) as gw:
        client = sdk(gw)
        counts = collections.Counter(served_by(client) for _ in range(40))
        assert counts["a"] >= 5 and counts["b"] >= 5


def test_least_busy_avoids_the_busy_deployment(fakes) -> None:
    a, b, _ = fakes
    a.script("slow:1.5")
    with quasar_server(gateway_config({"m": [upstream(a), upstream(b)]}, strategy="least-busy")) as gw:
        client = sdk(gw)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            busy = pool.submit(served_by, client)
            deadline = time.monotonic() + 5
            while not a.requests and time.monotonic() < deadline:
                time.sleep(0.02)
            assert served_by(client) == "b"  # a has one request in flight
            assert busy.result() == "a"


def test_latency_prefers_the_fastest(fakes) -> None:
    a, b, _ = fakes
    a.reset(default="slow:0.3")
    with quasar_server(gateway_config({"m": [upstream(a), upstream(b)]}, strategy="latency")) as gw:
        client = sdk(gw)
        assert [served_by(client), served_by(client)] == ["a", "b"]  # each measured once, unmeasured first
        assert {served_by(client) for _ in range(4)} == {"b"}


def test_cost_prefers_the_cheapest(fakes) -> None:
    a, b, c = fakes
    deployments = [
        upstream(a, price={"input": 5, "output": 15}),
        upstream(b, price={"input": 0.1, "output": 0.2}),
        upstream(c, price={"input": 1, "output": 2}),
    ]
    with quasar_server(gateway_config({"m": deployments}, strategy="cost")) as gw:
        assert {served_by(sdk(gw)) for _ in range(3)} == {"b"}


@pytest.fixture(scope="module")
def gw(fakes) -> Iterator[Running]:
    a, b, c = fakes
    models = {
        "m": [upstream(a, name="a-dep"), upstream(b, name="b-dep")],
        "flaky": [upstream(a, name="flaky-a"), upstream(b, name="flaky-b")],
        "primary": [upstream(a, name="primary-a")],
        "backup": [upstream(c, name="backup-c")],
        "spare": [upstream(b, name="spare-b")],
        "caps": [
            upstream(a, name="plain", capabilities=[], context_length=64),
            upstream(b, name="tools", capabilities=["tools"], context_length=64),
            upstream(c, name="all", capabilities=["tools", "vision", "json_schema"], context_length=4096),
        ],
        "small": [upstream(a, name="small-a", context_length=64)],
        "text-only": [upstream(a, name="text-only-a", capabilities=[])],
    }
    config = gateway_config(models, retries=0, cooldown_seconds=1, allowed_fails=2, fallbacks={"primary": ["backup"]})
    with quasar_server(config) as running:
        yield running


def breakdown(client: openai.OpenAI, model: str, **extra) -> tuple[dict, dict]:
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=extra.pop("messages", HI), extra_body={"request_breakdown": True, **extra}
    )
    return raw.parse().model_extra["request_breakdown"], raw.headers


def test_429_cools_down_and_recovers(gw: Running, fakes) -> None:
    a, b, _ = fakes
    client = sdk(gw)
    a.script("429:0")
    first, headers = breakdown(client, "m")
    assert headers["x-quasar-deployment"] == "b-dep" and headers["x-quasar-attempts"] == "2"
    assert [(x["deployment"], x["status"]) for x in first["routing"]["attempts"]] == [("a-dep", 429), ("b-dep", 200)]
    second, headers = breakdown(client, "m")
    assert headers["x-quasar-attempts"] == "1" and headers["x-quasar-deployment"] == "b-dep"
    assert second["routing"]["dropped"][0]["deployment"] == "a-dep"
    assert "cooling down" in second["routing"]["dropped"][0]["reason"]
    time.sleep(1.1)
    _, headers = breakdown(client, "m")
    assert headers["x-quasar-deployment"] == "a-dep"


def test_repeated_failures_cool_down(gw: Running, fakes) -> None:
    a, b, _ = fakes
    client = sdk(gw)
    a.script("500", "500")
    assert served_by(client, "flaky") == "b"  # one failure: still a candidate
    assert served_by(client, "flaky") == "b"  # allowed_fails (2) reached: cooling down
    before = len(a.requests)
    result, _ = breakdown(client, "flaky")
    assert result["deployment"] == "flaky-b" and len(a.requests) == before
    time.sleep(1.1)
    assert served_by(client, "flaky") == "a"


def test_config_fallbacks(gw: Running, fakes) -> None:
    a, _, _ = fakes
    a.reset(default="503")
    client = sdk(gw)
    raw = client.chat.completions.with_raw_response.create(model="primary", messages=HI)
    assert raw.parse().model == "backup" and raw.parse().choices[0].message.content == "Hello from c"
    assert raw.headers["x-quasar-fallbacks"] == "1" and raw.headers["x-quasar-deployment"] == "backup-c"
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="primary", messages=HI, extra_body={"disable_fallback": True})
    assert err.value.status_code == 502


def test_request_fallbacks_come_first(gw: Running, fakes) -> None:
    a, _, _ = fakes
    a.reset(default="500")
    result, headers = breakdown(sdk(gw), "primary", fallback_models=["spare"])
    assert result["model"] == "spare" and headers["x-quasar-fallbacks"] == "1"
    assert result["routing"]["candidates"][-2:] == ["spare-b", "backup-c"]  # primary-a may be cooling down


def test_non_retryable_error_does_not_fall_back(gw: Running, fakes) -> None:
    _, b, c = fakes
    b.script("400")
    with pytest.raises(openai.BadRequestError):
        sdk(gw).chat.completions.create(model="spare", messages=HI, extra_body={"fallback_models": ["backup"]})
    assert len(b.requests) == 1 and c.requests == []


def test_capabilities_filter_candidates(gw: Running) -> None:
    client = sdk(gw)
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
    result, _ = breakdown(client, "caps", tools=[tool])
    assert result["deployment"] == "tools"
    dropped = [{"deployment": "plain", "model": "caps", "reason": "does not support tools"}]
    assert result["routing"]["dropped"] == dropped
    image = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What's in this image?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
            ],
        }
    ]
    result, _ = breakdown(client, "caps", messages=image)
    assert result["deployment"] == "all"
    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    result, _ = breakdown(client, "caps", response_format=schema)
    assert result["deployment"] == "all"
    long_prompt = [{"role": "user", "content": "word " * 200}]
    result, _ = breakdown(client, "caps", messages=long_prompt)
    assert result["deployment"] == "all"
    assert "context length 64 is too small" in result["routing"]["dropped"][0]["reason"]


def test_nothing_can_serve_is_a_400_naming_the_field(gw: Running) -> None:
    client = sdk(gw)
    tool = {"type": "function", "function": {"name": "f"}}
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="text-only", messages=HI, tools=[tool])
    assert err.value.body["param"] == "tools" and "does not support tools" in err.value.message
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="small", messages=[{"role": "user", "content": "word " * 200}])
    assert err.value.body["param"] == "messages" and err.value.body["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="small", messages=HI, max_tokens=100)
    assert "context length 64" in err.value.message
