"""Server-sent events for chat streams: the framing and the response.

A stream ends with `data: [DONE]` only when it succeeded. A failure after the first chunk sends one
`data: {"error": ...}` event and ends without [DONE], so no client mistakes it for a complete answer.

The response sends its head, its first event and the rest from the request's own task. Starlette's
StreamingResponse sends from a new task inside an anyio task group whose other task watches for the
client going away: a local model's first token waited a loop turn and the group's set-up for it, and
the group cost about 47 us of CPU per stream, which adds up when a wave of streams starts and ends
together. A client that leaves is noticed by server/disconnect.py's watcher instead, the same one
that watches every request that runs long enough; it cancels the request's task.

A stream still under way when a shutdown's grace ends gets the same ending as a failure: one error
event (`server_shutting_down`) and no [DONE], written by the protocol (server/protocol.py), which
knows a stream by the mark this response leaves in its scope.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from quasar.errors import EngineError, QuasarError
from quasar.server.lifecycle import EVENT_STREAM

log = logging.getLogger("quasar.sse")
DONE = b"data: [DONE]\n\n"
HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def event(payload: Any) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def role_only(chunk: dict[str, Any]) -> bool:
    """A chunk that only says who speaks: no text, no tool call, no finish, no usage."""
    choices = chunk.get("choices")
    return (
        bool(choices)
        and not chunk.get("usage")
        and all(
            c.get("finish_reason") is None
            and not c.get("logprobs")
            and not any(value for key, value in (c.get("delta") or {}).items() if key != "role")
            for c in choices
        )
    )


class EventStream(StreamingResponse):
    """text/event-stream whose head and first events leave before the rest is streamed."""

    media_type = "text/event-stream"

    def __init__(
        self, first: list[dict[str, Any]], rest: AsyncIterator[dict[str, Any]], headers: dict[str, str]
    ) -> None:
        super().__init__(frame(rest), headers={**HEADERS, **headers})
        self.first = b"".join(event(chunk) for chunk in first)
        self.ended: Callable[[], None] = lambda: None  # called once the stream is over, however it ends

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[EVENT_STREAM] = True
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            await send({"type": "http.response.body", "body": self.first, "more_body": True})
            async for chunk in self.body_iterator:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self.ended()


async def frame(rest: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    """The events after the first: each chunk, then [DONE], or an error event and no [DONE]."""
    try:
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
