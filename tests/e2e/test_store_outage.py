"""The database goes away mid-run and comes back: rows wait in memory, then in the spool, and none is lost."""

from __future__ import annotations

import signal
import tempfile
import uuid
from pathlib import Path

import httpx2 as httpx

from tests.server import Running, quasar_server
from tests.store_support import PG, chat_body, cli, log_rows, pg_schema, priced_config, wait_for
from tests.tcp_proxy import tcp_proxy

# Two rows in memory at most: the third waiting row sends the buffer to the spool file.
STORE = "store:\n  buffer_rows: 2\n  flush_seconds: 0.1\n  spool_dir: {spool}\n"


def send(running: Running, count: int) -> set[str]:
    ids = set()
    for _ in range(count):
        request_id = f"outage-{uuid.uuid4().hex}"
        reply = httpx.post(
            f"{running.v1}/chat/completions", json=chat_body(1), headers={"x-request-id": request_id}, timeout=60
        )
        assert reply.status_code == 200, reply.text
        ids.add(request_id)
    return ids


def logged(url: str, ids: set[str]) -> set[str]:
    return {r["request_id"] for r in log_rows(url)} & ids


def test_database_down_then_back_loses_no_row() -> None:
    spool = Path(tempfile.mkdtemp(prefix="quasar-spool-"))
    config = priced_config(extra=STORE.format(spool=spool))
    with pg_schema() as direct, tcp_proxy(("127.0.0.1", 5432)) as proxy:
        via_proxy = direct.replace(PG, f"postgresql://postgres@127.0.0.1:{proxy.port}/test")
        cli("db", "upgrade", env={"QUASAR_DATABASE_URL": direct})
        env = {"QUASAR_DATABASE_URL": via_proxy}
        with quasar_server(config, env=env) as first:
            before = send(first, 2)
            wait_for(lambda: logged(direct, before) == before)

            proxy.cut()
            during = send(first, 5)
            wait_for(lambda: list(spool.glob("quasar-spool-*.jsonl")), timeout=10)
            assert not logged(direct, during)
            proxy.restore()
            wait_for(lambda: logged(direct, during) == during, timeout=30)
            wait_for(lambda: not list(spool.glob("quasar-spool-*.jsonl")), timeout=10)

            proxy.cut()
            at_shutdown = send(first, 2)  # within the memory buffer: spooled by the shutdown
            first.process.send_signal(signal.SIGTERM)
            first.process.wait(30)  # uvicorn re-raises SIGTERM after its graceful shutdown
            assert list(spool.glob("quasar-spool-*.jsonl")), "rows were not spooled at shutdown"
            assert "spooled" in first.log()

        proxy.restore()
        with quasar_server(config, env=env):
            wait_for(lambda: logged(direct, at_shutdown) == at_shutdown, timeout=30)
        rows = log_rows(direct)
        everything = before | during | at_shutdown
        assert {r["request_id"] for r in rows} >= everything
        assert len([r for r in rows if r["request_id"] in everything]) == len(everything)  # written once each
