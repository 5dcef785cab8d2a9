"""Dashboard API benchmark: every call the dashboard makes, against a request log of 1,000,000 rows.

    .venv/bin/python benchmarks/dashboard.py [--db sqlite|postgresql] [--rows 1000000] [--repeat 20] [--cache DIR]

Fills a fresh database (a SQLite file, or a new schema in the PostgreSQL database of the tests,
postgresql://postgres@127.0.0.1:5432/test) with rows spread evenly over the last 30 days: 6 models, 50
keys, 300 customers, 3% errors and 1% cancelled, a small routing trace on every row and messages on
every tenth. The rows go into the schema as Quasar's migrations leave it at revision 0002; then `quasar db
upgrade` runs migration 0003, which rolls the rows up (its time is reported). Then a real `quasar serve`
on that database answers each call --repeat times after one warm-up call; the report gives p50 and p95
in ms per call, as Markdown. Target: p95 <= 300 ms for every call.

With --cache DIR the filled log (at revision 0002, before any rollup) is kept as DIR/log-<rows>.db with the
time it was filled for, and later runs copy it instead of filling again (into PostgreSQL with COPY); the
migrations from 0002 on still run on every run, as they do for a user upgrading.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.server import quasar_server  # noqa: E402

PG = "postgresql://postgres@127.0.0.1:5432/test"
MASTER = "sk-bench-dashboard"
TS = "/v1/usage/timeseries"
DAYS = 30
MODELS = ["spark", "radiance", "supernova", "gpt-4o-mini", "claude-haiku", "llama-70b"]
COLUMNS = [
    "id", "request_id", "created", "key_id", "customer_identifier", "metadata", "model", "deployment",
    "provider", "status", "http_status", "error", "prompt_tokens", "cached_tokens", "completion_tokens",
    "cost", "price_version", "latency_ms", "ttft_ms", "routing_ms", "attempts", "cache_hit", "stream",
    "messages", "reply", "trace",
]  # fmt: skip
# A config whose only model points nowhere: the server reads the store, it answers no chat here.
CONFIG = """models:
  - name: spark
    deployments:
      - {engine: openai, provider: none, base_url: "http://127.0.0.1:9/v1", api_key: unused}
"""


def rows(count: int, now: float, seed: int = 15) -> Iterator[tuple[Any, ...]]:
    """`count` log rows, oldest first, evenly over the last DAYS days."""
    rng = random.Random(seed)
    start = now - DAYS * 86400
    step = DAYS * 86400 / count
    for i in range(count):
        created = start + i * step
        model = MODELS[min(int(rng.expovariate(0.7)), len(MODELS) - 1)]
        roll = rng.random()
        status, http = ("error", 502) if roll < 0.03 else ("cancelled", 499) if roll < 0.04 else ("ok", 200)
        stream = rng.random() < 0.6
        latency = rng.lognormvariate(6.5, 0.6)
        deployment = f"{model}#0"
        trace = {
            "strategy": "weighted",
            "candidates": [deployment],
            "dropped": [],
            "attempts": [{"deployment": deployment, "model": model, "provider": "p", "status": http, "latency": 0.1}],
            "fallbacks": 0,
            "deployment": deployment,
            "provider": "p",
            "truncated": False,
        }
        prompt, completion = rng.randint(10, 4000), rng.randint(1, 800)
        messages = [{"role": "user", "content": "hello " * 20}] if i % 10 == 0 else None
        yield (
            f"{int(created * 1e9):016x}{rng.getrandbits(64):016x}",
            f"req_{uuid.UUID(int=rng.getrandbits(128)).hex}",
            created,
            f"key_{rng.randrange(50):04d}",
            f"customer-{rng.randrange(300)}" if rng.random() < 0.8 else None,
            None,
            model,
            deployment,
            "p",
            status,
            http,
            "upstream failed" if status == "error" else None,
            prompt,
            prompt // 4,
            completion,
            (prompt * 0.5 + completion * 1.5) / 1e6,
            "0.5/1.5/0.25",
            latency,
            latency * 0.2 if stream else None,
            0.05,
            1,
            False,
            stream,
            orjson.dumps(messages).decode() if messages else None,
            None,
            orjson.dumps(trace).decode(),
        )


async def upgrade_to_0002(url: str) -> None:
    from quasar.store import migrate
    from quasar.store.database import create_engine, parse_database_url

    engine = create_engine(parse_database_url(url))
    try:
        await migrate.upgrade(engine, "0002")
    finally:
        await engine.dispose()


def upgrade(url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUASAR_")}
    env["QUASAR_DATABASE_URL"] = url
    subprocess.run([sys.executable, "-m", "quasar.cli", "db", "upgrade"], env=env, check=True, capture_output=True)


def fill_sqlite(path: Path, count: int, now: float) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    sql = f"INSERT INTO request_log ({','.join(COLUMNS)}) VALUES ({','.join('?' * len(COLUMNS))})"
    batch: list[tuple[Any, ...]] = []
    for row in rows(count, now):
        batch.append(row)
        if len(batch) == 50_000:
            conn.executemany(sql, batch)
            batch.clear()
    conn.executemany(sql, batch)
    conn.commit()
    conn.execute("ANALYZE")
    conn.close()


async def fill_postgres(schema: str, count: int, now: float) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG)
    try:
        batch: list[tuple[Any, ...]] = []
        for record in rows(count, now):
            batch.append(record)
            if len(batch) == 50_000:
                await conn.copy_records_to_table("request_log", records=batch, columns=COLUMNS, schema_name=schema)
                batch.clear()
        await conn.copy_records_to_table("request_log", records=batch, columns=COLUMNS, schema_name=schema)
        await conn.execute(f'ANALYZE "{schema}".request_log')
    finally:
        await conn.close()


async def pg(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def calls(client: httpx.Client, now: float) -> list[tuple[str, str, dict[str, Any]]]:
    """(name, path, query) of every call the dashboard makes; the deep page's cursor is found first."""
    day, month = now - 86400, now - DAYS * 86400
    cursor = None
    for _ in range(200):  # 200 pages of 25 back: 5,000 rows deep
        page = client.get("/v1/requests", params={"limit": 25, **({"cursor": cursor} if cursor else {})}).json()
        cursor = page["next_cursor"]
    filtered = None
    for _ in range(40):
        params = {"limit": 25, "model": "radiance", "status": "ok", **({"cursor": filtered} if filtered else {})}
        filtered = client.get("/v1/requests", params=params).json()["next_cursor"]
    one = client.get("/v1/requests", params={"limit": 1, "to": now - 15 * 86400}).json()["data"][0]["request_id"]
    out: list[tuple[str, str, dict[str, Any]]] = []
    radiance = {"limit": 25, "model": "radiance", "status": "ok"}
    for group in ("model", "key", "customer"):
        out.append((f"usage 24 h by {group}", "/v1/usage", {"group_by": group, "from": day}))
        out.append((f"usage 30 d by {group}", "/v1/usage", {"group_by": group, "from": month}))
    out += [
        ("timeseries 1 h per minute", TS, {"bucket": "minute", "from": now - 3600}),
        ("timeseries 24 h per hour", TS, {"bucket": "hour", "from": day}),
        ("timeseries 24 h per hour by model", TS, {"bucket": "hour", "group_by": "model", "from": day}),
        ("timeseries 30 d per day", TS, {"bucket": "day", "from": month}),
        ("timeseries 30 d per day by model", TS, {"bucket": "day", "group_by": "model", "from": month}),
        ("timeseries 30 d per day by customer", TS, {"bucket": "day", "group_by": "customer", "from": month}),
        ("log: first page", "/v1/requests", {"limit": 25}),
        ("log: first page, model + status", "/v1/requests", {"limit": 25, "model": "radiance", "status": "ok"}),
        ("log: first page, customer", "/v1/requests", {"limit": 25, "customer": "customer-7"}),
        ("log: first page, key, last 24 h", "/v1/requests", {"limit": 25, "key": "key_0007", "from": day}),
        ("log: page 200 (5,000 rows deep)", "/v1/requests", {"limit": 25, "cursor": cursor}),
        ("log: page 40, model + status", "/v1/requests", {**radiance, "cursor": filtered}),
        ("log: one row's detail", f"/v1/requests/{one}", {}),
        ("deployments", "/admin/deployments", {}),
    ]
    return out


def measure(url: str, repeat: int, now: float) -> list[tuple[str, float, float]]:
    with quasar_server(CONFIG, env={"QUASAR_DATABASE_URL": url, "QUASAR_MASTER_KEY": MASTER}, timeout=120) as srv:
        client = httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {MASTER}"}, timeout=120)
        results = []
        for name, path, params in calls(client, now):
            client.get(path, params=params).raise_for_status()  # warm-up
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                client.get(path, params=params).raise_for_status()
                times.append((time.perf_counter() - started) * 1000)
            times.sort()
            p95 = times[min(len(times) - 1, max(0, -(-95 * len(times) // 100) - 1))]
            results.append((name, statistics.median(times), p95))
            print(f"  {name}: p50 {results[-1][1]:.1f} ms, p95 {p95:.1f} ms", file=sys.stderr, flush=True)
        return results


def cached_log(cache: Path, count: int) -> tuple[Path, float]:
    """The filled log at revision 0002 kept in `cache` (filled now if missing), and the time it was filled for."""
    cache.mkdir(parents=True, exist_ok=True)
    path, stamp = cache / f"log-{count}.db", cache / f"log-{count}.now"
    if not (path.exists() and stamp.exists()):
        now = time.time()
        partial = path.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        asyncio.run(upgrade_to_0002(f"sqlite:///{partial}"))
        started = time.perf_counter()
        fill_sqlite(partial, count, now)
        print(f"filled {count:,} rows into {path} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        partial.rename(path)
        stamp.write_text(repr(now))
    return path, float(stamp.read_text())


async def copy_to_postgres(source: Path, schema: str) -> None:
    """The cached log's rows into the PostgreSQL schema, with COPY."""
    import asyncpg

    conn = await asyncpg.connect(PG)
    log = sqlite3.connect(source)
    flags = (COLUMNS.index("cache_hit"), COLUMNS.index("stream"))
    try:
        cursor = log.execute(f"SELECT {','.join(COLUMNS)} FROM request_log")
        while batch := cursor.fetchmany(50_000):
            records = [tuple(bool(v) if i in flags else v for i, v in enumerate(row)) for row in batch]
            await conn.copy_records_to_table("request_log", records=records, columns=COLUMNS, schema_name=schema)
        await conn.execute(f'ANALYZE "{schema}".request_log')
    finally:
        log.close()
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--cache", type=Path, help="keep the filled log here and reuse it on later runs")
    args = parser.parse_args()
    now = time.time()
    work = Path(tempfile.mkdtemp(prefix="quasar-bench-dashboard-"))
    schema = f"bench_dashboard_{uuid.uuid4().hex[:8]}"
    url = f"sqlite:///{work / 'quasar.db'}" if args.db == "sqlite" else f"{PG}?search_path={schema}"
    if args.db == "postgresql":
        asyncio.run(pg(f'CREATE SCHEMA "{schema}"'))
    try:
        started = time.perf_counter()
        if args.cache:
            source, now = cached_log(args.cache, args.rows)
            if args.db == "sqlite":
                shutil.copyfile(source, work / "quasar.db")
            else:
                asyncio.run(upgrade_to_0002(url))
                asyncio.run(copy_to_postgres(source, schema))
        else:
            asyncio.run(upgrade_to_0002(url))
            if args.db == "sqlite":
                fill_sqlite(work / "quasar.db", args.rows, now)
            else:
                asyncio.run(fill_postgres(schema, args.rows, now))
        print(f"filled {args.rows:,} rows in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        started = time.perf_counter()
        upgrade(url)
        print(f"the migrations from 0002 on took {time.perf_counter() - started:.0f} s", file=sys.stderr)
        results = measure(url, args.repeat, now)
    finally:
        if args.db == "postgresql":
            asyncio.run(pg(f'DROP SCHEMA "{schema}" CASCADE'))
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.db}, {args.rows:,} rows over {DAYS} days, {args.repeat} calls each after one warm-up\n")
    print("| call | p50 ms | p95 ms | p95 ≤ 300 ms |")
    print("|---|---|---|---|")
    for name, p50, p95 in results:
        print(f"| {name} | {p50:.1f} | {p95:.1f} | {'yes' if p95 <= 300 else 'no'} |")


if __name__ == "__main__":
    main()
