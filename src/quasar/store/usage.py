"""Usage by model, key or customer over a time range: requests, tokens, cost, errors, p50/p95 latency."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Integer, case, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from quasar.store.logs import LogFilter
from quasar.store.schema import request_log

GROUPS = {"model": "model", "key": "key_id", "customer": "customer_identifier"}


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of sorted values."""
    if not values:
        return None
    rank = max(int(-(-fraction * len(values) // 1)) - 1, 0)
    return values[min(rank, len(values) - 1)]


async def usage(engine: AsyncEngine, group_by: str, where: LogFilter) -> list[dict[str, Any]]:
    c = request_log.c
    column = c[GROUPS[group_by]]
    totals = where.apply(
        select(
            column.label("group"),
            func.count().label("requests"),
            func.coalesce(func.sum(c.prompt_tokens), 0).label("prompt_tokens"),
            func.coalesce(func.sum(c.cached_tokens), 0).label("cached_tokens"),
            func.coalesce(func.sum(c.completion_tokens), 0).label("completion_tokens"),
            func.coalesce(func.sum(c.cost), 0.0).label("cost"),
            func.sum(case((c.status != "ok", 1), else_=0).cast(Integer)).label("errors"),
        )
    ).group_by(column)
    latencies = where.apply(select(column.label("group"), c.latency_ms)).order_by(column, c.latency_ms)
    async with engine.connect() as conn:
        rows = (await conn.execute(totals)).mappings().all()
        by_group: dict[Any, list[float]] = {}
        for group, latency in (await conn.execute(latencies)).all():
            by_group.setdefault(group, []).append(float(latency))
    out = []
    for row in rows:
        values = by_group.get(row["group"], [])
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
                "p50_latency_ms": percentile(values, 0.5),
                "p95_latency_ms": percentile(values, 0.95),
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


BUCKETS = {"minute": 60, "hour": 3600, "day": 86400}


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
    start = _bucket_start(engine, BUCKETS[bucket]).label("time")
    column = c[GROUPS[group_by]].label("group") if group_by else None
    keys = [start] if column is None else [start, column]
    totals = where.apply(
        select(
            *keys,
            func.count().label("requests"),
            func.coalesce(func.sum(c.prompt_tokens), 0).label("prompt_tokens"),
            func.coalesce(func.sum(c.completion_tokens), 0).label("completion_tokens"),
            func.coalesce(func.sum(c.cost), 0.0).label("cost"),
            func.sum(case((c.status != "ok", 1), else_=0).cast(Integer)).label("errors"),
        )
    ).group_by(*keys)
    samples = where.apply(select(*keys, c.latency_ms, c.ttft_ms))
    latency: dict[tuple[Any, ...], list[float]] = {}
    ttft: dict[tuple[Any, ...], list[float]] = {}
    async with engine.connect() as conn:
        rows = (await conn.execute(totals)).mappings().all()
        for *key, lat, first in (await conn.execute(samples)).all():
            ident = (int(key[0]), key[1] if column is not None else None)
            latency.setdefault(ident, []).append(float(lat))
            if first is not None:
                ttft.setdefault(ident, []).append(float(first))
    out = []
    for row in rows:
        ident = (int(row["time"]), row["group"] if column is not None else None)
        lat, first = sorted(latency.get(ident, [])), sorted(ttft.get(ident, []))
        out.append(
            {
                "time": ident[0],
                "group": ident[1],
                "requests": int(row["requests"]),
                "prompt_tokens": int(row["prompt_tokens"]),
                "completion_tokens": int(row["completion_tokens"]),
                "total_tokens": int(row["prompt_tokens"]) + int(row["completion_tokens"]),
                "cost": float(row["cost"]),
                "errors": int(row["errors"] or 0),
                "p50_latency_ms": percentile(lat, 0.5),
                "p95_latency_ms": percentile(lat, 0.95),
                "p50_ttft_ms": percentile(first, 0.5),
                "p95_ttft_ms": percentile(first, 0.95),
            }
        )
    out.sort(key=lambda r: (r["time"], str(r["group"])))
    return out
