"""Seed 003's `request_breakdown`: the summary of one request, plus Quasar's routing trace.

In a body it is the `request_breakdown` field; in a stream it is the last chunk, id `request_breakdown`,
in the seed's shape. `full_request` never carries customer credentials.
"""

from __future__ import annotations

import time
from typing import Any

from quasar.api.chat import ChatRequest
from quasar.api.gateway import SECRET_FIELDS
from quasar.gateway.trace import Trace


def summary(
    trace: Trace, request: ChatRequest, completion_message: dict[str, Any], *, cached: bool = False
) -> dict[str, Any]:
    """The breakdown of the request that `trace` followed, for the caller who sent `request`."""
    cost = trace.cost
    price = trace.price
    return {
        "prompt_tokens": cost.prompt_tokens if cost else 0,
        "completion_tokens": cost.completion_tokens if cost else 0,
        "cost": cost.usd if cost else 0.0,
        "cost_estimated": cost.estimated if cost else True,
        "prompt_messages": [m.model_dump(exclude_unset=True, by_alias=True) for m in request.messages],
        "completion_message": completion_message,
        "model": trace.model,
        "deployment": trace.deployment,
        "provider": trace.provider,
        "cached": cached,
        "timestamp": trace.timestamp.isoformat().replace("+00:00", "Z"),
        "status_code": 200,
        "stream": request.stream,
        "latency": trace.latency(),
        "ttft": trace.ttft,
        "scores": {},
        "category": None,
        "metadata": trace.options.metadata or {},
        "customer_identifier": trace.options.customer_identifier,
        "routing_time": trace.routing_time,
        "full_request": request.model_dump(exclude_unset=True, by_alias=True, exclude=set(SECRET_FIELDS)),
        "price": price.model_dump() if price else None,
        "routing": trace.routing(),
        "engine_timings": trace.engine_timings,
        "sentiment_score": None,
    }


def stream_chunk(breakdown: dict[str, Any]) -> dict[str, Any]:
    """The last chunk of a stream, as seed 003 shows it."""
    empty = {"content": None, "role": "assistant"}
    return {
        "id": "request_breakdown",
        "choices": [
            {
                "delta": empty,
                "finish_reason": "stop",
                "request_breakdown": breakdown,
                "index": 0,
                "message": dict(empty),
            }
        ],
        "created": int(time.time()),
        "model": "extra_parameter",
        "object": "chat.completion.chunk",
        "system_fingerprint": None,
        "usage": {},
    }
