"""Rows the database refuses: telling a refused row from a database that is away, and making it storable.

A request-log row carries what clients sent (metadata, messages) and what engines answered, so it can hold
values a database will not take: an int past 64 bits (orjson refuses it), past 2**63 (sqlite3 refuses
it) or past 2**31 in an INTEGER column (PostgreSQL), a NUL or a lone surrogate in a string, a string longer
than its VARCHAR, a value of a type nobody expected. `sanitise` makes any such row into one every
database takes; it never raises.
"""

from __future__ import annotations

import math
import sqlite3
import time
from typing import Any

from sqlalchemy import JSON, Boolean, Float, Integer, String
from sqlalchemy import exc as sa_exc

from quasar.ids import sortable_id
from quasar.store.schema import request_log

INT32 = (-(2**31), 2**31 - 1)  # PostgreSQL INTEGER
INT64 = (-(2**63), 2**63 - 1)  # SQLite INTEGER; ints in JSON beyond it become strings
MAX_DEPTH = 64  # JSON nested deeper is cut off (orjson refuses past 255)
# PostgreSQL SQLSTATE classes that blame the data, not the database: 22 data exception, 23 integrity.
DATA_SQLSTATE_CLASSES = ("22", "23")
_PYTHON_DATA_ERRORS = (TypeError, ValueError, OverflowError, RecursionError, KeyError, AttributeError)


def refused(exc: BaseException) -> bool:
    """Whether `exc` from an insert says the rows are at fault (True) rather than the database being away
    or broken (False: keep the rows and retry later)."""
    if isinstance(exc, (OSError, TimeoutError, ConnectionError)):
        return False
    if isinstance(exc, sa_exc.DBAPIError):  # reached the driver
        if exc.connection_invalidated:
            return False
        return _driver_refused(exc.orig)
    if isinstance(exc, sa_exc.StatementError):  # failed while SQLAlchemy made the parameters (orjson, types)
        return isinstance(exc.orig, _PYTHON_DATA_ERRORS)
    if isinstance(exc, sa_exc.SQLAlchemyError):
        return False
    return _driver_refused(exc)


def _driver_refused(exc: BaseException | None) -> bool:
    if exc is None:
        return False
    sqlstate = getattr(exc, "sqlstate", None) or getattr(exc.__cause__, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate:
        return sqlstate[:2] in DATA_SQLSTATE_CLASSES
    if isinstance(exc, sqlite3.Error):
        if isinstance(exc, (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.InterfaceError)):
            return True
        return isinstance(exc, sqlite3.ProgrammingError) and "binding" in str(exc).lower()
    return isinstance(exc, _PYTHON_DATA_ERRORS)


_COLUMNS = {str(c.name): c for c in request_log.columns}  # plain str: orjson refuses str subclasses as keys


def sanitise(row: Any) -> dict[str, Any]:
    """A copy of `row` that any database takes: every column present and of its type, JSON values plain.

    Strings lose NULs and lone surrogates and are cut to their column's length; numbers out of range are
    clamped (columns) or made strings (JSON); values of other types become their str(); a missing
    required value gets its type's zero (a fresh id, the current time)."""
    source = row if isinstance(row, dict) else {}
    return {name: _column(column, _get(source, name)) for name, column in _COLUMNS.items()}


def _get(row: dict[Any, Any], name: str) -> Any:
    try:
        return row.get(name)
    except Exception:
        return None


def _column(column: Any, value: Any) -> Any:
    kind = column.type
    if isinstance(kind, JSON):
        return None if value is None else json_safe(value)
    if value is not None:
        if isinstance(kind, Boolean):
            value = _boolean(value)
        elif isinstance(kind, Integer):
            value = _integer(value)
        elif isinstance(kind, Float):
            value = _float(value)
        else:
            value = _text(value, getattr(kind, "length", None) if isinstance(kind, String) else None)
    if value is None and not column.nullable:
        value = _zero(column)
    return value


def _zero(column: Any) -> Any:
    if column.name == "id":
        return sortable_id()
    if column.name == "created":
        return time.time()
    kind = column.type
    if isinstance(kind, Boolean):
        return False
    if isinstance(kind, Integer):
        return 0
    if isinstance(kind, Float):
        return 0.0
    return ""


def _boolean(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
        return bool(value)
    return None


def _integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return int(value)
    try:
        number = int(value) if isinstance(value, int) else int(float(value))
    except Exception:
        return None
    return min(max(number, INT32[0]), INT32[1])


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except Exception:
        return None
    return number if math.isfinite(number) else None


def _text(value: Any, length: int | None) -> str:
    text = value if isinstance(value, str) else _str(value)
    text = clean_str(text)
    return text[:length] if length else text


def clean_str(text: str) -> str:
    """`text` with NULs removed and lone surrogates replaced, so that UTF-8 and PostgreSQL take it."""
    if "\x00" in text:
        text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def _str(value: Any) -> str:
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__}>"


def json_safe(value: Any, depth: int = 0) -> Any:
    """`value` as plain JSON that orjson, SQLite and PostgreSQL all take."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return clean_str(value)
    if isinstance(value, int):
        return int(value) if INT64[0] <= value <= INT64[1] else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth >= MAX_DEPTH:
        return "[too deep]"
    if isinstance(value, dict):
        return {clean_str(k if isinstance(k, str) else _str(k)): json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, depth + 1) for v in value]
    return clean_str(_str(value))


def bare_row(item: Any) -> dict[str, Any]:
    """The row of a record whose own `row()` failed: its plain columns only, never its content (messages,
    reply, trace, metadata, error), and no string that holds one of its secrets."""
    secrets = getattr(item, "secrets", None) or []
    secrets = [s for s in secrets if isinstance(s, str) and s] if isinstance(secrets, (list, tuple)) else []
    row: dict[str, Any] = {}
    for name, column in _COLUMNS.items():
        if isinstance(column.type, JSON) or name == "error":
            continue
        try:
            value = getattr(item, name, None)
        except Exception:
            value = None
        if isinstance(value, str) and any(secret in value for secret in secrets):
            value = None
        row[name] = value
    row["error"] = "request log: this row could not be made in full; stored without its content"
    return sanitise(row)
