"""Usage rollups in the database: migration 0003 rolls up the rows an older Quasar logged, and writers that
share a database (replicas on one PostgreSQL, processes on one SQLite file) add to the same rollup rows
at once without losing a count."""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import numpy as np
import pytest
from sqlalchemy import insert, select

from quasar.config import StoreConfig
from quasar.ids import sortable_id
from quasar.store import Store, migrate, rollup, usage
from quasar.store.database import create_engine, parse_database_url
from quasar.store.logs import LogFilter
from quasar.store.schema import request_log, usage_rollup
from tests.server import quasar_server
from tests.store_support import MASTER, cli, pg_schema, tmp_sqlite_url

# The server only reads the store here; its one model points nowhere.
NOWHERE = """models:
  - name: spark
    deployments:
      - {engine: openai, provider: none, base_url: "http://127.0.0.1:9/v1", api_key: unused}
"""
BIN_ERROR = 0.0906  # docs/api.md


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest) -> Iterator[str]:
    with contextlib.ExitStack() as stack:
        yield tmp_sqlite_url() if request.param == "sqlite" else stack.enter_context(pg_schema())


def log_rows(count: int, now: float, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        rows.append(
            {
                "id": sortable_id(), "request_id": f"req-{seed}-{i}", "created": now - rng.random() * 3 * 86400,
                "key_id": f"key-{i % 3}", "customer_identifier": rng.choice([None, "acme", "globex"]),
                "metadata": None, "model": rng.choice(["spark", "radiance"]), "deployment": "d", "provider": "p",
                "status": "error" if i % 11 == 0 else "ok", "http_status": 200, "error": None,
                "prompt_tokens": rng.randint(1, 900), "cached_tokens": 0, "completion_tokens": rng.randint(1, 300),
                "cost": rng.random() / 100, "price_version": None, "latency_ms": rng.lognormvariate(5, 1),
                "ttft_ms": rng.lognormvariate(3, 1) if i % 2 else None, "routing_ms": 0.1, "attempts": 1,
                "cache_hit": False, "stream": bool(i % 2), "messages": None, "reply": None, "trace": None,
            }
        )  # fmt: skip
    return rows


async def fill_at_0002(url: str, rows: list[dict[str, Any]]) -> None:
    """The database as Quasar before 0003 left it: schema 0002, rows logged, no rollups."""
    engine = create_engine(parse_database_url(url))
    try:
        await migrate.upgrade(engine, "0002")
        async with engine.begin() as conn:
            await conn.execute(insert(request_log), rows)
    finally:
        await engine.dispose()


def nearest_rank(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(fraction * len(ordered)), 1) - 1]


def test_upgrade_rolls_up_the_rows_already_logged(url: str) -> None:
    now = time.time()
    rows = log_rows(600, now, seed=1)
    asyncio.run(fill_at_0002(url, rows))
    env = {"QUASAR_DATABASE_URL": url, "QUASAR_MASTER_KEY": MASTER}
    assert f"to revision {migrate.head()}" in cli("db", "upgrade", env=env).stdout
    since = now - 2.5 * 86400  # whole days and hours from the rollups, the ends from the log
    kept = [r for r in rows if r["created"] >= since]
    with quasar_server(NOWHERE, env=env) as running:
        params = {"group_by": "model", "from": since}
        answer = httpx.get(f"{running.url}/v1/usage", params=params, headers={"Authorization": f"Bearer {MASTER}"})
    got = {d["model"]: d for d in answer.json()["data"]}
    assert set(got) == {"spark", "radiance"}
    for model, data in got.items():
        mine = [r for r in kept if r["model"] == model]
        assert data["requests"] == len(mine)
        assert data["prompt_tokens"] == sum(r["prompt_tokens"] for r in mine)
        assert data["cost"] == pytest.approx(sum(r["cost"] for r in mine))
        assert data["errors"] == sum(r["status"] != "ok" for r in mine)
        latencies = [r["latency_ms"] for r in mine]
        assert data["p95_latency_ms"] == pytest.approx(nearest_rank(latencies, 0.95), rel=BIN_ERROR)


async def write_at_once(url: str, batches: list[list[dict[str, Any]]]) -> list[tuple[Any, ...]]:
    """Each batch written by its own store (its own engine, like a replica), all at the same time, each
    batch twice (a retry after a lost answer); then the stored rollups."""
    stores = [Store(StoreConfig(url=url)) for _ in batches]
    try:
        await stores[0].open()  # upgrades SQLite; PostgreSQL was upgraded by the test
        for store in stores[1:]:
            await store.open()
        inserts = [store.writer.insert for store in stores]
        for _ in range(2):
            await asyncio.gather(*(insert(batch) for insert, batch in zip(inserts, batches, strict=True)))
        async with stores[0].engine.connect() as conn:
            stored = (await conn.execute(select(usage_rollup).order_by(usage_rollup.c.id))).all()
    finally:
        for store in stores:
            await store.close()
    return [tuple(row) for row in stored]


def test_writers_sharing_a_database_add_up(url: str) -> None:
    if url.startswith("postgresql"):
        cli("db", "upgrade", env={"QUASAR_DATABASE_URL": url})
    now = time.time()
    batches = [log_rows(150, now, seed=s) for s in range(4)]  # the same hours, days and groups in each
    stored = asyncio.run(write_at_once(url, batches))
    expected = rollup.rollups([row for batch in batches for row in batch])
    columns = [c.name for c in usage_rollup.columns]
    got = [dict(zip(columns, row, strict=True)) for row in stored]
    assert [r["id"] for r in got] == [r["id"] for r in expected]
    for mine, theirs in zip(got, expected, strict=True):
        assert mine["requests"] == theirs["requests"] and mine["prompt_tokens"] == theirs["prompt_tokens"]
        assert mine["cost"] == pytest.approx(theirs["cost"])
        assert bytes(mine["latency_bins"]) == theirs["latency_bins"] and bytes(mine["ttft_bins"]) == theirs["ttft_bins"]


async def spent(url: str, rows: list[dict[str, Any]], since: float) -> dict[str, dict[str, float]]:
    """What a starting Quasar reads as spent since `since`, per key and per customer, after `rows` were logged."""
    store = Store(StoreConfig(url=url))
    try:
        await store.open()
        await store.writer.insert(rows)
        return {by: await usage.spent_since(store.engine, by, since) for by in ("key", "customer")}
    finally:
        await store.close()


def test_budgets_start_from_the_rollups_as_the_log_sums_them(url: str) -> None:
    if url.startswith("postgresql"):
        cli("db", "upgrade", env={"QUASAR_DATABASE_URL": url})
    now = time.time()
    rows = log_rows(600, now, seed=3)
    since = (now - 1.5 * 86400) // 3600 * 3600 + 1800.5  # within an hour: its second half is read from the log
    assert any(since <= r["created"] < since + 1800 for r in rows)
    got = asyncio.run(spent(url, rows, since))
    for by, column in (("key", "key_id"), ("customer", "customer_identifier")):
        expected: dict[str, float] = {}
        for r in rows:
            if r["created"] >= since and r[column] is not None:
                expected[r[column]] = expected.get(r[column], 0.0) + r["cost"]
        assert got[by].keys() == expected.keys(), by
        assert all(got[by][k] == pytest.approx(v, rel=1e-12) for k, v in expected.items()), by


async def read_usage(url: str, rows: list[dict[str, Any]], where: LogFilter) -> tuple[list, list]:
    """Usage by customer and per day by customer over `where`, after `rows` were logged."""
    store = Store(StoreConfig(url=url))
    try:
        await store.open()
        await store.writer.insert(rows)
        by_customer = await usage.usage(store.engine, "customer", where)
        per_day = await usage.timeseries(store.engine, "day", "customer", where)
        return by_customer, per_day
    finally:
        await store.close()


def expected_usage(rows: list[dict[str, Any]]) -> dict[str, Any]:
    latency = np.bincount([rollup.bin_of(r["latency_ms"]) for r in rows], minlength=rollup.BINS)
    return {
        "requests": len(rows),
        "prompt_tokens": sum(r["prompt_tokens"] for r in rows),
        "completion_tokens": sum(r["completion_tokens"] for r in rows),
        "errors": sum(r["status"] != "ok" for r in rows),
        "p50_latency_ms": rollup.percentile(latency, 0.5),
        "p95_latency_ms": rollup.percentile(latency, 0.95),
        "cost": pytest.approx(sum(r["cost"] for r in rows), rel=1e-9),
    }


def test_a_day_read_less_its_other_hours_is_the_sum_of_its_hours(url: str) -> None:
    if url.startswith("postgresql"):
        cli("db", "upgrade", env={"QUASAR_DATABASE_URL": url})
    now = time.time()
    day = now // 86400 * 86400 - 2 * 86400  # the day before yesterday, whole
    since = day + 3.25 * 3600  # its hours from 4 on: read as the day less hours 0-3
    assert (3600, day, day + 4 * 3600, -1) in usage.fewer_rows(usage.pieces(since, now, rollup.SPANS), rollup.SPANS)
    rows = log_rows(600, now, seed=5)
    rows.append({**rows[0], "id": sortable_id(), "created": day + 3600, "customer_identifier": "early"})
    by_customer, per_day = asyncio.run(read_usage(url, rows, LogFilter(since=since, until=now)))
    kept = [r for r in rows if since <= r["created"] < now]
    assert {d["customer"] for d in by_customer} == {r["customer_identifier"] for r in kept}  # no "early"
    for got in by_customer:
        mine = [r for r in kept if r["customer_identifier"] == got["customer"]]
        assert {k: got[k] for k in expected_usage(mine)} == expected_usage(mine)
    assert {(d["time"], d["group"]) for d in per_day} == {
        (r["created"] // 86400 * 86400, r["customer_identifier"]) for r in kept
    }
    for got in per_day:
        mine = [
            r for r in kept if r["customer_identifier"] == got["group"] and r["created"] // 86400 * 86400 == got["time"]
        ]
        assert {k: got[k] for k in expected_usage(mine)} == expected_usage(mine)


async def upgrade_to_0003_and_forget_the_log(url: str, rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Schema 0003 with its rollups of `rows`, then the log emptied (as retention would): the rollups left."""
    await fill_at_0002(url, rows)
    engine = create_engine(parse_database_url(url))
    try:
        await migrate.upgrade(engine, "0003")
        async with engine.begin() as conn:
            await conn.execute(request_log.delete())
            stored = (await conn.execute(select(usage_rollup).order_by(usage_rollup.c.id))).all()
    finally:
        await engine.dispose()
    return [tuple(row) for row in stored]


async def layout(url: str) -> tuple[list[tuple[Any, ...]], str]:
    """The stored rollup rows, and how the table is keyed: its SQLite definition or its PostgreSQL key."""
    engine = create_engine(parse_database_url(url))
    try:
        async with engine.connect() as conn:
            stored = (await conn.execute(select(usage_rollup).order_by(usage_rollup.c.id))).all()
            if url.startswith("sqlite"):
                shape = "SELECT sql FROM sqlite_master WHERE name = 'usage_rollup'"
            else:
                shape = "SELECT indexdef FROM pg_indexes WHERE indexname = 'pk_usage_rollup'"
                shape += " AND schemaname = current_schema()"
            return [tuple(row) for row in stored], (await conn.exec_driver_sql(shape)).scalar_one()
    finally:
        await engine.dispose()


def test_0004_rekeys_the_rollups_and_keeps_every_row(url: str) -> None:
    before = asyncio.run(upgrade_to_0003_and_forget_the_log(url, log_rows(300, time.time(), seed=9)))
    assert len(before) > 100
    assert "to revision 0004" in cli("db", "upgrade", env={"QUASAR_DATABASE_URL": url}).stdout
    after, shape = asyncio.run(layout(url))
    assert after == before  # nothing recomputed from the (now empty) log, nothing lost
    if url.startswith("sqlite"):
        assert "PRIMARY KEY (grouping, span, bucket, id)" in shape and "WITHOUT ROWID" in shape
    else:
        assert '("grouping", span, bucket, id)' in shape
