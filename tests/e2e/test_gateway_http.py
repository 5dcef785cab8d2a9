"""Quasar's HTTP client to upstreams (engines/http.py), seen from outside: what reaches the provider.

Keep-alive reuse, the connection limit, a provider that closes idle connections, TLS with certificate
checks, and the response shapes aiohttp-based providers never send: a gzip body and a body that ends
when the server closes the connection (no Content-Length, not chunked).
"""

from __future__ import annotations

import gzip
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx
import openai
import orjson
import pytest

from tests.fake_provider import FakeProvider
from tests.gateway_config import gateway_config, upstream
from tests.server import Running, free_port, quasar_server

ASK = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def sdk(running: Running) -> openai.OpenAI:
    return openai.OpenAI(base_url=running.v1, api_key="unused", max_retries=0, timeout=20)


def test_sequential_requests_share_one_connection() -> None:
    with FakeProvider("keep") as fake, quasar_server(gateway_config({"m": [upstream(fake)]})) as gw:
        client = sdk(gw)
        for _ in range(5):
            assert client.chat.completions.create(**ASK).choices[0].message.content
        for _ in range(3):
            text = "".join(
                c.choices[0].delta.content or ""
                for c in client.chat.completions.create(**ASK, stream=True)
                if c.choices
            )
            assert text
        assert len(fake.requests) == 8
        assert len(fake.connections) == 1, fake.connections


def test_max_connections_bounds_the_connections_to_a_provider() -> None:
    with FakeProvider("narrow", default="slow:0.3") as fake:
        config = gateway_config({"m": [upstream(fake, max_connections=2)]})
        with quasar_server(config) as gw, ThreadPoolExecutor(6) as pool:
            client = sdk(gw)
            started = time.monotonic()
            replies = list(pool.map(lambda _: client.chat.completions.create(**ASK), range(6)))
            elapsed = time.monotonic() - started
    assert all(r.choices[0].message.content for r in replies)
    assert fake.most_active == 2
    assert len(fake.connections) == 2
    assert elapsed >= 0.85  # three waves of two


def test_a_provider_closing_idle_connections_costs_no_failed_request() -> None:
    with FakeProvider("closer", keepalive_timeout=0.2) as fake:
        config = gateway_config({"m": [upstream(fake)]}, retries=0)
        with quasar_server(config) as gw:
            for _ in range(3):
                r = httpx.post(f"{gw.v1}/chat/completions", json=ASK, timeout=10)
                assert r.status_code == 200, r.text
                assert r.headers["x-quasar-attempts"] == "1"
                time.sleep(0.5)  # the provider closes the idle connection meanwhile
    assert len(fake.connections) == 3


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_https_provider_with_a_trusted_certificate(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    with FakeProvider("secure", tls=tls) as fake:
        assert fake.url.startswith("https://")
        config = gateway_config({"m": [upstream(fake)]}, retries=0)
        with quasar_server(config, env={"SSL_CERT_FILE": str(cert)}) as gw:
            client = sdk(gw)
            assert client.chat.completions.create(**ASK).choices[0].message.content
            chunks = list(client.chat.completions.create(**ASK, stream=True))
            assert chunks[-1].choices[0].finish_reason == "stop"
        assert fake.requests[0]["headers"]["Authorization"] == "Bearer sk-test-secure"
        assert len(fake.connections) == 1

        # The same provider, its certificate not trusted: refused, and said so.
        with quasar_server(config) as gw:
            r = httpx.post(f"{gw.v1}/chat/completions", json=ASK, timeout=10)
        assert r.status_code == 502
        assert "connection failed" in r.json()["error"]["message"]
        assert "CERTIFICATE_VERIFY_FAILED" in r.json()["error"]["message"]
        assert len(fake.requests) == 2


class RawProvider:
    """A provider written on a bare socket: it answers every request with `answer` and closes."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.port = free_port()
        self.requests = 0
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> RawProvider:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                while len(body) < length:
                    body += conn.recv(65536)
                self.requests += 1
                for i in range(0, len(self.answer), 7):  # in small pieces, as a slow network would
                    conn.sendall(self.answer[i : i + 7])


COMPLETION = orjson.dumps(
    {
        "id": "chatcmpl-raw",
        "object": "chat.completion",
        "created": 1,
        "model": "raw",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "from a raw socket"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    }
)


@pytest.fixture(scope="module")
def raw_providers() -> Iterator[dict[str, RawProvider]]:
    packed = gzip.compress(COMPLETION)
    gzipped = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
    gzipped += b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(packed), packed)
    until_close = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + COMPLETION
    base = {"id": "chatcmpl-raw", "object": "chat.completion.chunk", "created": 1, "model": "raw"}
    events = [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "streamed "}}]},
        {**base, "choices": [{"index": 0, "delta": {"content": "until close"}, "finish_reason": "stop"}]},
    ]
    sse = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    stream = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n" + sse
    bad = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"
    with RawProvider(gzipped) as a, RawProvider(until_close) as b, RawProvider(stream) as c, RawProvider(bad) as d:
        yield {"gzip": a, "close": b, "stream": c, "bad": d}


@pytest.fixture(scope="module")
def raw_gw(raw_providers: dict[str, RawProvider]) -> Iterator[Running]:
    models = {name: [upstream(p.url, provider="raw")] for name, p in raw_providers.items()}
    with quasar_server(gateway_config(models, retries=0)) as running:
        yield running


@pytest.mark.parametrize("model", ["gzip", "close"])
def test_gzip_and_close_delimited_bodies(raw_gw: Running, model: str) -> None:
    reply = sdk(raw_gw).chat.completions.create(**{**ASK, "model": model})
    assert reply.choices[0].message.content == "from a raw socket"
    assert reply.usage.total_tokens == 7


def test_a_stream_that_ends_when_the_connection_closes(raw_gw: Running) -> None:
    chunks = list(sdk(raw_gw).chat.completions.create(**{**ASK, "model": "stream"}, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "streamed until close"


def test_a_response_that_is_not_valid_http_is_an_upstream_error(raw_gw: Running, raw_providers: dict) -> None:
    r = httpx.post(f"{raw_gw.v1}/chat/completions", json={**ASK, "model": "bad"}, timeout=10)
    assert r.status_code == 502
    assert "malformed HTTP response" in r.json()["error"]["message"]
    assert raw_providers["bad"].requests >= 1
