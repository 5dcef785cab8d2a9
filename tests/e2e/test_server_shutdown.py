"""SIGTERM: stop accepting, let requests in flight finish within the grace, answer the rest, exit 0.

A gateway-only Quasar with `server.shutdown_grace_seconds: 1` in front of three fake providers: one
quick (0.6 s), one that holds its answer (5 s), one whose stream stalls after its first chunk (3 s).
"""

from __future__ import annotations

import json
import signal
import socket
import time
import uuid

import pytest
import yaml

from tests.fake_provider import FakeProvider
from tests.gateway_config import gateway_config, upstream
from tests.server import Running, quasar_server, raw_chat
from tests.store_support import database_url, log_rows

GRACE = 1.0


def read_all(sock: socket.socket, timeout: float = 10) -> bytes:
    """Everything the server sends on `sock` until it closes the connection."""
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    return data


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and (de-chunked) body of one HTTP/1.1 response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        out = b""
        while body:
            size, _, body = body.partition(b"\r\n")
            n = int(size, 16)
            if n == 0:
                break
            out, body = out + body[:n], body[n + 2 :]
        body = out
    return int(lines[0].split()[1]), headers, body


def chat(model: str, stream: bool = False) -> dict:
    return {"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}


def port_of(running: Running) -> int:
    return int(running.url.rsplit(":", 1)[1])


def test_sigterm_finishes_what_it_can_answers_the_rest_and_exits_0() -> None:
    with (
        FakeProvider("quick", default="slow:0.6") as quick,
        FakeProvider("held", default="hold:5") as held,
        FakeProvider("stalled", default="stall:3") as stalled,
    ):
        models = {"quick": [upstream(quick)], "held": [upstream(held)], "stalled": [upstream(stalled)]}
        config = yaml.safe_load(gateway_config(models))
        config["server"] = {"shutdown_grace_seconds": GRACE}
        with quasar_server(yaml.safe_dump(config)) as running:
            ids = {name: f"shutdown-{name}-{uuid.uuid4().hex[:8]}" for name in ("quick", "held", "stalled")}
            socks = {
                "held": raw_chat(running, chat("held"), {"x-request-id": ids["held"]}),
                "stalled": raw_chat(running, chat("stalled", stream=True), {"x-request-id": ids["stalled"]}),
            }
            stalled_sock = socks["stalled"]
            stalled_sock.settimeout(10)
            first = stalled_sock.recv(65536)  # the stream's head and first event are out
            assert b" 200 " in first.split(b"\r\n", 1)[0] and b"Hello" in first
            socks["quick"] = raw_chat(running, chat("quick"), {"x-request-id": ids["quick"]})
            deadline = time.monotonic() + 10
            while (quick.active < 1 or held.active < 1) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert quick.active == 1 and held.active == 1

            running.process.terminate()
            signalled = time.monotonic()
            refused = False  # the listener closes at once: a new connection is refused during the grace
            while not refused and time.monotonic() - signalled < 0.8:
                try:
                    socket.create_connection(("127.0.0.1", port_of(running)), timeout=1).close()
                    time.sleep(0.02)
                except ConnectionRefusedError:
                    refused = True
            assert refused

            status, _, body = parse(read_all(socks["quick"]))
            assert status == 200, body  # finished within the grace
            assert json.loads(body)["choices"][0]["message"]["content"] == "Hello from quick"

            status, headers, body = parse(read_all(socks["held"]))
            answered = time.monotonic() - signalled
            assert status == 503 and headers["content-type"] == "application/json"
            assert headers["retry-after"] == "1" and headers["x-request-id"] == ids["held"]
            error = json.loads(body)["error"]
            assert set(error) == {"message", "type", "param", "code"}
            assert error["code"] == "server_shutting_down" and error["type"] == "server_error"
            assert GRACE - 0.1 < answered < GRACE + 2

            status, headers, body = parse(first + read_all(stalled_sock))
            assert status == 200 and headers["content-type"].startswith("text/event-stream")
            events = [e.removeprefix(b"data: ") for e in body.split(b"\n\n") if e]
            assert b"[DONE]" not in events
            assert json.loads(events[0])["choices"][0]["delta"]["content"] == "Hello"
            assert json.loads(events[-1])["error"]["code"] == "server_shutting_down"

            assert running.process.wait(10) == 0
            assert time.monotonic() - signalled < GRACE + 5
            log = running.log()
            assert "Traceback" not in log and "ASGI" not in log and "Internal Server Error" not in log

            # every accepted request has its row in the log, in the SQLite file the process left behind
            rows = {r["request_id"]: r for r in log_rows(database_url(running))}
            assert set(ids.values()) <= set(rows)
            assert rows[ids["quick"]]["status"] == "ok" and rows[ids["quick"]]["http_status"] == 200
            assert rows[ids["held"]]["status"] == "cancelled"
            assert rows[ids["stalled"]]["status"] == "cancelled" and rows[ids["stalled"]]["stream"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_with_nothing_in_flight_exits_0_at_once(sig: signal.Signals) -> None:
    with FakeProvider("idle") as fake, quasar_server(gateway_config({"m": [upstream(fake)]})) as running:
        keep_alive = socket.create_connection(("127.0.0.1", port_of(running)))  # an idle connection
        running.process.send_signal(sig)
        started = time.monotonic()
        assert running.process.wait(10) == 0
        assert time.monotonic() - started < 2
        keep_alive.settimeout(2)
        assert keep_alive.recv(1) == b""


def test_on_anthropic_messages_the_shutdown_answers_are_in_anthropic_envelope() -> None:
    with (
        FakeProvider("held", default="hold:5") as held,
        FakeProvider("stalled", default="stall:3") as stalled,
    ):
        config = yaml.safe_load(gateway_config({"held": [upstream(held)], "stalled": [upstream(stalled)]}))
        config["server"] = {"shutdown_grace_seconds": GRACE}
        with quasar_server(yaml.safe_dump(config)) as running:

            def message(model: str, stream: bool = False) -> socket.socket:
                body = {
                    "model": model,
                    "max_tokens": 20,
                    "stream": stream,
                    "messages": [{"role": "user", "content": "hi"}],
                }
                return raw_chat(running, body, path="/v1/messages")

            held_sock, stalled_sock = message("held"), message("stalled", stream=True)
            stalled_sock.settimeout(10)
            first = stalled_sock.recv(65536)
            while b"Hello" not in first:
                first += stalled_sock.recv(65536)
            deadline = time.monotonic() + 10
            while held.active < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            running.process.terminate()

            status, headers, body = parse(read_all(held_sock))
            assert status == 503 and headers["retry-after"] == "1"
            assert json.loads(body) == {
                "type": "error",
                "error": {
                    "type": "overloaded_error",
                    "message": "The server is shutting down and could not finish this request in time; retry it.",
                },
            }

            status, headers, body = parse(first + read_all(stalled_sock))
            assert status == 200 and headers["content-type"].startswith("text/event-stream")
            events = [e.split(b"\n") for e in body.split(b"\n\n") if e]
            assert events[0][0] == b"event: message_start"
            assert b"event: message_stop" not in [e[0] for e in events]
            assert events[-1][0] == b"event: error"
            error = json.loads(events[-1][1].removeprefix(b"data: "))
            assert error["type"] == "error" and error["error"]["type"] == "overloaded_error"
            assert running.process.wait(10) == 0
