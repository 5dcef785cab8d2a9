"""One parser for the times clients and operators write: epoch seconds, ISO 8601, or a duration (30d, 12h).

Used by the admin API (`expires`), the usage API (`from`, `to`) and the CLI (`--expires`, `--since`, ...).
"""

from __future__ import annotations

import math
import re
import time
from datetime import datetime
from typing import Literal

from quasar.errors import InvalidRequest

_DURATION = re.compile(r"^(\d{1,12})([smhdw])$")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# What datetime can show: 0001-01-01 to 9999-12-31 (UTC). Anything past it is a typo, not a time.
EARLIEST = -62135596800.0
LATEST = 253402300799.0


def parse_time(
    value: float | int | str | None,
    param: str,
    *,
    durations: Literal["ahead", "back"] | None = None,
    now: float | None = None,
) -> float | None:
    """`value` as epoch seconds; None for None or "".

    Accepts a number (epoch seconds), a numeric string (the same), an ISO 8601 time (local time when it names
    no zone) and, when `durations` says which way, a duration from now: `ahead` (an expiry) or `back` (a start).
    Anything else, or a time outside years 1 to 9999, is an InvalidRequest naming `param`.
    """
    if value is None or value == "":
        return None
    moment: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        moment = float(value) if not isinstance(value, int) or abs(value) <= LATEST else math.inf
    elif isinstance(value, str):
        text = value.strip()
        match = _DURATION.match(text) if durations else None
        if match:
            span = int(match.group(1)) * _UNITS[match.group(2)]
            base = time.time() if now is None else now
            moment = base + span if durations == "ahead" else base - span
        elif _NUMBER.match(text):
            moment = float(text)
        else:
            try:
                parsed = datetime.fromisoformat(text)
            except ValueError:
                pass
            else:
                try:
                    moment = parsed.timestamp() if parsed.tzinfo else parsed.astimezone().timestamp()
                except (OverflowError, OSError, ValueError):
                    moment = math.inf
    if moment is None or not (EARLIEST <= moment <= LATEST):  # also refuses NaN and infinities
        forms = "epoch seconds or an ISO 8601 time"
        if durations:
            forms = "epoch seconds, an ISO 8601 time or a duration such as 30d"
        raise InvalidRequest(f"Invalid value for '{param}': use {forms}.", param=param)
    return moment
