"""Writing usage rollups: the upsert that adds a batch's sums to the stored ones, on SQLite and PostgreSQL.

The same statement serves both databases; histograms are added by `quasar_hist_add` (store/rollup.py's
`add`, registered on every SQLite connection; on PostgreSQL the function below, made by migration 0003).
SQLite's log writer, which holds the write lock, reads and adds instead (`sqlite_upsert`).
"""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson
from sqlalchemy import Connection, text

from quasar.store import rollup

COLUMNS = rollup.COLUMNS
_ADDED = ", ".join(f"{c} = usage_rollup.{c} + excluded.{c}" for c in rollup.SCALARS)
# A batch's histogram that is empty (its rows had no time to first token) adds nothing: no call for it.
_HISTS = ", ".join(
    f"{c} = CASE WHEN length(excluded.{c}) = 0 THEN usage_rollup.{c}"
    f" ELSE quasar_hist_add(usage_rollup.{c}, excluded.{c}) END"
    for c in ("latency_bins", "ttft_bins")
)
_TAIL = f"ON CONFLICT (grouping, span, bucket, id) DO UPDATE SET {_ADDED}, {_HISTS}"
# SQLite's log writer holds the database's write lock (BEGIN IMMEDIATE) from its inserts to its commit, so
# no one can add or change a rollup row between its read and its write: it reads the stored rows of a batch
# (one statement), adds in Python, and updates those and inserts the others; no upsert, and no call of
# quasar_hist_add from SQLite (~25K instructions each, two per rollup row).
SQLITE_STORED = "SELECT id, latency_bins, ttft_bins FROM usage_rollup WHERE id IN (SELECT value FROM json_each(?))"
SQLITE_INSERT = f"INSERT INTO usage_rollup ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
_SET = ", ".join([f"{c} = {c} + ?" for c in rollup.SCALARS] + ["latency_bins = ?", "ttft_bins = ?"])
SQLITE_UPDATE = f"UPDATE usage_rollup SET {_SET} WHERE id = ?"
UPSERT = text(f"INSERT INTO usage_rollup ({', '.join(COLUMNS)}) VALUES ({', '.join(':' + c for c in COLUMNS)}) {_TAIL}")

# (bin uint8, count uint32 little-endian) pairs, as store/rollup.py encodes them; counts capped at 2^32-1.
PG_HIST_ADD = """
CREATE OR REPLACE FUNCTION quasar_hist_add(a bytea, b bytea) RETURNS bytea LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  counts bigint[] := array_fill(0::bigint, ARRAY[256]);
  src bytea;
  i int;
  n bigint;
  out bytea := ''::bytea;
BEGIN
  FOREACH src IN ARRAY ARRAY[coalesce(a, ''::bytea), coalesce(b, ''::bytea)] LOOP
    i := 0;
    WHILE i + 5 <= length(src) LOOP
      n := get_byte(src, i + 1)::bigint + get_byte(src, i + 2)::bigint * 256
           + get_byte(src, i + 3)::bigint * 65536 + get_byte(src, i + 4)::bigint * 16777216;
      counts[get_byte(src, i) + 1] := counts[get_byte(src, i) + 1] + n;
      i := i + 5;
    END LOOP;
  END LOOP;
  FOR i IN 0..255 LOOP
    n := least(counts[i + 1], 4294967295);
    IF n > 0 THEN
      out := out || set_byte(set_byte(set_byte(set_byte(set_byte('\\x0000000000'::bytea, 0, i),
        1, (n & 255)::int), 2, ((n >> 8) & 255)::int), 3, ((n >> 16) & 255)::int), 4, ((n >> 24) & 255)::int);
    END IF;
  END LOOP;
  RETURN out;
END $$
"""


def sqlite_upsert(conn: sqlite3.Connection, values: list[tuple[Any, ...]]) -> None:
    """Add rollup rows (from `rollup.rollup_values`) to the stored ones, in the caller's transaction, which
    must hold the write lock (BEGIN IMMEDIATE)."""
    if not values:
        return
    ids = orjson.dumps([v[0] for v in values]).decode()
    stored = {row[0]: (row[1], row[2]) for row in conn.execute(SQLITE_STORED, (ids,))}
    new, updates = [], []
    for value in values:
        old = stored.get(value[0])
        if old is None:
            new.append(value)
        else:  # as quasar_hist_add would in the upsert (an empty histogram adds nothing)
            latency, ttft = value[-2:]
            sums = (rollup.add(old[0], latency), rollup.add(old[1], ttft) if ttft else old[1])
            updates.append((*value[7:-2], *sums, value[0]))
    if updates:
        conn.executemany(SQLITE_UPDATE, updates)
    if new:
        conn.executemany(SQLITE_INSERT, new)


def register_sqlite(dbapi_connection: Any) -> None:
    """Make `quasar_hist_add` known to one SQLite connection (sqlite3, or SQLAlchemy's aiosqlite adapter)."""
    dbapi_connection.create_function("quasar_hist_add", 2, rollup.add, deterministic=True)


def upsert(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Add rollup rows (from `rollup.rollups`) to the stored ones, in the caller's transaction."""
    if rows:
        conn.execute(UPSERT, rows)
