"""Rolling up many log rows at once, with numpy: what `rollup.rollups` gives, for the rows already logged.

Migration 0003 rolls up every row an older Quasar logged (a million rows is usual). `rollup.rollups` is
made for the log writer's batches of a few hundred rows and spends tens of microseconds of Python on each;
here each column is one array and each (grouping, span) one `np.unique` and a few `np.bincount`s. The rows
come as tuples in the order of `COLUMNS`; the result is the same rollup rows (ids, groups, sums and
histogram bytes), ordered by id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from quasar.store import rollup

COLUMNS = ("created", "model", "key_id", "customer_identifier", "status", "prompt_tokens", "cached_tokens",
           "completion_tokens", "cost", "latency_ms", "ttft_ms")  # fmt: skip
_GROUPED = ("model", "key_id", "customer_identifier")


def _codes(values: Sequence[Any]) -> tuple[np.ndarray, list[Any]]:
    """Each value's index among the distinct values (None, and anything not a string, as `rollup` keys it)."""
    index: dict[Any, int] = {}
    codes = np.fromiter(
        (index.setdefault(v if v is None or isinstance(v, str) else str(v), len(index)) for v in values),
        dtype=np.int64,
        count=len(values),
    )
    return codes, list(index)


def _numbers(values: Sequence[Any]) -> np.ndarray:
    """The values as floats; what is not a finite number counts as 0, as in `rollup`."""
    try:
        out = np.array(values, dtype=np.float64)
    except (TypeError, ValueError):
        out = np.array([_float(v) for v in values], dtype=np.float64)
    out[~np.isfinite(out)] = 0.0
    return out


def _milliseconds(values: Sequence[Any]) -> np.ndarray:
    """The values as floats for `rollup.bins_of`: None and what is not a number are NaN (bin 0, as `bin_of`)."""
    try:
        return np.array(values, dtype=np.float64)  # None is NaN
    except (TypeError, ValueError):
        return np.array([_float(v) for v in values], dtype=np.float64)


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return np.nan


def _hist_bytes(dense: np.ndarray) -> list[bytes]:
    """Each row of a (groups, BINS) count array as `rollup.encode` stores it."""
    groups, bins = np.nonzero(dense)  # row-major: by group, then bin
    pairs = np.empty(len(groups), dtype=rollup.PAIR)
    pairs["bin"] = bins
    pairs["count"] = np.minimum(dense[groups, bins], rollup.MAX_COUNT)
    data = pairs.tobytes()
    ends = np.cumsum(np.bincount(groups, minlength=len(dense))) * rollup.PAIR.itemsize
    starts = np.concatenate(([0], ends[:-1]))
    return [data[s:e] for s, e in zip(starts.tolist(), ends.tolist(), strict=True)]


def rollups(rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    """`rollup.rollups` of log rows given as tuples in the order of COLUMNS."""
    if not rows:
        return []
    columns = dict(zip(COLUMNS, zip(*rows, strict=True), strict=True))
    created = _numbers(columns["created"])
    codes, names = {}, {}
    for name in _GROUPED:
        codes[name], names[name] = _codes(columns[name])
    scalars = {
        "requests": np.ones(len(rows), dtype=np.int64),
        **{
            name: _numbers(columns[name]).astype(np.int64)
            for name in ("prompt_tokens", "cached_tokens", "completion_tokens")
        },
        "cost": _numbers(columns["cost"]),
        "errors": np.fromiter((s != "ok" for s in columns["status"]), dtype=np.int64, count=len(rows)),
    }
    latency = rollup.bins_of(_milliseconds(columns["latency_ms"]))
    streamed = np.fromiter((v is not None for v in columns["ttft_ms"]), dtype=bool, count=len(rows))
    ttft = rollup.bins_of(_milliseconds(columns["ttft_ms"]))
    hour = (created // rollup.SPANS[-1]).astype(np.int64) * rollup.SPANS[-1]
    out = []
    for grouping, grouped in rollup.GROUPINGS.items():
        for span in rollup.SPANS:
            bucket = hour // span * span
            key = np.stack([bucket, *(codes[name] for name in grouped)], axis=1)
            keys, group = np.unique(key, axis=0, return_inverse=True)
            group = group.reshape(-1)
            size = len(keys)
            sums = {name: np.bincount(group, weights=values, minlength=size) for name, values in scalars.items()}
            dense = np.bincount(group * rollup.BINS + latency, minlength=size * rollup.BINS)
            lat_bytes = _hist_bytes(dense.reshape(size, rollup.BINS))
            dense = np.bincount(group[streamed] * rollup.BINS + ttft[streamed], minlength=size * rollup.BINS)
            ttft_bytes = _hist_bytes(dense.reshape(size, rollup.BINS))
            values = {name: column.tolist() for name, column in sums.items()}
            for i, row_key in enumerate(keys.tolist()):
                group_of = {name: names[name][code] for name, code in zip(grouped, row_key[1:], strict=True)}
                model, key_id, customer = (group_of.get(name) for name in _GROUPED)
                out.append(
                    {
                        "id": rollup.rollup_id(grouping, span, row_key[0], model, key_id, customer),
                        "grouping": grouping,
                        "span": span,
                        "bucket": row_key[0],
                        "model": model,
                        "key_id": key_id,
                        "customer_identifier": customer,
                        **{name: int(values[name][i]) for name in rollup.SCALARS if name != "cost"},
                        "cost": values["cost"][i],
                        "latency_bins": lat_bytes[i],
                        "ttft_bins": ttft_bytes[i],
                    }
                )
    out.sort(key=lambda r: r["id"])
    return out
