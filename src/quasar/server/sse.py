"""Server-sent events framing for chat streams.

A stream ends with `data: [DONE]` only when it succeeded. A failure after the first chunk sends one
`data: {"error": ...}` event and ends without [DONE], so no client mistakes it for a complete answer.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson

from quasar.errors import EngineError, QuasarError

log = logging.getLogger("quasar.sse")
DONE = b"data: [DONE]\n\n"
HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def event(payload: Any) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


async def frame(first: dict[str, Any], rest: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    try:
        yield event(first)
        async for chunk in rest:
            yield event(chunk)
    except QuasarError as exc:
        yield event(exc.body())
        return
    except Exception:
        log.exception("stream failed")
        yield event(EngineError("The stream failed on the server.").body())
        return
    finally:
        await rest.aclose()
    yield DONE
