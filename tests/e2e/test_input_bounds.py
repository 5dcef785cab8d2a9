"""Bodies that used to end in a 500, through a real Quasar: each is now a 400 naming the field, an
accepted request, or an upstream failure that says what failed (a connect timeout is not a slow answer)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx2 as httpx
import pytest

from tests.fake_provider import FakeProvider
from tests.gateway_config import gateway_config, upstream
from tests.server import Running, free_port, quasar_server

MSG = [{"role": "user", "content": "hi"}]


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
    with quasar_server(
        gateway_config(models, retries=0, allowed_fails=1000, cooldown_seconds=0, allowed_hosts=["127.0.0.1"])
    ) as running:
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
