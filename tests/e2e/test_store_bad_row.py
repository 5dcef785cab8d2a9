"""A request whose row the database refuses (an int past 64 bits in metadata) is logged, and so is every
request after it, across a restart: one bad row no longer stops the request log."""

from __future__ import annotations

import signal
import tempfile
import uuid
from pathlib import Path

import httpx2 as httpx

from tests.server import Running, quasar_server
from tests.store_support import chat_body, priced_config, wait_for

HUGE = 18446744073709551616  # 2**64: orjson refuses it, SQLite too


def post(running: Running, body: dict) -> httpx.Response:
    reply = httpx.post(
        f"{running.v1}/chat/completions", json=body, headers={"x-request-id": f"bad-row-{uuid.uuid4().hex}"}, timeout=60
    )
    assert reply.headers.get("x-request-id"), reply.text
    return reply


def logged(running: Running, request_id: str) -> dict | None:
    reply = httpx.get(f"{running.v1}/requests/{request_id}", timeout=10)
    return reply.json() if reply.status_code == 200 else None


def test_a_huge_int_in_metadata_neither_stops_the_log_nor_loses_a_row_at_restart() -> None:
    env = {"QUASAR_DATABASE_URL": f"sqlite:///{Path(tempfile.mkdtemp(prefix='quasar-bad-row-')) / 'quasar.db'}"}
    with quasar_server(priced_config(), env=env) as first:  # the built-in chat model alone: quick to start
        huge = post(first, chat_body(1, metadata={"n": HUGE, "team": "search"}))
        normal = post(first, chat_body(1))
        assert normal.status_code == 200, normal.text
        huge_id, normal_id = huge.headers["x-request-id"], normal.headers["x-request-id"]
        row = wait_for(lambda: logged(first, huge_id), timeout=10)
        assert row["http_status"] == huge.status_code
        if huge.status_code == 200:
            assert row["metadata"] == {"n": str(HUGE), "team": "search"}
        assert wait_for(lambda: logged(first, normal_id), timeout=10)["status"] == "ok"

        # Rows still waiting at SIGTERM, a bad one among them: written (or spooled) by the shutdown.
        at_shutdown = [post(first, chat_body(1, metadata={"n": -HUGE})), post(first, chat_body(1))]
        first.process.send_signal(signal.SIGTERM)
        first.process.wait(30)
        assert "Traceback" not in first.log(), first.log()

    with quasar_server(priced_config(), env=env) as second:
        for reply in at_shutdown:
            row = wait_for(lambda reply=reply: logged(second, reply.headers["x-request-id"]), timeout=10)
            assert row["http_status"] == reply.status_code
        assert logged(second, huge_id) and logged(second, normal_id)
        later = post(second, chat_body(1))
        assert later.status_code == 200
        assert wait_for(lambda: logged(second, later.headers["x-request-id"]), timeout=10)
