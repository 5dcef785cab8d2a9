"""Writing usage rollups: the upsert that adds a batch's sums to the stored ones, on SQLite and PostgreSQL.

The same statement serves both databases; histograms are added by `quasar_hist_add` (store/rollup.py's
`add`, registered on every SQLite connection; on PostgreSQL the function below, made by migration 0003).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text

from quasar.store import rollup

COLUMNS = (
    "id", "grouping", "span", "bucket", "model", "key_id", "customer_identifier", "requests", "prompt_tokens",
    "cached_tokens", "completion_tokens", "cost", "errors", "latency_bins", "ttft_bins",
)  # fmt: skip
_ADDED = ", ".join(f"{c} = usage_rollup.{c} + excluded.{c}" for c in rollup.SCALARS)
_HISTS = ", ".join(f"{c} = quasar_hist_add(usage_rollup.{c}, excluded.{c})" for c in ("latency_bins", "ttft_bins"))
_TAIL = f"ON CONFLICT (grouping, span, bucket, id) DO UPDATE SET {_ADDED}, {_HISTS}"
SQLITE_UPSERT = f"INSERT INTO usage_rollup ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))}) {_TAIL}"
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


def register_sqlite(dbapi_connection: Any) -> None:
    """Make `quasar_hist_add` known to one SQLite connection (sqlite3, or SQLAlchemy's aiosqlite adapter)."""
    dbapi_connection.create_function("quasar_hist_add", 2, rollup.add, deterministic=True)


def upsert(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Add rollup rows (from `rollup.rollups`) to the stored ones, in the caller's transaction."""
    if rows:
        conn.execute(UPSERT, rows)


def sqlite_params(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [tuple(row[c] for c in COLUMNS) for row in rows]
