"""The SSRF guard and local files, through a real Quasar: a client-supplied URL never makes Quasar
connect into private space, and no request makes it open a local file.

Customer base URLs are the only URLs Quasar itself connects to on a client's word: image URLs (chat's
image_url, Responses' input_image, Anthropic's url source) are passed to an upstream as they are, never
fetched (a local model without vision refuses them), and the HTTP client follows no redirect."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from quasar.api.chat import ChatRequest
from quasar.config import Deployment
from quasar.engines.http import ConnectError, Pool
from quasar.engines.openai import OpenAIEngine
from quasar.errors import QuasarError
from quasar.gateway.credentials import check_base_url
from tests.e2e.test_gateway_http import RawProvider
from tests.fake_provider import FakeProvider
from tests.gateway_config import gateway_server, upstream
from tests.server import Running

MSG = [{"role": "user", "content": "hi"}]
PRIVATE = [
    "localhost",  # a name that resolves into private space
    "127.0.0.1", "127.1", "0x7f.1", "0x7f000001", "2130706433", "017700000001",  # loopback, in odd notations
    "::ffff:127.0.0.1", "::1", "0.0.0.0", "::",  # IPv6-mapped, IPv6 loopback, unspecified
    "10.0.0.1", "172.16.0.1", "192.168.1.1", "100.100.100.200",  # private, shared (Alibaba's metadata)
    "169.254.169.254", "fd00:ec2::254", "fe80::1",  # link-local and the cloud metadata addresses
    "64:ff9b::7f00:1", "2002:7f00:1::1",  # NAT64 and 6to4 wrappings of 127.0.0.1
]  # fmt: skip


class Listener:
    """A loopback port that counts the connections made to it (the kernel queues them; nobody answers)."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.socket.setblocking(False)
        self.port = self.socket.getsockname()[1]

    def connections(self) -> int:
        count = 0
        while True:
            try:
                conn, _ = self.socket.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1


@pytest.fixture(scope="module")
def listener() -> Iterator[Listener]:
    target = Listener()
    yield target
    target.socket.close()


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    with FakeProvider("a") as a:
        yield a


@pytest.fixture(scope="module")
def gw(fake: FakeProvider) -> Iterator[Running]:
    with gateway_server({"up": [upstream(fake)]}, retries=0, allowed_hosts=PRIVATE) as running:
        yield running


def _url(host: str, port: int) -> str:
    return f"https://[{host}]:{port}/v1" if ":" in host else f"https://{host}:{port}/v1"


@pytest.mark.parametrize("host", PRIVATE)
def test_a_base_url_into_private_space_is_refused(
    gw: Running, fake: FakeProvider, listener: Listener, host: str
) -> None:
    for field in ("base_url", "api_base"):
        creds = {"a": {"api_key": "sk-customer", field: _url(host, listener.port)}}
        for stream in (False, True):
            body = {"model": "up", "messages": MSG, "customer_credentials": creds, "stream": stream}
            r = httpx.post(f"{gw.v1}/chat/completions", json=body, timeout=30)
            assert r.status_code == 400, r.text
            error = r.json()["error"]
            assert error["param"] == "customer_credentials.a.base_url"
            assert "non-public" in error["message"], error["message"]
    assert listener.connections() == 0
    assert not fake.requests


@pytest.mark.parametrize(
    "url",
    [
        "http://api.customer.example/v1",
        "file:///etc/passwd",
        "gopher://127.0.0.1:25/",
        "https:///v1",
        "https://x.example/v1",
    ],
)
def test_a_base_url_must_be_https_on_the_allow_list(gw: Running, fake: FakeProvider, url: str) -> None:
    creds = {"a": {"api_key": "sk-customer", "base_url": url}}
    r = httpx.post(f"{gw.v1}/chat/completions", json={"model": "up", "messages": MSG, "customer_credentials": creds})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "customer_credentials.a.base_url"
    assert not fake.requests


def test_a_redirect_into_private_space_is_not_followed(listener: Listener) -> None:
    """The HTTP client follows no redirect: an upstream's 307 to a private address is its failure."""
    location = f"http://127.0.0.1:{listener.port}/v1/chat/completions".encode()
    answer = b"HTTP/1.1 307 Temporary Redirect\r\nLocation: %s\r\nContent-Length: 0\r\n\r\n" % location
    with (
        RawProvider(answer) as redirecting,
        gateway_server({"m": [upstream(redirecting.url, provider="r")]}, retries=0) as gw,
    ):
        for stream in (False, True):
            body = {"model": "m", "messages": MSG, "stream": stream}
            r = httpx.post(f"{gw.v1}/chat/completions", json=body, timeout=30)
            assert r.status_code == 502, r.text
            assert "returned 307: a redirect, which Quasar does not follow" in r.json()["error"]["message"]
    assert redirecting.requests == 2
    assert listener.connections() == 0


def test_the_checked_address_is_the_one_connected_to(monkeypatch: pytest.MonkeyPatch, listener: Listener) -> None:
    """DNS rebinding: the name resolves to a public address when checked, then to loopback. The request
    connects to the address checked; the name is never looked up again."""
    real = socket.getaddrinfo
    lookups: list[str] = []

    def rebinding(host, port, *args, **kwargs):
        if host != "rebind.test":
            return real(host, port, *args, **kwargs)
        lookups.append(host)
        address = "93.184.216.34" if len(lookups) == 1 else "127.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    url = f"https://rebind.test:{listener.port}/v1"

    async def attempt() -> None:
        address = await check_base_url(url, ["rebind.test"], "customer_credentials.a.base_url")
        assert address == "93.184.216.34"
        deployment = Deployment(engine="openai", base_url="https://configured.example/v1", connect_timeout=0.5)
        engine = OpenAIEngine(deployment).with_credentials("sk-customer", url, address)
        with pytest.raises(QuasarError):
            await engine.chat(ChatRequest.model_validate({"model": "m", "messages": MSG}))
        await engine.close()

    asyncio.run(attempt())
    assert lookups == ["rebind.test"]  # once, by the guard
    assert listener.connections() == 0


@pytest.fixture(scope="module")
def named_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=pinned.test"]
        + ["-addext", "subjectAltName=DNS:pinned.test", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_a_pinned_connection_keeps_the_hostname_for_host_sni_and_certificate(
    named_certificate: tuple[Path, Path],
) -> None:
    cert, key = named_certificate
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    names: list[str | None] = []
    server.sni_callback = lambda _sock, name, _ctx: names.append(name)
    client = ssl.create_default_context(cafile=str(cert))

    async def post(host: str) -> int:
        pool = Pool(f"https://{host}:{fake.port}/v1", address="127.0.0.1", tls=client, connect_timeout=5)
        try:
            resp = await pool.post(pool.prefix("/v1/chat/completions", {"Content-Type": "application/json"}), b"{}")
            await resp.read()
            return resp.status
        finally:
            await pool.close()

    with FakeProvider("pinned", tls=server) as fake:
        assert asyncio.run(post("pinned.test")) == 200  # pinned.test resolves nowhere: only the address is used
        assert fake.requests[-1]["headers"]["Host"] == f"pinned.test:{fake.port}"
        assert names == ["pinned.test"]
        with pytest.raises(ConnectError, match="CERTIFICATE_VERIFY_FAILED"):  # checked for the name, not the address
            asyncio.run(post("other.test"))
        assert len(fake.requests) == 1


# -- image URLs and local files ----------------------------------------------------------------


def test_image_urls_are_passed_on_never_fetched(gw: Running, fake: FakeProvider, listener: Listener) -> None:
    image = f"http://127.0.0.1:{listener.port}/cat.png"
    fake.reset()
    chat = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": image}}]}]
    assert httpx.post(f"{gw.v1}/chat/completions", json={"model": "up", "messages": chat}).status_code == 200
    responses = [{"role": "user", "content": [{"type": "input_image", "image_url": image}]}]
    assert httpx.post(f"{gw.v1}/responses", json={"model": "up", "input": responses}).status_code == 200
    anthropic = [{"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": image}}]}]
    body = {"model": "up", "max_tokens": 5, "messages": anthropic}
    assert httpx.post(f"{gw.v1}/messages", json=body).status_code == 200
    assert len(fake.requests) == 3
    for sent in fake.requests:
        assert sent["body"]["messages"][-1]["content"][0]["image_url"]["url"] == image
    assert listener.connections() == 0


class Fifo:
    """A named pipe whose writer waits for a reader: `opened` is set the moment anything opens it to read."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.path = path
        self.opened = threading.Event()
        self._thread = threading.Thread(target=self._write, daemon=True)
        self._thread.start()

    def _write(self) -> None:
        try:
            with open(self.path, "w") as pipe:  # blocks until a reader opens it
                self.opened.set()
                pipe.write("local-file-canary\n")
        except OSError:
            pass

    def close(self) -> bool:
        """Whether it was opened; unblocks the writer."""
        was = self.opened.is_set()
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        self._thread.join(5)
        os.close(fd)
        return was


def _user(*parts: dict) -> list[dict]:
    return [{"role": "user", "content": list(parts)}]


def _file_bodies(path: str, model: str) -> list[tuple[str, dict]]:
    url = f"file://{path}"
    ref = {"type": "object", "properties": {"x": {"$ref": url}}}
    chat = {"model": model, "messages": MSG, "max_tokens": 2}
    schema_format = {"type": "json_schema", "json_schema": {"name": "x", "schema": ref}}
    paths = {"file": path, "path": path, "grammar_file": path, "prompt_file": path}
    anthropic_image = {"type": "image", "source": {"type": "url", "url": url}}
    return [
        ("/v1/chat/completions", {**chat, "messages": _user({"type": "image_url", "image_url": {"url": url}})}),
        ("/v1/chat/completions", {**chat, "messages": _user({"type": "image_url", "image_url": {"url": path}})}),
        ("/v1/chat/completions", {**chat, "response_format": schema_format}),
        (
            "/v1/chat/completions",
            {**chat, "tools": [{"type": "function", "function": {"name": "f", "parameters": ref}}]},
        ),
        ("/v1/chat/completions", {**chat, "model": path}),
        ("/v1/chat/completions", {**chat, **paths}),
        ("/v1/chat/completions", {**chat, "customer_credentials": {"a": {"base_url": url}}}),
        ("/v1/completions", {"model": model, "prompt": path, "max_tokens": 2, **paths}),
        ("/v1/embeddings", {"model": "all-minilm-l6-v2", "input": url}),
        (
            "/v1/responses",
            {"model": model, "max_output_tokens": 2, "input": _user({"type": "input_image", "image_url": url})},
        ),
        ("/v1/messages", {"model": model, "max_tokens": 2, "messages": _user(anthropic_image)}),
    ]


@pytest.mark.parametrize("which", ["local", "upstream"])
def test_no_request_makes_quasar_open_a_local_file(which: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    running: Running = request.getfixturevalue("server" if which == "local" else "gw")
    model = "spark" if which == "local" else "up"
    fifo = Fifo(tmp_path / "secret")
    try:
        for path, body in _file_bodies(str(fifo.path), model):
            r = httpx.post(f"{running.url}{path}", json=body, timeout=60)
            assert r.status_code < 500, (path, r.text)
            assert "local-file-canary" not in r.text
    finally:
        assert not fifo.close(), "a request made Quasar open a local file"
