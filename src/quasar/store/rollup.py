"""Usage rollups: request-log rows summed per time bucket and group as they are written.

Each logged row adds to one rollup row per (grouping, span): the groupings are `model` (by model),
`key` (by key and model) and `customer` (by customer); the spans an hour and a day (UTC, epoch-aligned).
A rollup row holds requests, tokens, cost, errors, and latency and time-to-first-token histograms in
fixed bins, so that percentiles of any set of rollup rows are a sum of their bins away.

Bins: bin 0 is below 1 ms; bin i (1..BINS-2) holds [2^((i-1)/4), 2^(i/4)) ms; the last bin holds
2^20 ms (17.5 min) and over. A percentile is reported as its bin's geometric middle, so for a true value
v from 1 ms to 2^20 ms the estimate is within a factor 2^(1/8) of v (off by at most 9.05%); below 1 ms it
is 0.5 ms, and from 2^20 ms on it is 2^20 ms.

A histogram is stored as bytes: (bin: uint8, count: uint32 little-endian) pairs for the bins that are not
empty, in bin order; `quasar_hist_add(a, b)` adds two of them inside the database (a Python function on
SQLite connections, a PL/pgSQL one created by migration 0003 on PostgreSQL), so concurrent writers add
with an upsert and never read, modify and write back (SQLite's log writer, which holds the database's
write lock, reads and adds itself: rollup_sql.sqlite_upsert).
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import math
import struct
from collections.abc import Iterable
from typing import Any

import numpy as np
import orjson

SPANS = (86400, 3600)  # day, hour: largest first
GROUPINGS: dict[str, tuple[str, ...]] = {  # rollups() spells these out in its loop
    "model": ("model",),
    "key": ("key_id", "model"),
    "customer": ("customer_identifier",),
}
BINS = 82
TOP_MS = 2.0**20
ERROR_BOUND = 2 ** (1 / 8) - 1  # relative, for values from 1 ms to TOP_MS
PAIR = np.dtype([("bin", "u1"), ("count", "<u4")])
_PAIR = struct.Struct("<BI")  # the same pair, for the writer's plain-Python side
MAX_COUNT = 2**32 - 1
SCALARS = ("requests", "prompt_tokens", "cached_tokens", "completion_tokens", "cost", "errors")


def bin_of(ms: Any) -> int:
    """The bin of a latency in milliseconds; anything not a finite number >= 1 goes to bin 0."""
    try:
        value = float(ms)
    except (TypeError, ValueError):
        return 0
    if not value >= 1.0:  # also NaN
        return 0
    if value >= TOP_MS:
        return BINS - 1
    return min(1 + int(math.floor(4 * math.log2(value))), BINS - 2)


def bin_value(index: int) -> float:
    """What a percentile that falls in bin `index` is reported as."""
    if index <= 0:
        return 0.5
    if index >= BINS - 1:
        return TOP_MS
    return 2 ** ((index - 0.5) / 4)


def encode(counts: dict[int, int]) -> bytes:
    """Bin counts as stored: the non-empty bins' (bin, count) pairs in bin order."""
    pack = _PAIR.pack
    return b"".join(pack(b, min(n, MAX_COUNT)) for b, n in sorted(counts.items()) if n > 0 and 0 <= b < BINS)


def decode(blob: bytes | None) -> np.ndarray:
    """Stored pairs as a dense array of BINS counts."""
    dense = np.zeros(BINS, dtype=np.int64)
    if blob:
        pairs = np.frombuffer(bytes(blob), dtype=PAIR)
        np.add.at(dense, pairs["bin"].astype(np.intp) % BINS, pairs["count"].astype(np.int64))
    return dense


def add(a: bytes | None, b: bytes | None) -> bytes:
    """`quasar_hist_add`: the sum of two stored histograms (None counts as empty). Plain Python, not numpy:
    SQLite calls it on the log writer's thread for every rollup row of a batch, and numpy's per-call set-up
    cost ten times the work on histograms of a few bins."""
    if a and b and len(b) == _PAIR.size:  # the usual call: one bin added to a stored histogram
        added = _add_one(bytes(a), bytes(b))
        if added is not None:
            return added
    counts: dict[int, int] = {}
    for blob in (a, b):
        if blob:
            data = bytes(blob)
            for index, count in _PAIR.iter_unpack(data[: len(data) - len(data) % _PAIR.size]):
                index %= BINS
                counts[index] = counts.get(index, 0) + count
    return encode(counts)


def _add_one(a: bytes, b: bytes) -> bytes | None:
    """`add` for `b` holding one pair and `a` as `encode` makes them (bins increasing, in range), by slicing
    the pair in or adding to its count in place: a twentieth of the instructions of decoding and encoding.
    None for anything else (`add` does it the long way)."""
    index, count = _PAIR.unpack(b)
    bins = a[:: _PAIR.size]
    if not count or index >= BINS or len(a) % _PAIR.size or bins[-1] >= BINS or bins != bytes(sorted(set(bins))):
        return None
    at = bins.find(index)
    if at < 0:
        at = bisect.bisect(bins, index) * _PAIR.size
        return a[:at] + b + a[at:]
    start = at * _PAIR.size + 1
    total = min(int.from_bytes(a[start : start + 4], "little") + count, MAX_COUNT)
    return a[:start] + total.to_bytes(4, "little") + a[start + 4 :]


def percentile(dense: np.ndarray, fraction: float) -> float | None:
    """Nearest-rank percentile of the values counted in `dense`, as its bin's reported value."""
    total = int(dense.sum())
    if total == 0:
        return None
    rank = max(math.ceil(fraction * total), 1)
    return bin_value(int(np.searchsorted(np.cumsum(dense), rank)))


def percentiles(dense: np.ndarray, fraction: float) -> list[float | None]:
    """`percentile` of each row of a (groups, BINS) array at once."""
    if not len(dense):
        return []
    cumulative = np.cumsum(dense, axis=1)
    totals = cumulative[:, -1]
    ranks = np.maximum(np.ceil(fraction * totals), 1)
    found = (cumulative >= ranks[:, None]).argmax(axis=1)
    values = [bin_value(int(i)) for i in range(BINS)]
    return [values[i] if n else None for i, n in zip(found.tolist(), totals.tolist(), strict=True)]


def rollup_id(grouping: str, span: int, bucket: int, model: Any, key_id: Any, customer: Any) -> str:
    """The rollup row's primary key: the same for the same bucket and group on every replica."""
    ident = orjson.dumps([grouping, span, bucket, model, key_id, customer])
    return hashlib.blake2b(ident, digest_size=16).hexdigest()


@functools.lru_cache(maxsize=4096)
def _targets(hour: int, model: str | None, key_id: str | None, customer: str | None) -> tuple[tuple[Any, ...], ...]:
    """The rollup rows that rows of one hour and group add to, as their first seven columns (id, grouping,
    span, bucket, model, key_id, customer_identifier). Cached: a writer sees the same few groups batch after
    batch, and the ids' hashing was a fifth of a one-row batch's rollup work."""
    out = []
    for span in SPANS:
        bucket = hour // span * span
        for grouping, group in (
            ("model", (model, None, None)),
            ("key", (model, key_id, None)),
            ("customer", (None, None, customer)),
        ):
            out.append((rollup_id(grouping, span, bucket, *group), grouping, span, bucket, *group))
    return tuple(out)


def _number(value: Any) -> float:
    if type(value) is float:  # the usual case, without the exceptions' set-up
        return value if value - value == 0 else 0.0  # NaN and infinities count as 0
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return 0.0
    return number if math.isfinite(number) else 0.0


def _count(value: Any) -> int:
    """A token count: `int(_number(value))`, without the float for the usual small int."""
    if type(value) is int and -_EXACT <= value <= _EXACT:
        return value
    return int(_number(value))


_EXACT = 2**53  # ints up to this are floats exactly, so int(float(n)) == n


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) or value is None else str(value)


class _Sums:
    __slots__ = ("latency", "requests", "prompt_tokens", "cached_tokens", "completion_tokens", "cost", "errors", "ttft")

    def __init__(self) -> None:
        self.requests = self.prompt_tokens = self.cached_tokens = self.completion_tokens = self.errors = 0
        self.cost = 0.0
        self.latency: dict[int, int] = {}
        self.ttft: dict[int, int] = {}

    def add(self, other: _Sums) -> None:
        self.requests += other.requests
        self.prompt_tokens += other.prompt_tokens
        self.cached_tokens += other.cached_tokens
        self.completion_tokens += other.completion_tokens
        self.cost += other.cost
        self.errors += other.errors
        for mine, theirs in ((self.latency, other.latency), (self.ttft, other.ttft)):
            for index, count in theirs.items():
                mine[index] = mine.get(index, 0) + count

    def values(self) -> tuple[Any, ...]:
        """The rollup row's columns after the first seven (see `COLUMNS`)."""
        return (
            self.requests, self.prompt_tokens, self.cached_tokens, self.completion_tokens, self.cost, self.errors,
            encode(self.latency), encode(self.ttft),
        )  # fmt: skip


COLUMNS = (
    "id", "grouping", "span", "bucket", "model", "key_id", "customer_identifier", "requests", "prompt_tokens",
    "cached_tokens", "completion_tokens", "cost", "errors", "latency_bins", "ttft_bins",
)  # fmt: skip


def rollups(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rollup rows that `rows` add up to: one per (grouping, span, bucket, group), ordered by id (so
    that replicas upserting the same rollup rows lock them in the same order). Never raises on odd values:
    a number that is not one counts as 0, a latency that is not one goes to bin 0."""
    return [dict(zip(COLUMNS, values, strict=True)) for values in rollup_values(rows)]


def rollup_values(rows: Iterable[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """`rollups` as tuples in `COLUMNS` order, as the SQLite writer binds them."""
    # First per row: its hour and group, the finest a rollup row has; then each of those to its rollup rows.
    hours: dict[tuple[Any, ...], _Sums] = {}
    for row in rows:
        key = (
            int(_number(row.get("created")) // SPANS[-1]) * SPANS[-1],
            *(_text(row.get(n)) for n in ("model", "key_id", "customer_identifier")),
        )
        entry = hours.get(key)
        if entry is None:
            entry = hours[key] = _Sums()
        entry.requests += 1
        entry.prompt_tokens += _count(row.get("prompt_tokens"))
        entry.cached_tokens += _count(row.get("cached_tokens"))
        entry.completion_tokens += _count(row.get("completion_tokens"))
        entry.cost += _number(row.get("cost"))
        entry.errors += row.get("status") != "ok"
        latency, ttft = bin_of(row.get("latency_ms")), row.get("ttft_ms")
        entry.latency[latency] = entry.latency.get(latency, 0) + 1
        if ttft is not None:
            ttft_bin = bin_of(ttft)
            entry.ttft[ttft_bin] = entry.ttft.get(ttft_bin, 0) + 1
    # Each rollup row's parts: usually one (a batch of one hour and group), whose values are made once.
    parts: dict[str, tuple[tuple[Any, ...], list[_Sums]]] = {}
    for key, part in hours.items():
        for target in _targets(*key):
            found = parts.get(target[0])
            if found is None:
                parts[target[0]] = (target, [part])
            else:
                found[1].append(part)
    made: dict[int, tuple[Any, ...]] = {}
    out = []
    for ident in sorted(parts):
        target, sums = parts[ident]
        if len(sums) == 1:
            values = made.get(id(sums[0]))
            if values is None:
                values = made[id(sums[0])] = sums[0].values()
        else:
            total = _Sums()
            for part in sums:
                total.add(part)
            values = total.values()
        out.append(target + values)
    return out


def bins_of(values: np.ndarray) -> np.ndarray:
    """`bin_of` for an array of milliseconds (NaN for none)."""
    out = np.zeros(len(values), dtype=np.intp)
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = values >= 1.0
        out[ok] = np.minimum(1 + np.floor(4 * np.log2(values[ok])).astype(np.intp), BINS - 2)
        out[values >= TOP_MS] = BINS - 1
    return out
