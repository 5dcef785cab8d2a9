"""The usage rollups' arithmetic: bins and their error bound, histogram sums, a batch's rollup rows, and
how a range is cut into whole days, hours and the log's own rows."""

from __future__ import annotations

import math
import random
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from quasar.store import rollup, rollup_bulk
from quasar.store.usage import fewer_rows, pieces


def nearest_rank(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(fraction * len(ordered)), 1) - 1]


def dense(values: list[float]) -> np.ndarray:
    return np.bincount([rollup.bin_of(v) for v in values], minlength=rollup.BINS)


@given(
    st.lists(st.floats(min_value=1.0, max_value=2.0**20 - 1), min_size=1, max_size=200), st.sampled_from([0.5, 0.95])
)
def test_a_percentile_is_within_the_bound_of_the_rows_own(values: list[float], fraction: float) -> None:
    true = nearest_rank(values, fraction)
    estimate = rollup.percentile(dense(values), fraction)
    assert estimate is not None
    assert abs(estimate - true) <= rollup.ERROR_BOUND * true * (1 + 1e-9)


def test_the_bound_is_what_docs_api_md_states() -> None:
    assert 0.0905 < rollup.ERROR_BOUND < 0.0906


def test_values_off_the_scale() -> None:
    assert rollup.percentile(dense([0.2, 0.0, -5.0]), 0.5) == 0.5
    assert rollup.percentile(dense([2.0**21]), 0.5) == rollup.TOP_MS
    assert rollup.percentile(np.zeros(rollup.BINS, dtype=np.int64), 0.5) is None
    assert [rollup.bin_of(v) for v in (None, "x", float("nan"), float("inf"))] == [0, 0, 0, rollup.BINS - 1]


def test_the_vector_bins_are_the_scalar_ones() -> None:
    rng = random.Random(3)
    values = [rng.lognormvariate(4, 3) for _ in range(5000)] + [2.0 ** (k / 4) for k in range(-8, 90)]
    assert rollup.bins_of(np.array(values)).tolist() == [rollup.bin_of(v) for v in values]


def test_histograms_add_as_their_counts() -> None:
    a, b = {1: 3, 40: 2**32 - 2}, {40: 5, 81: 1}
    total = rollup.decode(rollup.add(rollup.encode(a), rollup.encode(b)))
    assert total[1] == 3 and total[40] == 2**32 - 1 and total[81] == 1  # a count stops at 2^32-1
    assert rollup.add(None, rollup.encode(a)) == rollup.encode(a) and rollup.add(None, None) == b""
    assert len(rollup.encode(a)) == 2 * rollup.PAIR.itemsize  # empty bins take no room


counts = st.dictionaries(st.integers(0, rollup.BINS - 1), st.integers(1, 2**32 - 1), max_size=8)


@given(counts, counts, st.integers(0, 2), st.binary(max_size=11))
def test_a_histogram_sum_is_the_sum_of_the_counts_however_stored(
    a: dict[int, int], b: dict[int, int], damage: int, junk: bytes
) -> None:
    """The one-bin shortcut (a stored histogram plus a row's bin) and the long way agree, and a stored value
    that is not as `encode` makes it (pairs out of order, a torn tail, junk) still adds pair by pair."""
    stored = rollup.encode(a)
    if damage == 1:
        stored = stored[5:] + stored[:5]  # out of order
    elif damage == 2:
        stored += junk
    expected: dict[int, int] = {}
    for blob in (stored, rollup.encode(b)):
        for index, count in struct.iter_unpack("<BI", blob[: len(blob) - len(blob) % 5]):
            expected[index % rollup.BINS] = expected.get(index % rollup.BINS, 0) + count
    total = rollup.add(stored, rollup.encode(b))  # in bin order, as encode makes them
    assert total == b"".join(struct.pack("<BI", i, min(expected[i], 2**32 - 1)) for i in sorted(expected))
    assert rollup.add(rollup.add(stored, b""), rollup.encode(b)) == rollup.add(stored, rollup.encode(b))


def test_one_bin_added_to_a_stored_histogram_in_every_place() -> None:
    """The writer's usual sum (a row's one bin into a stored histogram): before, between and after the stored
    bins, on one of them, and up to the count's cap."""
    for stored in ({}, {0: 1}, {5: 3, 6: 1, 7: 2**32 - 2, 40: 2, 81: 9}):
        for index in range(rollup.BINS):
            for count in (1, 2, 2**32 - 1):
                total = rollup.add(rollup.encode(stored), rollup.encode({index: count}))
                expected = {**stored, index: min(stored.get(index, 0) + count, 2**32 - 1)}
                assert total == b"".join(struct.pack("<BI", i, expected[i]) for i in sorted(expected))


def row(created: float, **extra: object) -> dict[str, object]:
    base = {
        "created": created, "model": "m", "key_id": "k", "customer_identifier": "c", "status": "ok",
        "prompt_tokens": 10, "cached_tokens": 2, "completion_tokens": 5, "cost": 0.5, "latency_ms": 100.0,
        "ttft_ms": None,
    }  # fmt: skip
    return {**base, **extra}


def test_a_batch_rolls_up_per_grouping_span_and_bucket() -> None:
    day = 86400 * 20000
    rows = [row(day + 10), row(day + 3599, status="error", ttft_ms=20.0), row(day + 3600, model="n")]
    made = rollup.rollups(rows)
    assert [r["id"] for r in made] == sorted(r["id"] for r in made)
    by = {(r["grouping"], r["span"], r["bucket"], r["model"]): r for r in made}
    first_hour = by["model", 3600, day, "m"]
    assert (first_hour["requests"], first_hour["errors"], first_hour["prompt_tokens"], first_hour["cost"]) == (
        2,
        1,
        20,
        1.0,
    )
    assert rollup.decode(first_hour["ttft_bins"]).sum() == 1 and rollup.decode(first_hour["latency_bins"]).sum() == 2
    assert by["model", 3600, day + 3600, "n"]["requests"] == 1
    assert by["key", 86400, day, "n"]["key_id"] == "k" and by["key", 86400, day, "n"]["customer_identifier"] is None
    customer_day = [r for r in made if r["grouping"] == "customer" and r["span"] == 86400]
    assert len(customer_day) == 1 and customer_day[0]["requests"] == 3 and customer_day[0]["model"] is None
    assert len(made) == 4 + 4 + 3  # model, key: 2 hours + 2 (day, model); customer: 2 hours + 1 day
    again = rollup.rollups(rows)
    assert [r["id"] for r in again] == [r["id"] for r in made]  # the same keys on every replica


def test_odd_values_count_as_nothing_rather_than_raise() -> None:
    (made, *_) = [
        r
        for r in rollup.rollups([row(100.0, cost=float("nan"), prompt_tokens="many", latency_ms=None, model=7)])
        if r["grouping"] == "model" and r["span"] == 3600
    ]
    assert made["cost"] == 0.0 and made["prompt_tokens"] == 0 and made["model"] == "7"


@given(st.floats(min_value=0, max_value=1e7), st.floats(min_value=0, max_value=1e7))
def test_pieces_cover_a_range_once_with_whole_buckets(a: float, b: float) -> None:
    since, until = sorted((a, b))
    cut = pieces(since, until, rollup.SPANS)
    position = since
    for span, start, end in cut:
        assert start == position and start < end
        if span:
            assert start % span == 0 and end % span == 0
        else:
            assert end - start < 2 * 3600  # only the ends of a range are read from the log
        position = end
    assert position == until or (since == until and cut == [])


def test_open_ranges_read_no_log_rows() -> None:
    assert pieces(-math.inf, math.inf, rollup.SPANS) == [(86400, -math.inf, math.inf)]
    assert pieces(100.0, math.inf, rollup.SPANS) == [(0, 100.0, 3600), (3600, 3600, 86400), (86400, 86400, math.inf)]


def test_the_bulk_rollups_of_migration_0003_are_the_writers() -> None:
    rng = random.Random(4)
    rows = [
        row(
            86400 * 20000 + rng.random() * 3 * 86400,
            model=rng.choice(["m", "n", None]),
            key_id=rng.choice(["k", "j"]),
            customer_identifier=rng.choice([None, "acme", "globex"]),
            status=rng.choice(["ok", "ok", "error"]),
            prompt_tokens=rng.randint(0, 900),
            cost=rng.random(),
            latency_ms=rng.lognormvariate(5, 3),
            ttft_ms=rng.choice([None, rng.lognormvariate(3, 1)]),
        )
        for _ in range(3000)
    ]
    rows += [row(100.0, cost=float("nan"), prompt_tokens="many", latency_ms=None, model=7, ttft_ms=float("inf"))]
    expected = rollup.rollups(rows)
    got = rollup_bulk.rollups([tuple(r[c] for c in rollup_bulk.COLUMNS) for r in rows])
    assert [r["id"] for r in got] == [r["id"] for r in expected]
    for mine, theirs in zip(got, expected, strict=True):
        assert mine == {**theirs, "cost": pytest.approx(theirs["cost"], rel=1e-12)}


@given(st.floats(min_value=0, max_value=1e7), st.floats(min_value=0, max_value=1e7), st.lists(st.floats(0, 1e7)))
def test_fewer_rows_still_counts_each_moment_of_the_range_once(a: float, b: float, moments: list[float]) -> None:
    since, until = sorted((a, b))
    cut = fewer_rows(pieces(since, until, rollup.SPANS), rollup.SPANS)
    for t in [*moments, since, until, math.nextafter(until, 0)]:
        assert sum(sign for _, start, end, sign in cut if start <= t < end) == (since <= t < until)
    for span, start, end, sign in cut:
        assert sign == 1 or (span == 3600 and start % 3600 == 0 and end % 3600 == 0)


def test_most_of_a_day_is_read_as_the_day_less_its_other_hours() -> None:
    day = 86400 * 20000
    cut = fewer_rows(pieces(day + 3.5 * 3600, math.inf, rollup.SPANS), rollup.SPANS)
    assert cut == [
        (0, day + 3.5 * 3600, day + 4 * 3600, 1),
        (86400, day, day + 86400, 1),
        (3600, day, day + 4 * 3600, -1),
        (86400, day + 86400, math.inf, 1),
    ]
    few = fewer_rows(pieces(day + 20.5 * 3600, day + 86400 * 2, rollup.SPANS), rollup.SPANS)
    assert few == [
        (0, day + 20.5 * 3600, day + 21 * 3600, 1),
        (3600, day + 21 * 3600, day + 86400, 1),
        (86400, day + 86400, day + 2 * 86400, 1),
    ]
