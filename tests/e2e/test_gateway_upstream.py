"""The upstream engine through a real Quasar: pass-through, retries, timeouts, broken streams."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx2 as httpx
import openai
import orjson
import pytest

from quasar.errors import ConfigError
from quasar.gateway.providers import resolve_base_url
from tests.fake_provider import FakeProvider
from tests.gateway_config import gateway_config, upstream
from tests.server import Running, free_port, quasar_server, raw_chat

FAST = {"first_byte_timeout": 1.0, "chunk_timeout": 1.0, "timeout": 1.0}  # the failures below take 5 s


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeProvider, FakeProvider]]:
    with FakeProvider("a") as a, FakeProvider("b") as b:
        yield a, b


@pytest.fixture(scope="module")
def gw(fakes: tuple[FakeProvider, FakeProvider]) -> Iterator[Running]:
    a, b = fakes
    models = {
        "solo": [upstream(a, model="up-solo", price={"input": 1.0, "output": 2.0, "cached_input": 0.5})],
        "pair": [upstream(a, **FAST), upstream(b)],
        "patient": [upstream(a)],
        "dead": [upstream(f"http://127.0.0.1:{free_port()}/v1", provider="gone"), upstream(b)],
    }
    config = gateway_config(models, retries=2, allowed_fails=1000, cooldown_seconds=0)
    with quasar_server(config) as running:
        yield running


@pytest.fixture(autouse=True)
def clean(fakes: tuple[FakeProvider, FakeProvider]) -> None:
    for fake in fakes:
        fake.reset()


@pytest.fixture(scope="module")
def sdk(gw: Running) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.v1, api_key="unused", max_retries=0, timeout=20)


HI = [{"role": "user", "content": "hi"}]


def sse_events(gw: Running, body: dict) -> tuple[int, list[bytes]]:
    """Raw SSE `data:` payloads of a streamed chat request."""
    with httpx.stream("POST", f"{gw.v1}/chat/completions", json=body, timeout=20) as resp:
        lines = [line for line in resp.iter_lines() if line.startswith("data: ")]
        return resp.status_code, [line[6:].encode() for line in lines]


def test_presets_fill_in_base_urls() -> None:
    assert resolve_base_url("avangenio", None) == "https://apigateway.avangenio.net"
    assert resolve_base_url("alphaedge", None) == "https://api.alphaedge-ai.com/v1"
    assert resolve_base_url("respan", None) == "https://api.respan.ai/api"
    assert resolve_base_url("openai", None) == "https://api.openai.com/v1"
    assert resolve_base_url("vllm", "http://gpu:8000/v1/") == "http://gpu:8000/v1"
    with pytest.raises(ConfigError, match="needs a base_url"):
        resolve_base_url("vllm", None)
    with pytest.raises(ConfigError, match="unknown provider"):
        resolve_base_url("nobody", None)


def test_body_passes_through_with_whole_usage(gw: Running, sdk: openai.OpenAI, fakes) -> None:
    a, _ = fakes
    raw = sdk.chat.completions.with_raw_response.create(
        model="solo",
        messages=HI,
        temperature=0.5,
        extra_body={"top_k": 3, "metadata": {"k": "v"}},
        extra_headers={"x-request-id": "client-chosen-id"},
    )
    reply = raw.parse()
    assert reply.model == "solo"
    assert reply.choices[0].message.content == "Hello from a"
    assert reply.usage.prompt_tokens_details.cached_tokens == 400
    assert reply.usage.completion_tokens_details.reasoning_tokens == 7
    sent = a.requests[-1]
    assert sent["body"]["model"] == "up-solo"
    assert sent["body"]["temperature"] == 0.5 and sent["body"]["top_k"] == 3
    assert "metadata" not in sent["body"] and "n" not in sent["body"]
    assert sent["headers"]["Authorization"] == "Bearer sk-test-a"
    assert raw.headers["x-quasar-deployment"] == "solo#0"
    assert raw.headers["x-quasar-attempts"] == "1"
    assert raw.headers["x-quasar-fallbacks"] == "0"
    assert float(raw.headers["x-quasar-overhead-ms"]) >= 0
    # (600 uncached x $1 + 400 cached x $0.5 + 500 output x $2) per million
    assert float(raw.headers["x-quasar-cost"]) == pytest.approx(0.0018)
    assert "x-quasar-cost-estimated" not in raw.headers
    assert raw.headers["x-request-id"] == "client-chosen-id"


def test_cost_is_estimated_without_usage(gw: Running, sdk: openai.OpenAI, fakes) -> None:
    fakes[0].script("no-usage")
    raw = sdk.chat.completions.with_raw_response.create(model="solo", messages=HI)
    assert raw.headers["x-quasar-cost-estimated"] == "true"
    # 1 prompt token ("hi") x $1 + 3 completion tokens ("Hello from a", 12 chars) x $2, per million
    assert float(raw.headers["x-quasar-cost"]) == pytest.approx(7e-6)


def test_stream_passes_through_chunk_by_chunk(gw: Running, sdk: openai.OpenAI, fakes) -> None:
    chunks = list(sdk.chat.completions.create(model="solo", messages=HI, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from a"
    assert all(c.usage is None and c.choices for c in chunks)
    assert fakes[0].requests[-1]["body"]["stream_options"] == {"include_usage": True}
    chunks = list(
        sdk.chat.completions.create(model="solo", messages=HI, stream=True, stream_options={"include_usage": True})
    )
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens_details.cached_tokens == 400


@pytest.mark.parametrize(
    ("upstream_status", "client_status"), [(400, 400), (404, 404), (422, 422), (401, 502), (403, 502)]
)
def test_other_4xx_are_not_retried(gw: Running, fakes, upstream_status: int, client_status: int) -> None:
    a, b = fakes
    a.script(str(upstream_status))
    resp = httpx.post(f"{gw.v1}/chat/completions", json={"model": "pair", "messages": HI}, timeout=20)
    assert resp.status_code == client_status
    assert f"a failed with {upstream_status}" in resp.json()["error"]["message"]
    assert len(a.requests) == 1 and b.requests == []  # no retry, no fail-over
    assert resp.headers["x-quasar-attempts"] == "1"


@pytest.mark.parametrize("failure", ["408", "409", "429", "500", "503", "drop"])
def test_retryable_failures_are_retried(gw: Running, sdk: openai.OpenAI, fakes, failure: str) -> None:
    a, _ = fakes
    a.script(failure)
    raw = sdk.chat.completions.with_raw_response.create(model="solo", messages=HI)
    assert raw.parse().choices[0].message.content == "Hello from a"
    assert raw.headers["x-quasar-attempts"] == "2"
    assert len(a.requests) == 2


def test_retries_run_out_with_the_last_upstream_error(gw: Running, sdk: openai.OpenAI, fakes) -> None:
    a, _ = fakes
    a.reset(default="500")
    with pytest.raises(openai.APIStatusError) as err:
        sdk.chat.completions.create(model="solo", messages=HI)
    assert err.value.status_code == 502
    assert err.value.body["code"] == "upstream_error" and "a failed with 500" in err.value.message
    assert len(a.requests) == 3  # the first try and router.retries: 2
    assert err.value.response.headers["x-quasar-attempts"] == "3"
    assert err.value.response.headers["x-quasar-deployment"] == ""


def test_retry_after_is_honoured(gw: Running, sdk: openai.OpenAI, fakes) -> None:
    a, _ = fakes
    a.script("429:1")
    sdk.chat.completions.create(model="solo", messages=HI)
    assert len(a.requests) == 2
    assert a.requests[1]["at"] - a.requests[0]["at"] >= 0.95


def test_retry_after_longer_than_we_wait_ends_retries(gw: Running, sdk: openai.OpenAI, fakes) -> None:
    a, _ = fakes
    a.script("429:120")
    started = time.monotonic()
    with pytest.raises(openai.RateLimitError) as err:
        sdk.chat.completions.create(model="solo", messages=HI)
    assert err.value.status_code == 429 and "429" in err.value.message  # every attempt was rate limited
    assert err.value.response.headers["retry-after"] == "120"
    assert time.monotonic() - started < 5 and len(a.requests) == 1


def test_connection_refused_falls_over(gw: Running, sdk: openai.OpenAI, fakes) -> None:
    raw = sdk.chat.completions.with_raw_response.create(model="dead", messages=HI)
    assert raw.parse().choices[0].message.content == "Hello from b"
    assert raw.headers["x-quasar-deployment"] == "dead#1"


def test_slow_first_byte_falls_over(gw: Running, sdk: openai.OpenAI, fakes) -> None:
    a, b = fakes
    a.script("slow:5")
    raw = sdk.chat.completions.with_raw_response.create(model="pair", messages=HI)
    assert raw.parse().choices[0].message.content == "Hello from b"
    assert raw.headers["x-quasar-attempts"] == "2"
    a.script("stall-first:5")
    chunks = list(sdk.chat.completions.create(model="pair", messages=HI, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello from b"


def test_malformed_sse_is_an_upstream_error(gw: Running, sdk: openai.OpenAI, fakes) -> None:
    a, _ = fakes
    a.script("malformed")
    chunks = list(sdk.chat.completions.create(model="pair", messages=HI, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello from b"
    a.reset(default="malformed")
    with pytest.raises(openai.APIStatusError) as err:
        sdk.chat.completions.create(model="solo", messages=HI, stream=True)
    assert err.value.status_code == 502 and "malformed" in err.value.message


@pytest.mark.parametrize(("failure", "words"), [("reset", "broke"), ("stall:5", "stalled")])
def test_failure_after_first_byte_ends_with_an_error_event(gw: Running, fakes, failure: str, words: str) -> None:
    a, _ = fakes
    a.script(failure)
    started = time.monotonic()
    status, events = sse_events(gw, {"model": "pair", "messages": HI, "stream": True})
    assert status == 200
    assert orjson.loads(events[0])["choices"][0]["delta"]["content"] == "Hello"
    error = orjson.loads(events[-1])["error"]
    assert words in error["message"] and error["type"] == "upstream_error"
    assert b"[DONE]" not in events
    assert fakes[1].requests == []  # too late to fail over
    assert time.monotonic() - started < 4  # the stall is cut at chunk_timeout, not waited out


def test_client_disconnect_closes_the_upstream_request(gw: Running, fakes) -> None:
    a, _ = fakes
    a.script("stall:1")
    with httpx.stream(
        "POST", f"{gw.v1}/chat/completions", json={"model": "patient", "messages": HI, "stream": True}
    ) as resp:
        assert next(line for line in resp.iter_lines() if line.startswith("data: "))
    deadline = time.monotonic() + 5
    while a.disconnects == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert a.disconnects == 1


def test_client_leaving_a_non_streamed_request_closes_the_upstream_request(gw: Running, fakes) -> None:
    a, _ = fakes
    a.script("hold:10")
    with raw_chat(gw, {"model": "patient", "messages": HI}, timeout=10):
        deadline = time.monotonic() + 5
        while not a.requests and time.monotonic() < deadline:
            time.sleep(0.02)
        assert a.requests, "the request never reached the upstream"
    deadline = time.monotonic() + 5
    while a.disconnects == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert a.disconnects == 1
    assert "Traceback" not in gw.log()


def test_events_split_across_reads_are_reassembled(gw: Running, sdk: openai.OpenAI, fakes) -> None:
    fakes[0].script("split")
    chunks = list(
        sdk.chat.completions.create(model="solo", messages=HI, stream=True, stream_options={"include_usage": True})
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from a"
    assert chunks[-1].usage.prompt_tokens == 1000
    assert len(fakes[0].requests) == 1


def test_each_event_reaches_the_client_when_it_arrives(gw: Running, fakes) -> None:
    """Quasar joins the writes of one loop turn into one send; an event is never held past its turn."""
    a, _ = fakes
    a.script("stall:1.5")  # one content chunk, 1.5 s of nothing, then the rest
    started = time.monotonic()
    with httpx.stream(
        "POST", f"{gw.v1}/chat/completions", json={"model": "patient", "messages": HI, "stream": True}, timeout=20
    ) as resp:
        arrivals = [(time.monotonic() - started, line) for line in resp.iter_lines() if line.startswith("data: {")]
    first_at, first = arrivals[0]
    assert orjson.loads(first[6:])["choices"][0]["delta"]["content"] == "Hello"
    assert first_at < 1.0  # not held until the stall ends
    assert arrivals[-1][0] >= 1.5
