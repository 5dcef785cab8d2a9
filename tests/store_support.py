"""Helpers for the store, keys and limits tests: Postgres schemas, Redis namespaces, the CLI, log rows.

Registered as a pytest plugin in conftest.py, so its fixtures are available to every test module.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
import redis

from tests.server import Running, quasar_server

PG = "postgresql://postgres@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379/0"
MASTER = "master-" + uuid.uuid4().hex
# USD per million tokens: high enough that a few tokens cost something measurable.
PRICE = {"input": 100.0, "output": 200.0}
PLANTED_PROVIDER_KEY = "sk-planted-provider-" + uuid.uuid4().hex
PLANTED_CUSTOMER_SECRET = "sk-planted-customer-" + uuid.uuid4().hex
CUSTOMER_LIMITS = """limits:
  customer: {rpm: 1000}
  customers:
    c-rpm: {rpm: 3}
    c-budget: {budget: 0.000001}
"""


def priced_config(*, price: dict[str, float] | None = None, extra: str = "", api_key: str | None = None) -> str:
    """The built-in model as `spark`, with a price, small and quick."""
    price = price or PRICE
    key_line = f"\n        api_key: {api_key}" if api_key else ""
    deployment = (
        f"      - engine: llamacpp\n        path: builtin:smollm2-135m-instruct\n        parallel: 4\n"
        f"        threads: 1\n        context_length: 2048\n"
        f"        price: {{input: {price['input']}, output: {price['output']}}}{key_line}\n"
    )
    return f"models:\n  - name: spark\n    deployments:\n{deployment}{extra}"


def cli(*args: str, env: dict[str, str], check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("QUASAR_")}
    full.update(env)
    done = subprocess.run(
        [sys.executable, "-m", "quasar.cli", *args], env=full, capture_output=True, text=True, timeout=timeout
    )
    if check and done.returncode != 0:
        raise AssertionError(f"quasar {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def chat_body(max_tokens: int = 1, **extra: Any) -> dict[str, Any]:
    return {"model": "spark", "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens, **extra}


@contextlib.contextmanager
def pg_schema() -> Iterator[str]:
    """A fresh schema in database `test`; yields the Quasar URL that uses it, drops it after."""
    schema = f"quasar_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG}?search_path={schema}"
    finally:
        asyncio.run(_pg(f'DROP SCHEMA "{schema}" CASCADE'))


async def _pg(sql: str, dsn: str = PG) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


@contextlib.contextmanager
def redis_namespace() -> Iterator[str]:
    namespace = f"quasar-test-{uuid.uuid4().hex[:12]}"
    try:
        yield namespace
    finally:
        client = redis.Redis.from_url(REDIS)
        keys = list(client.scan_iter(f"{namespace}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def log_rows(url: str) -> list[dict[str, Any]]:
    """Every request_log row, read with the database's own driver (not Quasar's code)."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        conn.row_factory = sqlite3.Row
        try:
            rows = [dict(r) for r in conn.execute("SELECT * FROM request_log ORDER BY created")]
        finally:
            conn.close()
        for row in rows:
            for name in ("metadata", "messages", "reply", "trace"):
                if row[name] is not None:
                    row[name] = orjson.loads(row[name])
        return rows
    base, _, schema = url.partition("?search_path=")
    return [dict(r) for r in asyncio.run(_pg(f'SELECT * FROM "{schema}".request_log ORDER BY created', base))]


def table_dump(url: str) -> str:
    """Every row of every table, as text, to search for secrets."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            return "\n".join(conn.iterdump())
        finally:
            conn.close()
    base, _, schema = url.partition("?search_path=")

    async def dump() -> str:
        conn = await asyncpg.connect(base)
        try:
            tables = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = $1", schema)
            out = []
            for t in tables:
                out += [str(dict(r)) for r in await conn.fetch(f'SELECT * FROM "{schema}"."{t["tablename"]}"')]
            return "\n".join(out)
        finally:
            await conn.close()

    return asyncio.run(dump())


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, every: float = 0.05) -> Any:
    """Poll until `predicate()` is truthy; return its value, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout}s (last value: {value!r})")


def tmp_sqlite_url() -> str:
    directory = Path(os.environ.get("TMPDIR", "/tmp")) / f"quasar-store-{uuid.uuid4().hex[:8]}"
    directory.mkdir(parents=True)
    return f"sqlite:///{directory / 'quasar.db'}"


@pytest.fixture(scope="session")
def store_server() -> Iterator[Running]:
    """One Quasar on SQLite with a master key, a priced model, customer limits and a planted provider key."""
    url = tmp_sqlite_url()
    config = priced_config(api_key="${PLANTED_PROVIDER_KEY}", extra=CUSTOMER_LIMITS)
    env = {"QUASAR_DATABASE_URL": url, "QUASAR_MASTER_KEY": MASTER, "PLANTED_PROVIDER_KEY": PLANTED_PROVIDER_KEY}
    with quasar_server(config, env=env) as running:
        yield running


def database_url(running: Running) -> str:
    return running.env["QUASAR_DATABASE_URL"]


def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {MASTER}"}
