"""Slow clients: a request's head and body must arrive in time, else a 408 and the connection closes.

A gateway-only Quasar with `header_timeout_seconds: 1` and `body_timeout_seconds: 1`; clients on
loopback send one byte every 0.3 s. Idle keep-alive connections stay governed by uvicorn's own
keep-alive timeout (5 s), not by the header timeout.
"""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import time
import uuid
from collections.abc import Iterator

import httpx2 as httpx
import pytest
import yaml

from tests.fake_provider import FakeProvider
from tests.gateway_config import gateway_config, upstream
from tests.server import Running, quasar_server
from tests.store_support import database_url, log_rows, wait_for

TRICKLE_S = 0.3
TRICKLERS = 20
BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()


@pytest.fixture(scope="module")
def strict() -> Iterator[Running]:
    with FakeProvider("prompt") as fake:
        config = yaml.safe_load(gateway_config({"m": [upstream(fake)]}))
        config["server"] = {"header_timeout_seconds": 1, "body_timeout_seconds": 1}
        with quasar_server(yaml.safe_dump(config)) as running:
            yield running


def connect(running: Running) -> socket.socket:
    return socket.create_connection(("127.0.0.1", int(running.url.rsplit(":", 1)[1])), timeout=10)


def head(request_id: str = "", length: int = len(BODY)) -> bytes:
    extra = f"x-request-id: {request_id}\r\n" if request_id else ""
    return (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"{extra}Content-Length: {length}\r\n\r\n"
    ).encode()


def trickle(socks: list[socket.socket], data: bytes, limit: float = 6) -> tuple[list[bytes], list[float]]:
    """Send `data` one byte per TRICKLE_S on every socket until the server closes it; what each got back
    and after how long (or after `limit` seconds, when the server kept it open)."""
    started = time.monotonic()
    received = [b""] * len(socks)
    closed_after = [limit] * len(socks)
    selector = selectors.DefaultSelector()
    for i, sock in enumerate(socks):
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, i)
    sent = 0
    next_send = started
    while selector.get_map() and time.monotonic() - started < limit:
        now = time.monotonic()
        if now >= next_send and sent < len(data):
            for key in list(selector.get_map().values()):
                with contextlib.suppress(OSError):  # closed under us: its read says so
                    key.fileobj.send(data[sent : sent + 1])
            sent += 1
            next_send += TRICKLE_S
        for key, _ in selector.select(timeout=max(0.0, min(next_send - time.monotonic(), 0.05))):
            i = key.data
            try:
                chunk = key.fileobj.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if chunk:
                received[i] += chunk
            else:
                closed_after[i] = time.monotonic() - started
                selector.unregister(key.fileobj)
    for key in list(selector.get_map().values()):
        selector.unregister(key.fileobj)
    for sock in socks:
        sock.close()
    return received, closed_after


def assert_408(raw: bytes, about: str) -> None:
    status_line, _, rest = raw.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 408 Request Timeout", raw
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in headers and b"connection: close" in headers
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "request_timeout" and about in error["message"]


def test_heads_sent_a_byte_at_a_time_are_answered_408_and_closed(strict: Running) -> None:
    socks = [connect(strict) for _ in range(TRICKLERS)]
    received, closed_after = trickle(socks, head())
    assert max(closed_after) < 3, closed_after
    for raw in received:
        assert_408(raw, "head")


def test_a_connection_that_sends_nothing_is_closed(strict: Running) -> None:
    received, closed_after = trickle([connect(strict)], b"")
    assert closed_after[0] < 3 and received == [b""]


def test_a_body_sent_a_byte_at_a_time_gets_408_and_its_log_row(strict: Running) -> None:
    request_id = f"slow-body-{uuid.uuid4().hex[:8]}"
    sock = connect(strict)
    sock.sendall(head(request_id))
    received, closed_after = trickle([sock], BODY)
    assert closed_after[0] < 3
    assert_408(received[0], "body")
    assert f"x-request-id: {request_id}".encode() in received[0]

    def row() -> dict | None:
        return next((r for r in log_rows(database_url(strict)) if r["request_id"] == request_id), None)

    logged = wait_for(row, timeout=5)
    assert logged["status"] == "error" and logged["http_status"] == 408
    assert "Traceback" not in strict.log()


def test_prompt_requests_and_idle_keep_alive_connections_are_untouched(strict: Running) -> None:
    sock = connect(strict)
    for _ in range(2):
        sock.sendall(head() + BODY)
        data = b""
        while b"Hello from prompt" not in data:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
        assert data.startswith(b"HTTP/1.1 200 OK")
        time.sleep(1.5)  # idle past the header timeout, within uvicorn's keep-alive timeout
    sock.close()
    r = httpx.post(f"{strict.v1}/chat/completions", content=BODY, headers={"content-type": "application/json"})
    assert r.status_code == 200
