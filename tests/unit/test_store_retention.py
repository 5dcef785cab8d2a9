"""The retention job on a real SQLite file and on the test PostgreSQL, with rows back-dated past the
limits: old rows deleted in batches while inserts go on, older content dropped with the usage kept,
SQLite's space given back."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from quasar.config import StoreConfig
from quasar.store import Store
from quasar.store.logs import insert_rows
from quasar.store.retention import Retention
from quasar.store.schema import request_log
from tests.store_support import cli, pg_schema

DAY = 86400.0
OLD, MID, NEW = 1200, 300, 50  # rows 40, 10 and 0 days old


def row(age_days: float, now: float) -> dict[str, Any]:
    return {
        "id": uuid.uuid4().hex,
        "request_id": f"req-{uuid.uuid4().hex[:8]}",
        "created": now - age_days * DAY,
        "status": "ok",
        "http_status": 200,
        "model": "spark",
        "prompt_tokens": 11,
        "cached_tokens": 0,
        "completion_tokens": 7,
        "cost": 0.25,
        "latency_ms": 3.0,
        "attempts": 1,
        "cache_hit": False,
        "stream": False,
        "messages": [{"role": "user", "content": "a secret from long ago " + "x" * 2000}],
        "reply": [{"role": "assistant", "content": "noted " + "y" * 2000}],
    }


async def exercise(store: Store, insert: Any) -> dict[str, Any]:
    """Fill the log, run retention while rows keep arriving, and report what is left."""
    now = time.time()
    for age, count in ((40, OLD), (10, MID), (0, NEW)):
        rows = [row(age, now) for _ in range(count)]
        for start in range(0, count, 100):
            await insert(rows[start : start + 100])
    limits = StoreConfig(url=store.config.url, retention_days=30, content_retention_days=7)
    retention = Retention(store.engine, limits, store.url.sqlite_path, batch_rows=100)
    latencies: list[float] = []
    arrived: list[str] = []

    async def keep_inserting() -> None:
        while True:
            fresh = row(0, time.time())
            began = time.perf_counter()
            await insert([fresh])
            latencies.append(time.perf_counter() - began)
            arrived.append(fresh["id"])
            await asyncio.sleep(0.01)

    inserting = asyncio.create_task(keep_inserting())
    try:
        first = await retention.run_once(now)
    finally:
        inserting.cancel()
    again = await retention.run_once(now)
    async with store.engine.connect() as conn:
        rows = {r.id: r for r in (await conn.execute(select(request_log))).all()}
        total = (await conn.execute(select(func.count()).select_from(request_log))).scalar()
    return {"first": first, "again": again, "rows": rows, "total": total, "latencies": latencies, "arrived": arrived}


def check(result: dict[str, Any], now: float) -> None:
    assert result["first"] == (OLD, MID)
    assert result["again"] == (0, 0)
    rows = result["rows"]
    # the inserter is cancelled at the end: its last row may be in without having been counted
    assert MID + NEW + len(result["arrived"]) <= result["total"] <= MID + NEW + len(result["arrived"]) + 1
    assert all(r.created > now - 30 * DAY for r in rows.values())
    mid = [r for r in rows.values() if r.created < now - 7 * DAY]
    assert len(mid) == MID
    assert all(r.messages is None and r.reply is None for r in mid)
    assert all(r.prompt_tokens == 11 and r.completion_tokens == 7 and r.cost == 0.25 for r in mid)  # usage kept
    recent = [r for r in rows.values() if r.created >= now - 7 * DAY]
    assert recent and all(r.messages is not None and r.reply is not None for r in recent)
    assert set(result["arrived"]) <= set(rows)  # every row inserted meanwhile is there
    assert len(result["arrived"]) >= 5 and max(result["latencies"]) < 1.0  # inserts went on during the deletes


def test_retention_on_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "quasar.db"

    async def run() -> dict[str, Any]:
        store = Store(StoreConfig(url=f"sqlite:///{path}"))  # its own job off: this test runs one
        await store.open()
        try:
            assert store.sqlite_log is not None
            result = await exercise(store, store.sqlite_log.insert)
        finally:
            await store.close()
        return result

    now = time.time()
    result = asyncio.run(run())
    check(result, now)
    conn = sqlite3.connect(path)
    auto_vacuum, free = (
        conn.execute("PRAGMA auto_vacuum").fetchone()[0],
        conn.execute("PRAGMA freelist_count").fetchone()[0],
    )
    pages, page_size = conn.execute("PRAGMA page_count").fetchone()[0], conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    assert auto_vacuum == 2 and free == 0  # a new database: incremental, and the freed pages handed back
    # what is left (about 350 rows of which 300 without content) fits in far less than 1,550 rows of ~4 kB
    assert pages * page_size < 1200 * 4000 / 2


def test_retention_on_postgresql() -> None:
    with pg_schema() as url:
        cli("db", "upgrade", env={"QUASAR_DATABASE_URL": url})

        async def run() -> dict[str, Any]:
            store = Store(StoreConfig(url=url))
            await store.open()
            try:
                return await exercise(store, lambda rows: insert_rows(store.engine, rows))
            finally:
                await store.close()

        now = time.time()
        check(asyncio.run(run()), now)


def test_the_store_runs_the_job(tmp_path: Path) -> None:
    """A store opened with retention configured deletes back-dated rows on its own, soon after it opens."""

    async def run() -> tuple[int, int]:
        store = Store(StoreConfig(url=f"sqlite:///{tmp_path / 'q.db'}", retention_days=1))
        await store.open()
        try:
            assert store.sqlite_log is not None
            now = time.time()
            await store.sqlite_log.insert([row(2, now), row(2, now), row(0, now)])
            deadline = time.monotonic() + 10
            while True:
                async with store.engine.connect() as conn:
                    left = (await conn.execute(select(func.count()).select_from(request_log))).scalar()
                if left == 1 or time.monotonic() > deadline:
                    return left, 1
                await asyncio.sleep(0.1)
        finally:
            await store.close()

    left, want = asyncio.run(run())
    assert left == want


def test_retention_off_by_default() -> None:
    assert not Retention(None, StoreConfig()).enabled  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        StoreConfig(retention_days=0)
