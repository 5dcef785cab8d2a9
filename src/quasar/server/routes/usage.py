"""Reading the request log back: GET /v1/requests/{id} and GET /v1/usage."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from quasar.auth.principal import Principal
from quasar.errors import InvalidRequest, NotFound
from quasar.server.responses import JSON
from quasar.store.logs import LogFilter, get_request
from quasar.store.usage import GROUPS, usage
from quasar.timeparse import parse_time

router = APIRouter(prefix="/v1")


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


@router.get("/usage", summary="Requests, tokens, cost, errors and latency by model, key or customer")
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
