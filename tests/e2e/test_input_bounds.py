"""Bodies that used to end in a 500, through a real Quasar: each is now a 400 naming the field, an
accepted request, or an upstream failure that says what failed (a connect timeout is not a slow answer)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx2 as httpx
import pytest
import yaml

from tests.fake_provider import FakeProvider
from tests.gateway_config import gateway_config, upstream
from tests.server import Running, free_port, quasar_server

MSG = [{"role": "user", "content": "hi"}]
LIMIT = 50  # the gateway's server.max_messages, max_tools and max_embedding_inputs
ANY_413 = "Request body is larger than the limit of 4194304 bytes."


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    with FakeProvider("a") as a:
        yield a


@pytest.fixture(scope="module")
def blackhole() -> Iterator[int]:
    """A loopback port whose kernel completes the TCP handshake (the backlog) but nobody ever accepts:
    a TLS handshake to it never gets an answer."""
    with socket.create_server(("127.0.0.1", 0), backlog=64) as listener:
        yield listener.getsockname()[1]


@pytest.fixture(scope="module")
def gw(fake: FakeProvider, blackhole: int) -> Iterator[Running]:
    models = {
        "up": [upstream(fake)],
        "silent": [upstream(f"https://127.0.0.1:{blackhole}/v1", provider="hole", connect_timeout=0.5)],
        "refused": [upstream(f"http://127.0.0.1:{free_port()}/v1", provider="gone")],
    }
    config = yaml.safe_load(
        gateway_config(models, retries=0, allowed_fails=1000, cooldown_seconds=0, allowed_hosts=["127.0.0.1"])
    )
    config["models"].append({"name": "emb", "mode": "embedding", "deployments": [upstream(fake)]})
    config["server"] = {"max_messages": LIMIT, "max_tools": LIMIT, "max_embedding_inputs": LIMIT}
    with quasar_server(yaml.safe_dump(config)) as running:
        yield running


@pytest.fixture(autouse=True)
def clean(fake: FakeProvider) -> None:
    fake.reset()


def post(gw: Running, body: dict | bytes, timeout: float = 30) -> httpx.Response:
    if isinstance(body, bytes):
        headers = {"content-type": "application/json"}
        return httpx.post(f"{gw.v1}/chat/completions", content=body, headers=headers, timeout=timeout)
    return httpx.post(f"{gw.v1}/chat/completions", json=body, timeout=timeout)


def assert_400(r: httpx.Response, param: str) -> dict:
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == "invalid_request_error" and err["param"] == param
    return err


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"seed": 2**64}, "seed"),
        ({"seed": -(2**63) - 1}, "seed"),
        ({"vendor_knob": 2**64}, "vendor_knob"),
        ({"vendor_knob": {"deep": [1, 10**40]}}, "vendor_knob.deep[1]"),
        ({"metadata": {"trace": 2**64}}, "metadata.trace"),
        (
            {
                "tools": [
                    {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "maximum": 2**64}}}
                ]
            },
            "tools[0].function.parameters.maximum",
        ),
    ],
)
def test_an_integer_beyond_64_bits_is_a_400_naming_it(
    gw: Running, fake: FakeProvider, fields: dict, param: str
) -> None:
    for stream in (False, True):
        assert_400(post(gw, {"model": "up", "messages": MSG, "stream": stream, **fields}), param)
    assert not fake.requests


@pytest.mark.parametrize(
    ("literal", "param"), [(b"1e400", "vendor_knob"), (b"NaN", "vendor_knob"), (b"-Infinity", "vendor_knob")]
)
def test_a_number_json_cannot_write_is_a_400(gw: Running, fake: FakeProvider, literal: bytes, param: str) -> None:
    body = b'{"model": "up", "messages": [{"role": "user", "content": "hi"}], "vendor_knob": ' + literal + b"}"
    assert_400(post(gw, body), param)
    assert not fake.requests


def test_integers_within_64_bits_are_forwarded_as_sent(gw: Running, fake: FakeProvider) -> None:
    r = post(gw, {"model": "up", "messages": MSG, "seed": 2**63 - 1, "vendor_knob": -(2**63)})
    assert r.status_code == 200, r.text
    sent = fake.requests[-1]["body"]
    assert sent["seed"] == 2**63 - 1 and sent["vendor_knob"] == -(2**63)


def test_null_stream_options_means_the_default(gw: Running, fake: FakeProvider) -> None:
    body = {"model": "up", "messages": MSG, "stream": True, "stream_options": None}
    with httpx.stream("POST", f"{gw.v1}/chat/completions", json=body, timeout=30) as resp:
        assert resp.status_code == 200, resp.read()
        events = [line[6:] for line in resp.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert all('"usage"' not in e or '"usage":null' in e for e in events[:-1])  # the client did not ask
    assert fake.requests[-1]["body"]["stream_options"] == {"include_usage": True}  # Quasar asks, for cost
    r = post(gw, {"model": "up", "messages": MSG, "stream_options": None})
    assert r.status_code == 200, r.text


def test_api_base_gets_the_base_url_guard(gw: Running, fake: FakeProvider) -> None:
    creds = {"a": {"api_key": "sk-customer-x", "api_base": "https://127.0.0.1/v1"}}
    err = assert_400(
        post(gw, {"model": "up", "messages": MSG, "customer_credentials": creds}), "customer_credentials.a.base_url"
    )
    assert "non-public" in err["message"]
    creds = {"a": {"api_base": "https://x.example/v1", "base_url": "https://y.example/v1"}}
    assert_400(
        post(gw, {"model": "up", "messages": MSG, "customer_credentials": creds}), "customer_credentials.a.api_base"
    )
    assert not fake.requests


@pytest.mark.parametrize("stream", [False, True])
def test_a_connect_timeout_says_connect(gw: Running, stream: bool) -> None:
    started = time.monotonic()
    r = post(gw, {"model": "silent", "messages": MSG, "stream": stream})
    elapsed = time.monotonic() - started
    assert r.status_code == 504, r.text
    err = r.json()["error"]
    assert err["code"] == "upstream_timeout"
    assert "could not connect" in err["message"] and "0.5s" in err["message"], err["message"]
    assert elapsed < 5


@pytest.mark.parametrize("stream", [False, True])
def test_a_refused_connection_says_refused(gw: Running, stream: bool) -> None:
    r = post(gw, {"model": "refused", "messages": MSG, "stream": stream})
    assert r.status_code == 502, r.text
    assert "connection refused" in r.json()["error"]["message"]


# -- every limit, on every endpoint that takes the field -----------------------------------------

TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
FLAT_TOOL = {"type": "function", "name": "f", "parameters": {"type": "object"}}
ANTHROPIC_TOOL = {"name": "f", "input_schema": {"type": "object"}}


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def _bodies() -> list[tuple[str, dict, str, str]]:
    """(path, body, the field the 400 names, a phrase its message holds)."""
    chat, msgs, big_stop = {"model": "up", "messages": MSG}, MSG * (LIMIT + 1), "s" * 1_000_000
    anthropic = {"model": "up", "max_tokens": 5, "messages": MSG}
    deep = _nested(201)
    cases = []
    for path in ("/v1/chat/completions", "/api/generate/"):
        cases += [
            (path, {**chat, "messages": msgs}, "messages", "server.max_messages"),
            (path, {**chat, "n": 9}, "n", "at most 8"),
            (path, {**chat, "max_tokens": 2**31}, "max_tokens", "2147483647"),
            (path, {**chat, "stop": big_stop}, "stop", "1024"),
            (path, {**chat, "stop": ["a", "b", "c", "d", "e"]}, "stop", "at most 4"),
            (path, {**chat, "logit_bias": {str(i): 1 for i in range(100_000)}}, "logit_bias", "at most 300"),
            (path, {**chat, "logit_bias": {str(2**31): 1}}, "logit_bias", "token ids"),
            (path, {**chat, "tools": [TOOL] * (LIMIT + 1)}, "tools", "server.max_tools"),
            (path, {**chat, "vendor": deep}, "vendor", "nested deeper than 200"),
        ]
    prompt = {"model": "up", "prompt": "hi"}
    cases += [
        ("/v1/completions", {**prompt, "n": 9}, "n", "at most 8"),
        ("/v1/completions", {**prompt, "prompt": ["a"] * 5, "n": 2}, "n", "at most 8"),  # n per prompt
        ("/v1/completions", {**prompt, "max_tokens": 2**31}, "max_tokens", "2147483647"),
        ("/v1/completions", {**prompt, "stop": big_stop}, "stop", "1024"),
        ("/v1/completions", {**prompt, "logit_bias": {str(i): 1 for i in range(100_000)}}, "logit_bias", "300"),
        ("/v1/completions", {**prompt, "vendor": deep}, "vendor", "nested deeper than 200"),
        ("/v1/responses", {"model": "up", "input": msgs}, "input", "server.max_messages"),
        ("/v1/responses", {"model": "up", "input": "hi", "max_output_tokens": 2**31}, "max_output_tokens", "2147"),
        ("/v1/responses", {"model": "up", "input": "hi", "tools": [FLAT_TOOL] * (LIMIT + 1)}, "tools", "max_tools"),
        ("/v1/responses", {"model": "up", "input": "hi", "vendor": deep}, "vendor", "nested deeper than 200"),
        ("/v1/messages", {**anthropic, "messages": msgs}, "messages", "server.max_messages"),
        ("/v1/messages", {**anthropic, "max_tokens": 2**31}, "max_tokens", "2147483647"),
        ("/v1/messages", {**anthropic, "stop_sequences": [big_stop]}, "stop_sequences[0]", "1024"),
        ("/v1/messages", {**anthropic, "stop_sequences": ["a"] * 5}, "stop_sequences", "at most 4"),
        ("/v1/messages", {**anthropic, "tools": [ANTHROPIC_TOOL] * (LIMIT + 1)}, "tools", "server.max_tools"),
        ("/v1/messages", {**anthropic, "tools": [{"name": "f", "input_schema": {}}]}, "tools[0].input_schema", "obj"),
        ("/v1/messages", {**anthropic, "vendor": deep}, "vendor", "nested deeper than 200"),
        ("/v1/messages/count_tokens", {"model": "up", "messages": msgs}, "messages", "server.max_messages"),
        ("/v1/embeddings", {"model": "emb", "input": ["x"] * (LIMIT + 1)}, "input", f"at most {LIMIT}"),
        ("/v1/embeddings", {"model": "emb", "input": "x " * 1_000_000}, "input", "context length"),
        ("/v1/embeddings", {"model": "emb", "input": "x", "vendor": deep}, "vendor", "nested deeper than 200"),
    ]
    return cases


@pytest.mark.parametrize(("path", "body", "param", "phrase"), _bodies(), ids=lambda v: v if isinstance(v, str) else "")
def test_each_limit_is_a_400_naming_the_field(
    gw: Running, fake: FakeProvider, path: str, body: dict, param: str, phrase: str
) -> None:
    r = httpx.post(f"{gw.url}{path}", json=body, timeout=60)
    assert r.status_code == 400, r.text
    if path.startswith("/v1/messages"):  # Anthropic's envelope, which has no param: the message names it
        error = r.json()["error"]
        assert r.json()["type"] == "error" and error["type"] == "invalid_request_error"
        assert f"'{param}'" in error["message"] or f"{param}:" in error["message"] or param == "messages", error
    else:
        error = assert_400(r, param)
    assert phrase in error["message"], error["message"]
    assert not fake.requests


@pytest.mark.parametrize(
    "path",
    ["/v1/chat/completions", "/api/generate/", "/v1/completions", "/v1/responses", "/v1/embeddings", "/v1/messages"],
)
@pytest.mark.parametrize("declared", [True, False])
def test_a_body_over_the_limit_is_a_413(gw: Running, fake: FakeProvider, path: str, declared: bool) -> None:
    body = b'{"model": "up", "messages": [{"role": "user", "content": "' + b"x" * (5 << 20) + b'"}]}'
    content = body if declared else iter([body[i : i + 65536] for i in range(0, len(body), 65536)])  # chunked
    r = httpx.post(f"{gw.url}{path}", content=content, headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 413, r.text
    if path == "/v1/messages":
        assert r.json() == {"type": "error", "error": {"type": "request_too_large", "message": ANY_413}}
    else:
        assert r.json()["error"]["code"] == "request_too_large"
    assert not fake.requests


def test_within_the_limits_is_served(gw: Running, fake: FakeProvider) -> None:
    body = {"model": "up", "messages": MSG * LIMIT, "tools": [TOOL] * LIMIT, "vendor": _nested(200)}
    r = httpx.post(f"{gw.v1}/chat/completions", json=body, timeout=60)
    assert r.status_code == 200, r.text
    assert len(fake.requests[-1]["body"]["messages"]) == LIMIT


# -- the built-in model (the default server) --------------------------------------------------


@pytest.mark.parametrize(
    "bias",
    [{"1" * 30: 1}, {str(2**31): -100}, {"²": 1}, {"1" * 5000: 1}, {str(i): 1 for i in range(301)}],
)
def test_logit_bias_token_ids_are_bounded(server: Running, bias: dict) -> None:
    r = httpx.post(
        f"{server.v1}/chat/completions", json={"model": "spark", "messages": MSG, "logit_bias": bias}, timeout=60
    )
    assert_400(r, "logit_bias")


def test_logit_bias_in_range_is_served(server: Running) -> None:
    body = {"model": "spark", "messages": MSG, "logit_bias": {"0": -100, "42": 2}, "max_tokens": 2}
    r = httpx.post(f"{server.v1}/chat/completions", json=body, timeout=60)
    assert r.status_code == 200, r.text


VOCAB = 49152  # SmolLM2's vocabulary: ids 0 to 49151


@pytest.mark.parametrize("stream", [False, True])
def test_logit_bias_beyond_the_local_vocabulary_is_a_400(server: Running, stream: bool) -> None:
    body = {"model": "spark", "messages": MSG, "logit_bias": {str(VOCAB): 1}, "max_tokens": 2, "stream": stream}
    err = assert_400(httpx.post(f"{server.v1}/chat/completions", json=body, timeout=60), "logit_bias")
    assert f"0 to {VOCAB - 1}" in err["message"], err
    body["logit_bias"] = {str(VOCAB - 1): 1}
    assert httpx.post(f"{server.v1}/chat/completions", json=body, timeout=60).status_code == 200


def test_prompt_and_input_token_ids_beyond_the_local_vocabulary_are_a_400(server: Running) -> None:
    body = {"model": "spark", "prompt": [1, VOCAB], "max_tokens": 1}
    r = httpx.post(f"{server.v1}/completions", json=body, timeout=60)
    assert f"0 to {VOCAB - 1}" in assert_400(r, "prompt")["message"]
    r = httpx.post(f"{server.v1}/completions", json={"model": "spark", "prompt": [[1], [2, VOCAB]]}, timeout=60)
    assert_400(r, "prompt")
    r = httpx.post(f"{server.v1}/embeddings", json={"model": "all-minilm-l6-v2", "input": [[1, 10**6]]}, timeout=60)
    assert "vocabulary" in assert_400(r, "input")["message"]
