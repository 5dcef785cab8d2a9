"""The log writer in-process, on a real SQLite file (and the test PostgreSQL): every way it can fail.

A row the database refuses (an int past 64 bits, past 2**63, a lone surrogate, a NUL for PostgreSQL) is
isolated and written sanitised or set aside, and the rows around it and after it are written; a database
that is away keeps every row, in memory or in the spool, until it is back.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy

from quasar.store.database import create_engine, parse_database_url
from quasar.store.logs import SqliteLog, insert_rows
from quasar.store.rows import refused, sanitise
from quasar.store.schema import request_log, usage_rollup
from quasar.store.spool import Spool
from quasar.store.writer import LogWriter
from tests.store_support import cli, log_rows, pg_schema

HUGE = 18446744073709551616  # 2**64: orjson refuses it
BIG = 2**63  # orjson takes it, sqlite3 does not
Insert = Callable[[list[dict[str, Any]]], Awaitable[None]]


def make_row(request_id: str, **fields: Any) -> dict[str, Any]:
    row = {
        "id": uuid.uuid4().hex,
        "request_id": request_id,
        "created": time.time(),
        "key_id": None,
        "customer_identifier": None,
        "metadata": None,
        "model": "spark",
        "deployment": "spark#0",
        "provider": "llamacpp",
        "status": "ok",
        "http_status": 200,
        "error": None,
        "prompt_tokens": 3,
        "cached_tokens": 0,
        "completion_tokens": 2,
        "cost": 0.0,
        "price_version": None,
        "latency_ms": 1.5,
        "ttft_ms": None,
        "routing_ms": None,
        "attempts": 1,
        "cache_hit": False,
        "stream": False,
        "messages": [{"role": "user", "content": "hi"}],
        "reply": [{"role": "assistant", "content": "hello"}],
        "trace": None,
    }
    row.update(fields)
    return row


class Item:
    """A Loggable as the writer sees it; `fail` makes row() raise, as a record with an odd value could."""

    def __init__(self, row: dict[str, Any], fail: Exception | None = None) -> None:
        self._row = row
        self._fail = fail
        self.request_id = row["request_id"]
        self.status = row["status"]
        self.http_status = row["http_status"]
        self.prompt_tokens = row["prompt_tokens"]
        self.secrets: list[str] = []

    def row(self) -> dict[str, Any]:
        if self._fail is not None:
            raise self._fail
        return self._row


def sqlite_db(tmp_path: Path) -> Path:
    path = tmp_path / "log.db"
    engine = sqlalchemy.create_engine(f"sqlite:///{path}")
    request_log.create(engine)
    usage_rollup.create(engine)  # the writer adds each batch to the usage rollups in its transaction
    engine.dispose()
    return path


def stored(path: Path) -> dict[str, dict[str, Any]]:
    return {r["request_id"]: r for r in log_rows(f"sqlite:///{path}")}


def writer_for(insert: Insert, spool_dir: Path, *, buffer_rows: int = 1000, batch_rows: int = 500) -> LogWriter:
    return LogWriter(insert, Spool(spool_dir), batch_rows=batch_rows, buffer_rows=buffer_rows, flush_seconds=0.05)


class Switchable:
    """An insert function over a real one: `down` makes it fail as an unreachable database does; rows
    whose request id is in `poison` are refused as bad data whatever they hold."""

    def __init__(self, inner: Insert) -> None:
        self.inner = inner
        self.down = False
        self.poison: set[str] = set()
        self.calls: list[list[str]] = []

    async def __call__(self, rows: list[dict[str, Any]]) -> None:
        self.calls.append([r["request_id"] for r in rows])
        if self.down:
            raise ConnectionRefusedError(111, "Connection refused")
        if any(r["request_id"] in self.poison for r in rows):
            raise sqlite3.IntegrityError("CHECK constraint failed: request_log")
        await self.inner(rows)


def dead_letters(spool_dir: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for path in spool_dir.glob("quasar-dead-*.jsonl") for line in path.read_bytes().split()]


async def test_a_poisoned_batch_writes_the_good_rows_and_goes_on(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    path = sqlite_db(tmp_path)
    log = SqliteLog(path)
    writer = writer_for(log.insert, tmp_path / "spool")
    good = [make_row(f"good-{i}") for i in range(6)]
    bad = [
        make_row("huge-metadata", metadata={"n": HUGE, "team": "search"}),
        make_row("big-column", prompt_tokens=BIG),
        make_row("surrogate", error="broken \ud800 text", messages=[{"role": "user", "content": "x\ud800"}]),
        make_row("wrong-type", error=object(), metadata={"when": {1, 2}}),
    ]
    for row in good[:2] + bad[:2] + good[2:4] + bad[2:] + good[4:]:
        writer.submit(Item(row))
    with caplog.at_level(logging.WARNING, logger="quasar.store"):
        assert await writer.drain()
    later = [make_row(f"later-{i}") for i in range(3)]
    for row in later:
        writer.submit(Item(row))
    assert await writer.drain()
    await writer.close(1)
    await log.close()

    rows = stored(path)
    assert set(rows) == {r["request_id"] for r in good + bad + later}
    for row in good + later:
        assert rows[row["request_id"]]["id"] == row["id"]
        assert rows[row["request_id"]]["messages"] == row["messages"]
    assert rows["huge-metadata"]["metadata"] == {"n": str(HUGE), "team": "search"}
    assert rows["huge-metadata"]["messages"] == [{"role": "user", "content": "hi"}]
    assert rows["big-column"]["prompt_tokens"] == 2**31 - 1
    assert "\ud800" not in rows["surrogate"]["error"] and rows["surrogate"]["error"].startswith("broken ")
    assert rows["wrong-type"]["error"].startswith("<object object")
    assert writer.healthy and writer.sanitised_rows == 4 and writer.dead_rows == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 4 and all("written sanitised" in w for w in warnings)
    assert any("'huge-metadata'" in w for w in warnings)
    assert not any("search" in w or "hello" in w for w in warnings)  # the request id, never the content


async def test_a_row_refused_even_sanitised_is_set_aside_once(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    path = sqlite_db(tmp_path)
    log = SqliteLog(path)
    insert = Switchable(log.insert)
    insert.poison = {"poison"}
    spool_dir = tmp_path / "spool"
    writer = writer_for(insert, spool_dir)
    rows = [make_row(f"before-{i}") for i in range(4)] + [make_row("poison", metadata={"secret-ish": "content"})]
    rows += [make_row(f"after-{i}") for i in range(3)]
    for row in rows:
        writer.submit(Item(row))
    with caplog.at_level(logging.WARNING, logger="quasar.store"):
        assert await writer.drain()
    assert writer.healthy and writer.dead_rows == 1
    calls = len(insert.calls)
    writer.submit(Item(make_row("next")))
    assert await writer.drain()
    assert insert.calls[calls:] == [["next"]]  # the refused row is not tried again
    await writer.close(1)
    await log.close()

    assert set(stored(path)) == {r["request_id"] for r in rows if r["request_id"] != "poison"} | {"next"}
    assert [r["request_id"] for r in dead_letters(spool_dir)] == ["poison"]
    assert dead_letters(spool_dir)[0]["metadata"] == {"secret-ish": "content"}
    assert not list(spool_dir.glob("quasar-spool-*.jsonl"))
    warning = [r.getMessage() for r in caplog.records if "even sanitised" in r.getMessage()]
    assert len(warning) == 1 and "'poison'" in warning[0] and "content" not in warning[0]


async def test_a_row_that_cannot_be_made_is_written_without_its_content(tmp_path: Path) -> None:
    path = sqlite_db(tmp_path)
    log = SqliteLog(path)
    writer = writer_for(log.insert, tmp_path / "spool")
    broken = Item(make_row("broken", http_status=500, status="error"), fail=TypeError("Integer exceeds 64-bit range"))
    broken.secrets = ["sk-planted"]
    broken.customer_identifier = "holds sk-planted"  # type: ignore[attr-defined]
    writer.submit(broken)
    writer.submit(Item(make_row("fine")))
    assert await writer.drain()
    await writer.close(1)
    await log.close()
    rows = stored(path)
    assert set(rows) == {"broken", "fine"}
    broken_row = rows["broken"]
    assert (broken_row["status"], broken_row["http_status"], broken_row["prompt_tokens"]) == ("error", 500, 3)
    assert rows["broken"]["messages"] is None and "could not be made" in rows["broken"]["error"]
    assert rows["broken"]["customer_identifier"] is None  # a string holding a secret is left out


async def test_a_spool_the_disk_refuses_keeps_the_rows_in_memory(tmp_path: Path) -> None:
    path = sqlite_db(tmp_path)
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    log = SqliteLog(path)
    insert = Switchable(log.insert)
    insert.down = True
    writer = writer_for(insert, not_a_directory / "spool", buffer_rows=2, batch_rows=2)
    rows = [make_row(f"kept-{i}") for i in range(4)] + [make_row("kept-huge", metadata={"n": HUGE})]
    for row in rows:
        writer.submit(Item(row))  # past buffer_rows: the spill fails, submit does not
    assert not await writer.drain()
    insert.down = False
    assert await writer.drain()
    await writer.close(1)
    await log.close()
    assert set(stored(path)) == {r["request_id"] for r in rows}


async def test_spool_at_shutdown_takes_a_huge_int_then_the_next_process_writes_it(tmp_path: Path) -> None:
    path = sqlite_db(tmp_path)
    spool_dir = tmp_path / "spool"
    insert = Switchable(SqliteLog(path).insert)
    insert.down = True
    writer = writer_for(insert, spool_dir)
    rows = [make_row("before"), make_row("huge", metadata={"n": HUGE}), make_row("big", metadata={"n": BIG})]
    rows += [make_row("after")]
    for row in rows:
        writer.submit(Item(row))
    await writer.close(0.5)  # the database is away: everything goes to the spool
    assert list(spool_dir.glob("quasar-spool-*.jsonl")), "nothing spooled"

    log = SqliteLog(path)
    second = writer_for(log.insert, spool_dir)
    assert await second.drain()
    await second.close(1)
    await log.close()
    got = stored(path)
    assert set(got) == {"before", "huge", "big", "after"}
    assert got["huge"]["metadata"] == {"n": str(HUGE)}
    assert got["big"]["metadata"] == {"n": BIG}  # orjson takes up to 2**64 - 1, and SQLite stores the text
    assert not list(spool_dir.glob("quasar-spool-*.jsonl"))


async def test_a_spool_file_with_bad_rows_does_not_block_the_drain(tmp_path: Path) -> None:
    path = sqlite_db(tmp_path)
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    lines = [
        orjson.dumps(make_row("one")),
        orjson.dumps(make_row("big", prompt_tokens=BIG)),  # valid JSON that sqlite3 refuses
        b"3",  # JSON, but not a row
        orjson.dumps(make_row("two")),
        orjson.dumps(make_row("status-missing", status=None)),  # NOT NULL
        b'{"id": "torn',  # a torn last line
    ]
    (spool_dir / "quasar-spool-1-deadbeef.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    log = SqliteLog(path)
    writer = writer_for(log.insert, spool_dir, batch_rows=3)
    assert await writer.drain()
    await writer.close(1)
    await log.close()
    got = stored(path)
    assert set(got) == {"one", "big", "two", "status-missing"}
    assert got["big"]["prompt_tokens"] == 2**31 - 1 and got["status-missing"]["status"] == ""
    assert not list(spool_dir.glob("quasar-spool-*.jsonl"))


async def test_database_down_then_up_keeps_every_row_bad_ones_included(tmp_path: Path) -> None:
    path = sqlite_db(tmp_path)
    spool_dir = tmp_path / "spool"
    log = SqliteLog(path)
    insert = Switchable(log.insert)
    writer = writer_for(insert, spool_dir, buffer_rows=2, batch_rows=2)
    writer.submit(Item(make_row("up-0")))
    assert await writer.drain()

    insert.down = True
    during = [make_row(f"down-{i}") for i in range(4)] + [make_row("down-huge", metadata={"n": HUGE})]
    during += [make_row("down-big", completion_tokens=BIG), make_row("down-last")]
    for row in during:
        writer.submit(Item(row))
    assert not await writer.drain()
    assert not writer.healthy
    assert list(spool_dir.glob("quasar-spool-*.jsonl")), "the buffer did not spill"
    assert set(stored(path)) == {"up-0"}

    insert.down = False
    assert await writer.drain()
    assert writer.healthy
    await writer.close(1)
    await log.close()
    got = stored(path)
    assert set(got) == {"up-0"} | {r["request_id"] for r in during}
    assert got["down-huge"]["metadata"] == {"n": str(HUGE)} and got["down-big"]["completion_tokens"] == 2**31 - 1
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM request_log").fetchone()[0] == len(during) + 1  # once each
    assert not list(spool_dir.glob("quasar-spool-*.jsonl")) and not dead_letters(spool_dir)


async def test_database_lost_while_isolating_a_row_keeps_the_rest(tmp_path: Path) -> None:
    """The database goes away in the middle of the search for a refused row: nothing settled is redone,
    nothing unsettled is lost, and the refused row is set aside once."""
    path = sqlite_db(tmp_path)
    spool_dir = tmp_path / "spool"
    log = SqliteLog(path)
    insert = Switchable(log.insert)
    insert.poison = {"poison"}
    tripped = []

    async def goes_down_after_the_poison(rows: list[dict[str, Any]]) -> None:
        if rows[0]["request_id"] == "s-0" and not tripped:  # the half after the refused row
            tripped.append(True)
            insert.down = True
        await insert(rows)

    writer = writer_for(goes_down_after_the_poison, spool_dir, batch_rows=8)
    rows = [make_row(f"r-{i}") for i in range(3)] + [make_row("poison")] + [make_row(f"s-{i}") for i in range(4)]
    for row in rows:
        writer.submit(Item(row))
    assert not await writer.drain()  # down in the middle
    insert.down = False
    assert await writer.drain()
    await writer.close(1)
    await log.close()
    assert set(stored(path)) == {r["request_id"] for r in rows} - {"poison"}
    assert [r["request_id"] for r in dead_letters(spool_dir)] == ["poison"]
    poisoned_tries = [c for c in insert.calls if c == ["poison"]]
    assert len(poisoned_tries) == 2  # the row, then its sanitised copy; never again after


async def test_database_lost_while_draining_the_spool_keeps_the_rest(tmp_path: Path) -> None:
    path = sqlite_db(tmp_path)
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    rows = [make_row(f"spooled-{i}") for i in range(3)] + [make_row("spooled-poison")]
    rows += [make_row(f"spooled-{i}") for i in range(3, 9)]
    original = spool_dir / "quasar-spool-1-cafebabe.jsonl"
    original.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    log = SqliteLog(path)
    insert = Switchable(log.insert)
    insert.poison = {"spooled-poison"}

    tripped = []

    async def down_on_the_third_batch(batch: list[dict[str, Any]]) -> None:
        if batch[0]["request_id"] == "spooled-7" and not tripped:
            tripped.append(True)
            insert.down = True
        await insert(batch)

    writer = writer_for(down_on_the_third_batch, spool_dir, batch_rows=4)
    assert not await writer.drain()
    assert set(stored(path)) == {f"spooled-{i}" for i in range(7)}
    assert not original.exists()  # what is left was moved to this process's own spool file
    insert.down = False
    assert await writer.drain()
    await writer.close(1)
    await log.close()
    assert set(stored(path)) == {r["request_id"] for r in rows} - {"spooled-poison"}
    assert [r["request_id"] for r in dead_letters(spool_dir)] == ["spooled-poison"]
    assert not list(spool_dir.glob("quasar-spool-*.jsonl"))


def test_postgres_refused_rows_are_isolated(tmp_path: Path) -> None:
    """insert_rows against the test PostgreSQL: a NUL in `error`, an int past 64 bits in metadata, an
    int past INTEGER, a request id longer than its VARCHAR, a NUL in a JSON string."""
    bad = [
        make_row("pg-nul-error", error="bad\x00byte"),
        make_row("pg-huge-metadata", metadata={"n": HUGE}),
        make_row("pg-int4", prompt_tokens=2**40),
        make_row("pg-long-id" + "x" * 200),
        make_row("pg-nul-json", metadata={"s": "a\x00b"}),
    ]
    good = [make_row(f"pg-good-{i}") for i in range(4)]

    async def run(url: str) -> LogWriter:
        engine = create_engine(parse_database_url(url))
        writer = writer_for(lambda rows: insert_rows(engine, rows), tmp_path / "spool")
        for row in good[:2] + bad + good[2:]:
            writer.submit(Item(row))
        assert await writer.drain()
        writer.submit(Item(make_row("pg-later")))
        assert await writer.drain()
        await writer.close(1)
        await engine.dispose()
        return writer

    with pg_schema() as url:
        cli("db", "upgrade", env={"QUASAR_DATABASE_URL": url})
        writer = asyncio.run(run(url))
        got = {r["request_id"]: r for r in log_rows(url)}
    for row in got.values():  # asyncpg gives JSON columns as text
        row["metadata"] = orjson.loads(row["metadata"]) if row["metadata"] is not None else None
    assert writer.healthy and writer.dead_rows == 0
    assert len(got) == len(good) + len(bad) + 1
    assert got["pg-nul-error"]["error"] == "badbyte"
    assert got["pg-huge-metadata"]["metadata"] == {"n": str(HUGE)}
    assert got["pg-int4"]["prompt_tokens"] == 2**31 - 1
    assert ("pg-long-id" + "x" * 200)[:128] in got
    assert got["pg-nul-json"]["metadata"]["s"] in ("a\x00b", "ab")  # JSON (not JSONB) takes \u0000
    assert not dead_letters(tmp_path / "spool")


def test_what_counts_as_refused_data() -> None:
    assert refused(OverflowError("Python int too large to convert to SQLite INTEGER"))
    assert refused(TypeError("Integer exceeds 64-bit range"))
    assert refused(sqlite3.IntegrityError("NOT NULL constraint failed: request_log.status"))
    assert refused(sqlite3.ProgrammingError("Error binding parameter 1: type 'object' is not supported"))
    assert not refused(sqlite3.OperationalError("database is locked"))
    assert not refused(sqlite3.ProgrammingError("Cannot operate on a closed database."))
    assert not refused(ConnectionRefusedError(111, "refused"))
    assert not refused(TimeoutError())
    assert not refused(RuntimeError("cannot schedule new futures after shutdown"))


def test_sanitise_makes_any_row_storable() -> None:
    row = sanitise(
        {
            "request_id": "r\x00id",
            "metadata": {1: HUGE, "nested": [[[{"nan": float("nan"), "s": "\ud800"}]]], "set": {1}},
            "prompt_tokens": "12",
            "cost": float("inf"),
            "latency_ms": 10**400,
            "stream": "yes",
            "extra": "not a column",
        }
    )
    assert row["request_id"] == "rid" and row["metadata"]["1"] == str(HUGE)
    assert row["metadata"]["nested"] == [[[{"nan": None, "s": "?"}]]] and row["metadata"]["set"] == "{1}"
    assert (row["prompt_tokens"], row["cost"], row["latency_ms"], row["stream"]) == (12, 0.0, 0.0, False)
    assert "extra" not in row and row["id"] and row["status"] == "" and row["created"] > 0
    orjson.dumps(row)


async def test_rows_that_come_during_a_write_wait_for_the_next_flush(tmp_path: Path) -> None:
    """Under a steady stream of requests each flush writes one batch of what waited: the writer does not
    chase the few rows that came while the last batch was written with a batch of their own (each batch
    pays a transaction and its rollup upserts). So there are at most as many batches as flushes."""
    path = sqlite_db(tmp_path)
    log = SqliteLog(path)
    insert = Switchable(log.insert)
    writer = writer_for(insert, tmp_path / "spool")
    writer.start()
    started = time.monotonic()
    for i in range(300):
        writer.submit(Item(make_row(f"req-{i}")))
        await asyncio.sleep(0.001)
    elapsed = time.monotonic() - started
    await writer.close(10)
    await log.close()
    assert len(stored(path)) == 300
    assert sum(map(len, insert.calls)) == 300
    assert len(insert.calls) <= elapsed / writer.flush_seconds + 2, [len(c) for c in insert.calls]
