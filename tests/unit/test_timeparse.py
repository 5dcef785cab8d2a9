"""One parser for times: the admin API's expires, the usage API's from/to and the CLI read them alike."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from quasar.auth.managed import parse_expiry
from quasar.errors import InvalidRequest
from quasar.timeparse import parse_time

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1700000123, 1700000123.0),
        (1700000123.5, 1700000123.5),
        ("1700000123", 1700000123.0),
        (" 1700000123.25 ", 1700000123.25),
        ("2023-11-14T22:13:20+00:00", NOW),
        ("2023-11-14T22:13:20Z", NOW),
        (None, None),
        ("", None),
    ],
)
def test_epoch_and_iso_8601(value: object, expected: float | None) -> None:
    assert parse_time(value, "from") == expected  # type: ignore[arg-type]
    assert parse_expiry(value, now=NOW) == expected  # type: ignore[arg-type]


def test_a_time_without_zone_is_local() -> None:
    local = datetime(2030, 5, 6, 7, 8, 9).astimezone().timestamp()
    assert parse_time("2030-05-06T07:08:09", "to") == local


def test_durations_only_where_asked() -> None:
    assert parse_time("30d", "expires", durations="ahead", now=NOW) == NOW + 30 * 86400
    assert parse_time("2h", "--since", durations="back", now=NOW) == NOW - 7200
    assert parse_expiry("15m", now=NOW) == NOW + 900
    with pytest.raises(InvalidRequest) as caught:
        parse_time("30d", "from")
    assert caught.value.param == "from" and "'from'" in caught.value.message


@pytest.mark.parametrize(
    "value",
    ["whenever", "nan", "inf", "-inf", "1e400", 1e400, float("nan"), 10**400, 1e30, "99999999999999d", "1_000", True],
)
def test_bad_times_are_a_400_naming_the_field(value: object) -> None:
    for param in ("expires", "to"):
        with pytest.raises(InvalidRequest) as caught:
            parse_time(value, param, durations="ahead" if param == "expires" else None)  # type: ignore[arg-type]
        assert caught.value.status == 400 and caught.value.param == param


def test_the_range_is_what_a_date_can_show() -> None:
    assert parse_time("9999-12-31T23:59:59+00:00", "to") == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()
    assert parse_time("0001-01-01T00:00:00+00:00", "from") == datetime(1, 1, 1, tzinfo=UTC).timestamp()
