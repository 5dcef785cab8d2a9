"""Usage by model, key or customer over a time range, and per time bucket: requests, tokens, cost, errors,
p50/p95 latency and time to first token.

Read from the usage rollups (store/rollup.py) wherever they hold what a query asks: a range is cut into
whole days, whole hours at its ends, and the rows of the request log itself for the parts of an hour
left at each end (`pieces`). A query the rollups cannot answer (a `status` filter, minute buckets, a
customer together with a key or a model) reads the request log. Either way the percentiles are those
of rollup.py's bins, so an answer does not depend on where it was read from.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import Select, literal, select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from quasar.store import rollup
from quasar.store.logs import LogFilter
from quasar.store.schema import request_log, usage_rollup

GROUPS = {"model": "model", "key": "key_id", "customer": "customer_identifier"}
BUCKETS = {"minute": 60, "hour": 3600, "day": 86400}
_FILTERED = ("model", "key_id", "customer_identifier")
# requests, prompt_tokens, cached_tokens, completion_tokens, cost, errors: the columns of _Sums.scalars
_LOG_SCALARS = 6


def grouping_for(where: LogFilter, group_by: str | None) -> str | None:
    """The rollup grouping that holds every column the query filters or groups by; None if none does."""
    if where.status is not None:
        return None
    used = {GROUPS[group_by]} if group_by else set()
    used |= {name for name in _FILTERED if getattr(where, name) is not None}
    for grouping, columns in rollup.GROUPINGS.items():  # the smallest first
        if used <= set(columns):
            return grouping
    return None


def pieces(since: float, until: float, spans: tuple[int, ...]) -> list[tuple[int, float, float]]:
    """[since, until) cut into (span, start, end): whole buckets of the largest span that fits, then of
    the next at the two ends, and what is left (span 0) read from the request log. Infinite ends stay."""
    if not since < until:
        return []
    if not spans:
        return [(0, since, until)]
    span, smaller = spans[0], spans[1:]
    start = since if math.isinf(since) else math.ceil(since / span) * span
    end = until if math.isinf(until) else math.floor(until / span) * span
    start += span if start < since else 0  # since / span rounded to a whole number from above
    end -= span if end > until else 0
    if not start < end:
        return pieces(since, until, smaller)
    return [*pieces(since, start, smaller), (span, start, end), *pieces(end, until, smaller)]


def fewer_rows(cut: list[tuple[int, float, float]], spans: tuple[int, ...]) -> list[tuple[int, float, float, int]]:
    """`pieces` as (span, start, end, sign): a piece of small buckets that fills more than half of one larger
    bucket is read as that bucket (+1) less the small buckets of it outside the piece (-1), which is fewer
    rows. A larger bucket's row is the sum of its smaller ones exactly (a log row adds to both at once)."""
    out: list[tuple[int, float, float, int]] = []
    for span, start, end in cut:
        larger = [s for s in spans if s > span and s % span == 0] if span else []
        outer = larger[-1] if larger else 0  # the next larger span
        if outer and not (math.isinf(start) or math.isinf(end)):
            first = start // outer * outer
            if end <= first + outer and (end - start) / span > (outer / span + 1) / 2:
                out.append((outer, first, first + outer, 1))
                out += [(span, a, b, -1) for a, b in ((first, start), (end, first + outer)) if a < b]
                continue
        out.append((span, start, end, 1))
    return out


class _Sums:
    """Totals per (time, group) of the parts read (rollup rows, log rows), kept as arrays until `totals`: a
    part's rows carry their bucket's start time and their group's code, and only `totals` finds the slots."""

    def __init__(self, size: int | None) -> None:
        self.ttft = size is not None  # a timeseries: times and time-to-first-token; else usage: neither
        self.step = size or 1
        self.groups: dict[Any, int] = {}  # group value -> code
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (times, group codes, scalars)
        # (part, row in the part, bin, count) for each histogram
        self.bins: dict[str, list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]] = {"latency": [], "ttft": []}
        if not self.ttft:
            del self.bins["ttft"]

    def add(self, times: np.ndarray, groups: Sequence[Any], scalars: np.ndarray) -> int:
        """A part's rows: their times, groups and scalars; returns the part's number for its histograms."""
        index = self.groups
        codes = np.fromiter((index.setdefault(g, len(index)) for g in groups), dtype=np.int64, count=len(groups))
        self.parts.append((times, codes, scalars))
        return len(self.parts) - 1

    def add_bins(self, name: str, part: int, rows: np.ndarray, bins: np.ndarray, counts: np.ndarray) -> None:
        self.bins[name].append((part, rows, bins, counts))

    def add_blobs(self, name: str, part: int, blobs: Sequence[bytes], signs: np.ndarray) -> None:
        """Stored histograms of a part's rows, each added (sign +1) or taken off (-1)."""
        lengths = np.fromiter(map(len, blobs), dtype=np.intp, count=len(blobs)) // rollup.PAIR.itemsize
        pairs = np.frombuffer(b"".join(blobs), dtype=rollup.PAIR)
        rows = np.repeat(np.arange(len(blobs)), lengths)
        self.add_bins(name, part, rows, pairs["bin"].astype(np.intp), pairs["count"].astype(np.int64) * signs[rows])

    def totals(self) -> tuple[list[tuple[Any, Any]], np.ndarray, dict[str, np.ndarray]]:
        """(time, group) of each slot, in time order and then by the group's text; the scalars per slot; and
        each histogram's bin counts per slot."""
        if not self.parts:
            return [], np.zeros((0, _LOG_SCALARS)), {name: np.zeros((0, rollup.BINS)) for name in self.bins}
        times = np.concatenate([times for times, _, _ in self.parts])
        codes = np.concatenate([codes for _, codes, _ in self.parts])
        # slots in (time, str(group)) order: the groups ranked by their text, then one integer per (time, group)
        values = list(self.groups)
        order = sorted(range(len(values)), key=lambda code: str(values[code]))
        rank = np.empty(len(values), dtype=np.int64)
        rank[order] = np.arange(len(values))
        first, step, count = int(times.min()), self.step, len(values)
        keys, slot = np.unique((times - first) // step * count + rank[codes], return_inverse=True)
        slot = slot.reshape(-1)
        offsets = np.cumsum([0] + [len(codes) for _, codes, _ in self.parts]).tolist()
        size = len(keys)
        scalars = np.zeros((size, _LOG_SCALARS))
        for part, (_, _, numbers) in enumerate(self.parts):
            slots = slot[offsets[part] : offsets[part + 1]]
            for column in range(_LOG_SCALARS):
                scalars[:, column] += np.bincount(slots, weights=numbers[:, column], minlength=size)
        hists = {}
        for name, parts in self.bins.items():
            if not parts:
                hists[name] = np.zeros((size, rollup.BINS), dtype=np.int64)
                continue
            cells = np.concatenate([slot[offsets[part] + rows] * rollup.BINS + bins for part, rows, bins, _ in parts])
            counts = np.concatenate([counts for _, _, _, counts in parts])
            flat = np.bincount(cells, weights=counts, minlength=size * rollup.BINS)
            hists[name] = flat.astype(np.int64).reshape(size, rollup.BINS)
        starts = (first + keys // count * step).tolist() if self.ttft else [None] * len(keys)  # usage: no times
        made = list(zip(starts, [values[order[r]] for r in (keys % count).tolist()], strict=True))
        kept = scalars[:, 0] > 0  # a group whose rows were all in buckets taken off again has none
        if kept.all():
            return made, scalars, hists
        return (
            [k for k, keep in zip(made, kept.tolist(), strict=True) if keep],
            scalars[kept],
            {name: counts[kept] for name, counts in hists.items()},
        )


def _times(starts: Sequence[float], size: int | None) -> np.ndarray:
    """The start of the `size`-second bucket of each time (0 for all when there are no buckets)."""
    if not size:
        return np.zeros(len(starts), dtype=np.int64)
    return (np.array(starts, dtype=np.float64) // size).astype(np.int64) * size


async def _from_rollups(
    conn: AsyncConnection, sums: _Sums, grouping: str, parts: list[tuple[int, float, float, int]], where: LogFilter,
    group: str | None, size: int | None,
) -> None:  # fmt: skip
    """The rollup rows of every piece, in one statement (a UNION ALL of one primary-key range each): one
    snapshot, so that the buckets taken off are the ones their larger bucket holds while rows are written."""
    r = usage_rollup.c
    hists = [r.latency_bins, r.ttft_bins] if sums.ttft else [r.latency_bins]
    ranges = []
    for span, start, end, sign in parts:
        query = select(
            literal(sign), r.bucket, r[group] if group else r.span, r.requests, r.prompt_tokens, r.cached_tokens,
            r.completion_tokens, r.cost, r.errors, *hists,
        ).where(r.grouping == grouping, r.span == span)  # fmt: skip
        if not math.isinf(start):
            query = query.where(r.bucket >= int(start))
        if not math.isinf(end):
            query = query.where(r.bucket < int(end))
        for name in _FILTERED:
            if (value := getattr(where, name)) is not None:
                query = query.where(r[name] == value)
        ranges.append(query)
    rows = (await conn.execute(union_all(*ranges) if len(ranges) > 1 else ranges[0])).all()
    if not rows:
        return
    columns = list(zip(*rows, strict=True))
    signs = np.array(columns[0], dtype=np.int64)
    groups = columns[2] if group else [None] * len(rows)
    scalars = np.array(columns[3:9], dtype=np.float64).T * signs[:, None]
    part = sums.add(_times(columns[1], size), groups, scalars)
    sums.add_blobs("latency", part, columns[9], signs)
    if sums.ttft:
        sums.add_blobs("ttft", part, columns[10], signs)


async def _from_log(
    conn: AsyncConnection, sums: _Sums, piece: tuple[int, float, float], where: LogFilter, group: str | None,
    size: int | None,
) -> None:  # fmt: skip
    _, start, end = piece
    c = request_log.c
    bounded = dataclasses.replace(
        where, since=None if math.isinf(start) else start, until=None if math.isinf(end) else end
    )
    query: Select = bounded.apply(
        select(
            c.created, c[group] if group else c.attempts, c.prompt_tokens, c.cached_tokens, c.completion_tokens,
            c.cost, c.status, c.latency_ms, c.ttft_ms,
        )
    )  # fmt: skip
    rows = (await conn.execute(query)).all()
    if not rows:
        return
    columns = list(zip(*rows, strict=True))
    scalars = np.array(
        [(1, row[2] or 0, row[3] or 0, row[4] or 0, row[5] or 0.0, row[6] != "ok") for row in rows], dtype=np.float64
    )
    part = sums.add(_times(columns[0], size), columns[1] if group else [None] * len(rows), scalars)
    every = np.arange(len(rows))
    ones = np.ones(len(rows), dtype=np.int64)
    latency = np.array(columns[7], dtype=np.float64)
    sums.add_bins("latency", part, every, rollup.bins_of(latency), ones)
    if sums.ttft:
        ttft = np.array([np.nan if value is None else value for value in columns[8]], dtype=np.float64)
        streamed = ~np.isnan(ttft)
        sums.add_bins("ttft", part, every[streamed], rollup.bins_of(ttft[streamed]), ones[streamed])


async def _gather(
    engine: AsyncEngine, where: LogFilter, group_by: str | None, size: int | None
) -> tuple[list[tuple[Any, Any]], Any, dict[str, np.ndarray]]:
    """Totals per (bucket start or None, group or None) of the rows `where` selects."""
    group = GROUPS[group_by] if group_by else None
    grouping = grouping_for(where, group_by)
    since = -math.inf if where.since is None else where.since
    until = math.inf if where.until is None else where.until
    spans = () if grouping is None else tuple(s for s in rollup.SPANS if size is None or s <= size and size % s == 0)
    sums = _Sums(size)
    cut = fewer_rows(pieces(since, until, spans), spans)
    async with engine.connect() as conn:
        for span, start, end, _ in cut:
            if span == 0:
                await _from_log(conn, sums, (0, start, end), where, group, size)
        if grouping is not None and (parts := [piece for piece in cut if piece[0]]):
            await _from_rollups(conn, sums, grouping, parts, where, group, size)
    return sums.totals()


def _columns(scalars: np.ndarray) -> tuple[list[Any], ...]:
    """Each slot's requests, prompt, cached and completion tokens, cost and errors, as the API answers them."""
    requests, prompt, cached, completion, errors = scalars[:, [0, 1, 2, 3, 5]].astype(np.int64).T.tolist()
    return requests, prompt, cached, completion, scalars[:, 4].tolist(), errors


async def usage(engine: AsyncEngine, group_by: str, where: LogFilter) -> list[dict[str, Any]]:
    """One row per group over the range `where` selects, most requests first."""
    keys, scalars, hists = await _gather(engine, where, group_by, None)
    p50, p95 = (rollup.percentiles(hists["latency"], f) for f in (0.5, 0.95))
    out = [
        {
            group_by: group,
            "requests": n,
            "prompt_tokens": p,
            "cached_tokens": c,
            "completion_tokens": o,
            "total_tokens": p + o,
            "cost": cost,
            "errors": e,
            "p50_latency_ms": l50,
            "p95_latency_ms": l95,
        }
        for (_, group), n, p, c, o, cost, e, l50, l95 in zip(keys, *_columns(scalars), p50, p95, strict=True)
    ]
    out.sort(key=lambda r: (-r["requests"], str(r[group_by])))
    return out


async def timeseries(engine: AsyncEngine, bucket: str, group_by: str | None, where: LogFilter) -> list[dict[str, Any]]:
    """Per time bucket (and per group when `group_by` is set): requests, tokens, cost, errors, and the
    p50/p95 of latency and time to first token. Oldest bucket first, then by the group's text (the order
    of the slots)."""
    keys, scalars, hists = await _gather(engine, where, group_by, BUCKETS[bucket])
    lat50, lat95 = (rollup.percentiles(hists["latency"], f) for f in (0.5, 0.95))
    ttft50, ttft95 = (rollup.percentiles(hists["ttft"], f) for f in (0.5, 0.95))
    requests, prompt, _, completion, cost, errors = _columns(scalars)
    return [
        {
            "time": start,
            "group": group,
            "requests": n,
            "prompt_tokens": p,
            "completion_tokens": o,
            "total_tokens": p + o,
            "cost": c,
            "errors": e,
            "p50_latency_ms": l50,
            "p95_latency_ms": l95,
            "p50_ttft_ms": t50,
            "p95_ttft_ms": t95,
        }
        for (start, group), n, p, o, c, e, l50, l95, t50, t95 in zip(
            keys, requests, prompt, completion, cost, errors, lat50, lat95, ttft50, ttft95, strict=True
        )
    ]


async def spent_since(engine: AsyncEngine, by: str, since: float) -> dict[str, float]:
    """USD spent per key id or per customer since a time: read as `usage` reads it (the rollups, and the log
    for the part of an hour at `since`), so a start-up reads a few thousand rows, not a month of the log."""
    keys, scalars, _ = await _gather(engine, LogFilter(since=since), by, None)
    costs = scalars[:, rollup.SCALARS.index("cost")].tolist()
    return {str(group): cost for (_, group), cost in zip(keys, costs, strict=True) if group is not None}
