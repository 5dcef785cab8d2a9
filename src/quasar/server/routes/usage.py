"""Reading the request log back: GET /v1/requests (a page), /v1/requests/{id}, /v1/usage and
/v1/usage/timeseries."""

from __future__ import annotations

import dataclasses
import time
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from quasar.auth.principal import Principal
from quasar.errors import InvalidRequest, NotFound, PermissionDenied
from quasar.server.responses import JSON
from quasar.store.logs import LogFilter, cursor_of, get_request, page, parse_cursor
from quasar.store.usage import BUCKETS, GROUPS, timeseries, usage
from quasar.timeparse import parse_time

router = APIRouter(prefix="/v1")

STATUSES = ("ok", "error", "truncated", "cancelled")
MAX_PAGE = 200
MAX_BUCKETS = 5000


def _parameter(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


# The query parameters as /openapi.json shows them; the handlers read and check them (400 naming each).
_TIME = {"anyOf": [{"type": "number"}, {"type": "string"}]}
_RANGE = [
    _parameter("from", _TIME, "Rows created at or after: epoch seconds or ISO 8601 (local time without a zone)."),
    _parameter("to", _TIME, "Rows created before: epoch seconds or ISO 8601 (local time without a zone)."),
]
_FILTERS = [
    _parameter("model", {"type": "string"}, "Only this model's rows."),
    _parameter("key", {"type": "string"}, "Only this key id's rows (a managed key may name only its own)."),
    _parameter("customer", {"type": "string"}, "Only this customer_identifier's rows."),
    _parameter("status", {"type": "string", "enum": list(STATUSES)}, "Only rows that ended so."),
    *_RANGE,
]
_GROUP_BY = {"type": "string", "enum": list(GROUPS)}
REQUESTS_PARAMETERS = [
    *_FILTERS,
    _parameter("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 50}, "Rows per page."),
    _parameter("cursor", {"type": "string"}, "The next_cursor of the previous page."),
]
USAGE_PARAMETERS = [_parameter("group_by", {**_GROUP_BY, "default": "model"}, "One row per this."), *_RANGE]
TIMESERIES_PARAMETERS = [
    _parameter("bucket", {"type": "string", "enum": list(BUCKETS), "default": "hour"}, "The time bucket."),
    _parameter("group_by", _GROUP_BY, "One row per bucket and this; none: one row per bucket."),
    *_FILTERS,
]


async def _caller(request: Request) -> Principal:
    return await request.app.state.keys.authenticate(request.headers.get("authorization"))


def _sees_all(principal: Principal) -> bool:
    """The master key, or anyone on a server with no keys, sees every row; a key sees its own."""
    return principal.is_admin or principal.key_id is None


def breakdown(row: dict[str, Any]) -> dict[str, Any]:
    """Seed 003's request_breakdown, from a stored row."""
    reply = row.get("reply") or []
    return {
        "prompt_tokens": row["prompt_tokens"],
        "completion_tokens": row["completion_tokens"],
        "cost": row["cost"],
        "prompt_messages": row.get("messages"),
        "completion_message": reply[0] if reply else None,
        "model": row["model"],
        "cached": bool(row["cache_hit"]),
        "timestamp": datetime.fromtimestamp(row["created"]).astimezone().isoformat(),
        "status_code": row["http_status"],
        "stream": bool(row["stream"]),
        "latency": row["latency_ms"] / 1000,
        "time_to_first_token": row["ttft_ms"] / 1000 if row["ttft_ms"] is not None else None,
        "routing_time": row["routing_ms"] / 1000 if row["routing_ms"] is not None else None,
        "metadata": row.get("metadata") or {},
        "price_version": row["price_version"],
    }


@router.get("/requests/{request_id}", summary="One request's log row, breakdown and trace")
async def get_one(request_id: str, request: Request) -> Response:
    principal = await _caller(request)
    row = await get_request(request.app.state.store.engine, request_id)
    if row is None or not (_sees_all(principal) or row["key_id"] == principal.key_id):
        raise NotFound(f"No logged request with id '{request_id}' (rows are written within a second).")
    return JSON({"object": "request", **row, "request_breakdown": breakdown(row)})


def _time(request: Request, name: str) -> float | None:
    return parse_time(request.query_params.get(name), name)


@router.get(
    "/usage",
    summary="Requests, tokens, cost, errors and latency by model, key or customer",
    openapi_extra={"parameters": USAGE_PARAMETERS},
)
async def get_usage(request: Request) -> Response:
    principal = await _caller(request)
    group_by = request.query_params.get("group_by", "model")
    if group_by not in GROUPS:
        raise InvalidRequest(f"Invalid value for 'group_by': use one of {', '.join(GROUPS)}.", param="group_by")
    where = LogFilter(
        key_id=None if _sees_all(principal) else principal.key_id,
        since=_time(request, "from"),
        until=_time(request, "to"),
    )
    data = await usage(request.app.state.store.engine, group_by, where)
    return JSON({"object": "list", "group_by": group_by, "data": data})


def _choice(request: Request, name: str, allowed: tuple[str, ...] | dict, default: str | None) -> str | None:
    value = request.query_params.get(name) or default
    if value is not None and value not in allowed:
        raise InvalidRequest(f"Invalid value for '{name}': use one of {', '.join(allowed)}.", param=name)
    return value


def _filter(request: Request, principal: Principal) -> LogFilter:
    """The rows a caller asked for (model, key, customer, status, from, to) among those it may see."""
    query = request.query_params
    for name in ("key", "customer", "model"):
        if "\x00" in query.get(name, ""):  # PostgreSQL text holds no NUL character
            raise InvalidRequest(f"Invalid value for '{name}': it contains a NUL character.", param=name)
    key_id = query.get("key") or None
    if not _sees_all(principal):
        if key_id is not None and key_id != principal.key_id:
            raise PermissionDenied("A key sees only its own requests.", param="key", code="not_own_key")
        key_id = principal.key_id
    return LogFilter(
        key_id=key_id,
        customer_identifier=query.get("customer") or None,
        model=query.get("model") or None,
        status=_choice(request, "status", STATUSES, None),
        since=_time(request, "from"),
        until=_time(request, "to"),
    )


def _limit(request: Request) -> int:
    text = request.query_params.get("limit", "50")
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_PAGE:
        raise InvalidRequest(f"Invalid value for 'limit': use an integer from 1 to {MAX_PAGE}.", param="limit")
    return int(text)


@router.get(
    "/requests",
    summary="A page of the request log, newest first, with filters",
    openapi_extra={"parameters": REQUESTS_PARAMETERS},
)
async def list_requests(request: Request) -> Response:
    principal = await _caller(request)
    where, limit = _filter(request, principal), _limit(request)
    after = None
    if cursor := request.query_params.get("cursor"):
        try:
            after = parse_cursor(cursor)
        except ValueError:
            message = "Invalid value for 'cursor': pass a next_cursor from a page."
            raise InvalidRequest(message, param="cursor") from None
    rows, more = await page(request.app.state.store.engine, where, limit, after)
    next_cursor = cursor_of(rows[-1]) if more else None
    return JSON({"object": "list", "data": rows, "has_more": more, "next_cursor": next_cursor})


@router.get(
    "/usage/timeseries",
    summary="Usage per minute, hour or day, optionally by model, key or customer",
    openapi_extra={"parameters": TIMESERIES_PARAMETERS},
)
async def get_timeseries(request: Request) -> Response:
    principal = await _caller(request)
    bucket = _choice(request, "bucket", BUCKETS, "hour")
    group_by = _choice(request, "group_by", GROUPS, None)
    where = _filter(request, principal)
    now = time.time()
    since = where.since if where.since is not None else now - 86400
    until = where.until if where.until is not None else now
    if until <= since:
        raise InvalidRequest("Invalid value for 'to': it must be after 'from'.", param="to")
    if (until - since) / BUCKETS[bucket] > MAX_BUCKETS:
        raise InvalidRequest(
            f"Invalid value for 'bucket': '{bucket}' makes over {MAX_BUCKETS} buckets of that range; use a larger one.",
            param="bucket",
        )
    where = dataclasses.replace(where, since=since, until=until)
    data = await timeseries(request.app.state.store.engine, bucket, group_by, where)
    return JSON(
        {
            "object": "list",
            "bucket": bucket,
            "bucket_seconds": BUCKETS[bucket],
            "group_by": group_by,
            "from": since,
            "to": until,
            "data": data,
        }
    )
