"""Request log rows: batched inserts (idempotent by row id), reads by request id and by filter."""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import JSON, Select, String, and_, any_, bindparam, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncEngine

from quasar.store import rollup, rollup_sql
from quasar.store.database import sqlite_pragmas
from quasar.store.schema import plain, request_log

# Rows per SQLite INSERT: 64, then the remainder's binary digits (32, 16, ... 1). Each distinct row count
# is its own prepared statement in sqlite3's statement cache (128 kept); with every count up to the batch
# size in use, that cache grew the process by up to ~100 MB under load. Now at most 7 are ever prepared.
SQLITE_CHUNK = 64


async def insert_rows(engine: AsyncEngine, rows: list[dict[str, Any]]) -> None:
    """Insert rows and add them to the usage rollups, in one transaction, through SQLAlchemy (PostgreSQL,
    and SQLite with no file: a SQLite file gets `SqliteLog`); a row already there (same id) is skipped and
    not counted again, so a retry is safe."""
    if not rows:
        return
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(request_log).on_conflict_do_nothing(index_elements=["id"])
    made = rollup.rollups(rows)  # before the transaction: no Python work while it holds row locks
    ids = [row.get("id") for row in rows]
    # The rows already there, asked first: INSERT ... RETURNING over many rows cost ~40 us of CPU a row
    # more than this query and the driver's executemany (SQLAlchemy renders it as one statement per size).
    if engine.dialect.name == "postgresql":
        there = select(request_log.c.id).where(request_log.c.id == any_(bindparam("ids", type_=ARRAY(String))))
    else:
        there = select(request_log.c.id).where(request_log.c.id.in_(bindparam("ids", expanding=True)))
    async with engine.begin() as conn:
        stored = {row[0] for row in await conn.execute(there, {"ids": ids})}
        await conn.execute(statement, rows)
        inserted = {i for i in ids if i not in stored}
        await conn.run_sync(rollup_sql.upsert, _counted(rows, inserted, made, rollup.rollups))


def _counted(
    rows: list[dict[str, Any]], inserted: set[Any], made: list[Any], make: Callable[..., list[Any]]
) -> list[Any]:
    """The rollups of the rows just inserted: `made` (`make` of every row) unless some were there already."""
    if len(inserted) == len(rows):
        return made
    return make(row for row in rows if row.get("id") in inserted)


class SqliteLog:
    """Request-log inserts into SQLite on a thread of their own, over a plain sqlite3 connection.

    Through SQLAlchemy's async engine and aiosqlite a one-row batch cost ~2 ms of CPU and a dozen hops
    between threads (pool pre-ping, begin, execute, commit, reset), each waking the event loop. Serving
    a local model that ran during nearly every request's prefill: llama.cpp's threads lost their cores
    and time to first token rose by ~13 ms when requests came back to back. Here a batch is one hop to
    this thread and one back, and one transaction of multi-row INSERTs.

    One multi-row INSERT per chunk, not executemany: the sqlite3 module gives up and retakes the GIL
    around every row's step, and each retake can wait out the 5 ms switch interval on a busy process.
    The statements' parameters are made on the event loop: Python work on this thread would hold the
    GIL against the loop, which then waits out the switch interval itself.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="quasar-sqlite-log")
        self._conn: sqlite3.Connection | None = None

    async def insert(self, rows: list[dict[str, Any]]) -> None:
        """Insert rows and add them to the usage rollups, in one transaction; a row already there (same id)
        is skipped and not counted again, so a retry is safe."""
        if rows:
            statements = [
                (_sqlite_insert(size), _sqlite_params(rows[start : start + size])) for start, size in _chunks(len(rows))
            ]
            made = rollup.rollup_values(rows)
            await asyncio.get_running_loop().run_in_executor(self._thread, self._execute, statements, rows, made)

    def _execute(
        self, statements: list[tuple[str, tuple[Any, ...]]], rows: list[dict[str, Any]], made: list[tuple[Any, ...]]
    ) -> None:
        if self._conn is None:  # opened, used and closed on this one thread
            self._conn = sqlite3.connect(self.path, isolation_level=None)
            sqlite_pragmas(self._conn)
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            inserted: set[Any] = set()
            for sql, params in statements:
                inserted.update(row[0] for row in conn.execute(sql, params).fetchall())
            rollup_sql.sqlite_upsert(conn, _counted(rows, inserted, made, rollup.rollup_values))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._close)
        self._thread.shutdown(wait=False)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _chunks(count: int) -> list[tuple[int, int]]:
    """(start, size) pieces of `count` rows, every size one of 64, 32, 16, 8, 4, 2, 1."""
    pieces, start, size = [], 0, SQLITE_CHUNK
    while start < count:
        if count - start >= size:
            pieces.append((start, size))
            start += size
        else:
            size //= 2
    return pieces


# sqlite3 binds exact ints, floats and strs as they are, but first looks for an adapter for anything else (a
# key built, two attribute lookups that fail): for None, bool and bytes, ~10 of a log row's 26 values, that
# was ~17K instructions a row. Adapters registered for them are found at once, and bind what they bound
# before: None as NULL (`{}.get` is a C function that returns None), bool as its int, bytes as a blob.
sqlite3.register_adapter(type(None), {}.get)
sqlite3.register_adapter(bool, int)
sqlite3.register_adapter(bytes, bytes)

_COLUMNS = tuple(c.name for c in request_log.columns)
_JSON_AT = tuple(i for i, c in enumerate(request_log.columns) if isinstance(c.type, JSON))


def _sqlite_params(rows: list[dict[str, Any]]) -> tuple[Any, ...]:
    """The rows' values in `_COLUMNS` order, JSON columns as text: a row's values taken in one C-level
    map, not a Python call per column (that was ~40K instructions a row)."""
    params: list[Any] = []
    for row in rows:
        base = len(params)
        params.extend(map(row.get, _COLUMNS))
        for at in _JSON_AT:
            value = params[base + at]
            if value is not None:
                params[base + at] = orjson.dumps(value).decode()
    return tuple(params)


@functools.lru_cache(maxsize=16)
def _sqlite_insert(rows: int) -> str:
    """ON CONFLICT (id) DO NOTHING, not INSERT OR IGNORE: OR IGNORE also skips, without a word, a row that
    breaks a NOT NULL constraint, which must instead fail for the writer to sanitise it."""
    one = "(" + ",".join("?" * len(_COLUMNS)) + ")"
    values = ",".join([one] * rows)
    return f"INSERT INTO request_log ({','.join(_COLUMNS)}) VALUES {values} ON CONFLICT (id) DO NOTHING RETURNING id"


async def get_request(engine: AsyncEngine, request_id: str) -> dict[str, Any] | None:
    query = select(request_log).where(request_log.c.request_id == request_id).order_by(request_log.c.created.desc())
    async with engine.connect() as conn:
        row = (await conn.execute(query.limit(1))).mappings().first()
    return plain(row) if row else None


@dataclass(frozen=True)
class LogFilter:
    key_id: str | None = None
    customer_identifier: str | None = None
    model: str | None = None
    status: str | None = None
    since: float | None = None
    until: float | None = None

    def apply(self, query: Select) -> Select:
        c = request_log.c
        for column, value in (
            (c.key_id, self.key_id),
            (c.customer_identifier, self.customer_identifier),
            (c.model, self.model),
            (c.status, self.status),
        ):
            if value is not None:
                query = query.where(column == value)
        if self.since is not None:
            query = query.where(c.created >= self.since)
        if self.until is not None:
            query = query.where(c.created < self.until)
        return query


async def recent(engine: AsyncEngine, where: LogFilter, limit: int) -> list[dict[str, Any]]:
    """The newest `limit` rows matching, oldest first."""
    query = where.apply(select(request_log)).order_by(request_log.c.created.desc()).limit(limit)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [plain(r) for r in reversed(rows)]


# The columns a page of the log lists; the messages, reply and trace are read one row at a time.
LISTED = tuple(c for c in request_log.columns if c.name not in ("messages", "reply", "trace"))


def cursor_of(row: dict[str, Any]) -> str:
    """The opaque cursor that continues a page after `row`: its time and id."""
    return f"{row['created']!r}_{row['id']}"


def parse_cursor(text: str) -> tuple[float, str]:
    """(created, id) from `cursor_of`; ValueError for anything else."""
    created, sep, row_id = text.partition("_")
    if not sep or not row_id.isalnum() or len(row_id) > 32:
        raise ValueError(text)
    return float(created), row_id


async def page(
    engine: AsyncEngine, where: LogFilter, limit: int, after: tuple[float, str] | None = None
) -> tuple[list[dict[str, Any]], bool]:
    """Up to `limit` rows matching, newest first, older than the cursor `after`; and whether more follow.

    Keyset paging on (created, id): a deep page costs what the first one does."""
    c = request_log.c
    query = where.apply(select(*LISTED))
    if after is not None:
        created, row_id = after
        query = query.where(or_(c.created < created, and_(c.created == created, c.id < row_id)))
    query = query.order_by(c.created.desc(), c.id.desc()).limit(limit + 1)
    async with engine.connect() as conn:
        rows = [plain(r) for r in (await conn.execute(query)).mappings().all()]
    return rows[:limit], len(rows) > limit
