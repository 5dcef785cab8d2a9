"""Usage by model, key or customer over a time range, in total or per time bucket: requests, tokens, cost,
errors, and p50/p95 of latency and time to first token."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Integer, case, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from quasar.store.logs import LogFilter
from quasar.store.schema import request_log

GROUPS = {"model": "model", "key": "key_id", "customer": "customer_identifier"}
BUCKETS = {"minute": 60, "hour": 3600, "day": 86400}


def _totals(keys: list[ColumnElement], where: LogFilter) -> Any:
    c = request_log.c
    return where.apply(
        select(
            *keys,
            func.count().label("requests"),
            func.coalesce(func.sum(c.prompt_tokens), 0).label("prompt_tokens"),
            func.coalesce(func.sum(c.cached_tokens), 0).label("cached_tokens"),
            func.coalesce(func.sum(c.completion_tokens), 0).label("completion_tokens"),
            func.coalesce(func.sum(c.cost), 0.0).label("cost"),
            func.sum(case((c.status != "ok", 1), else_=0).cast(Integer)).label("errors"),
        )
    ).group_by(*keys)


def _percentiles(keys: list[ColumnElement], value: ColumnElement, where: LogFilter) -> Any:
    """(keys..., p50, p95) of `value` per keys, nearest-rank, ranked inside the database: only two values
    per group leave it, not every row. Rank ceil(f * n) in integers: (n + 1) / 2 and (95n + 99) / 100."""
    names = [k.name for k in keys]
    raw = [k.element for k in keys]
    ranked = (
        where.apply(
            select(
                *keys,
                value.label("value"),
                func.row_number().over(partition_by=raw, order_by=value).label("position"),
                func.count().over(partition_by=raw).label("n"),
            )
        )
        .where(value.is_not(None))
        .subquery()
    )
    r = ranked.c
    p50, p95 = (r.n + 1) // 2, (r.n * 95 + 99) // 100
    outer = [r[name] for name in names]
    return (
        select(
            *outer,
            func.max(case((r.position == p50, r.value))).label("p50"),
            func.max(case((r.position == p95, r.value))).label("p95"),
        )
        .where((r.position == p50) | (r.position == p95))
        .group_by(*outer)
    )


async def _ranks(conn: Any, keys: list[ColumnElement], value: ColumnElement, where: LogFilter) -> list[Any]:
    return list((await conn.execute(_percentiles(keys, value, where))).mappings())


def _ident(row: Any, names: list[str]) -> tuple[Any, ...]:
    return tuple(int(row[n]) if n == "time" else row[n] for n in names)


async def usage(engine: AsyncEngine, group_by: str, where: LogFilter) -> list[dict[str, Any]]:
    keys = [request_log.c[GROUPS[group_by]].label("group")]
    async with engine.connect() as conn:
        rows = (await conn.execute(_totals(keys, where))).mappings().all()
        ranks = await _ranks(conn, keys, request_log.c.latency_ms, where)
    latency = {r["group"]: (r["p50"], r["p95"]) for r in ranks}
    out = []
    for row in rows:
        p50, p95 = latency.get(row["group"], (None, None))
        out.append(
            {
                group_by: row["group"],
                "requests": int(row["requests"]),
                "prompt_tokens": int(row["prompt_tokens"]),
                "cached_tokens": int(row["cached_tokens"]),
                "completion_tokens": int(row["completion_tokens"]),
                "total_tokens": int(row["prompt_tokens"]) + int(row["completion_tokens"]),
                "cost": float(row["cost"]),
                "errors": int(row["errors"] or 0),
                "p50_latency_ms": None if p50 is None else float(p50),
                "p95_latency_ms": None if p95 is None else float(p95),
            }
        )
    out.sort(key=lambda r: (-r["requests"], str(r[group_by])))
    return out


async def spent_since(engine: AsyncEngine, by: str, since: float) -> dict[str, float]:
    """USD spent per key id or per customer since a time, from the request log."""
    c = request_log.c
    column = c[GROUPS[by]]
    query = select(column, func.sum(c.cost)).where(c.created >= since, column.is_not(None)).group_by(column)
    async with engine.connect() as conn:
        return {str(group): float(total or 0) for group, total in (await conn.execute(query)).all()}


def _bucket_start(engine: AsyncEngine, size: int) -> Any:
    """The start (epoch seconds) of the bucket each row falls in. SQLite's CAST truncates, which for
    times after 1970 is floor; PostgreSQL's CAST rounds, so it gets floor()."""
    c = request_log.c
    if engine.dialect.name == "postgresql":
        return func.floor(c.created / size) * size
    return (c.created / size).cast(Integer) * size


async def timeseries(engine: AsyncEngine, bucket: str, group_by: str | None, where: LogFilter) -> list[dict[str, Any]]:
    """Per time bucket (and per group when `group_by` is set): requests, tokens, cost, errors, and the
    p50/p95 of latency and time to first token. Oldest bucket first."""
    c = request_log.c
    keys = [_bucket_start(engine, BUCKETS[bucket]).label("time")]
    if group_by:
        keys.append(c[GROUPS[group_by]].label("group"))
    names = [k.name for k in keys]
    async with engine.connect() as conn:
        rows = (await conn.execute(_totals(keys, where))).mappings().all()
        latency = {_ident(r, names): r for r in await _ranks(conn, keys, c.latency_ms, where)}
        ttft = {_ident(r, names): r for r in await _ranks(conn, keys, c.ttft_ms, where)}
    out = []
    none = {"p50": None, "p95": None}
    for row in rows:
        ident = _ident(row, names)
        lat, first = latency.get(ident, none), ttft.get(ident, none)
        out.append(
            {
                "time": ident[0],
                "group": row["group"] if group_by else None,
                "requests": int(row["requests"]),
                "prompt_tokens": int(row["prompt_tokens"]),
                "completion_tokens": int(row["completion_tokens"]),
                "total_tokens": int(row["prompt_tokens"]) + int(row["completion_tokens"]),
                "cost": float(row["cost"]),
                "errors": int(row["errors"] or 0),
                "p50_latency_ms": lat["p50"],
                "p95_latency_ms": lat["p95"],
                "p50_ttft_ms": first["p50"],
                "p95_ttft_ms": first["p95"],
            }
        )
    out.sort(key=lambda r: (r["time"], str(r["group"])))
    return out
