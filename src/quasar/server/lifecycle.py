"""What the connection layer answers by itself: a request too slow to arrive, and a server going away.

The HTTP protocol (server/protocol.py) writes these answers straight to the socket, whatever the
application is doing at that moment: a 408 for a request whose head or body did not arrive in time, a
503 for a request still running when the shutdown grace ends, and an error event for a stream cut by
the same. Each body is in its path's envelope, like every other error: Anthropic's on the Messages API
(`event: error` for its streams), OpenAI's elsewhere.

Where the application is still reading the request, it is told too (`TIMED_OUT` in the scope), so
the request log says what happened; see server/middleware.py's BodyLimit.
"""

from __future__ import annotations

import orjson

from quasar.errors import QuasarError, RequestTimeout, ShuttingDown
from quasar.server.errors import anthropic_path, envelope

# Set in a request's ASGI scope when its body did not arrive within server.body_timeout_seconds.
TIMED_OUT = "quasar.timed_out"
# Set in a request's ASGI scope by an event stream once its head is sent (server/sse.py).
EVENT_STREAM = "quasar.event_stream"
SHUTDOWN_RETRY_AFTER_S = 1


def head_timed_out(seconds: float) -> RequestTimeout:
    return RequestTimeout(f"The request's head did not arrive within {seconds:g} s.")


def body_timed_out(seconds: float) -> RequestTimeout:
    return RequestTimeout(f"The request's body did not arrive within {seconds:g} s.")


def shutting_down() -> ShuttingDown:
    return ShuttingDown(
        "The server is shutting down and could not finish this request in time; retry it.",
        headers={"Retry-After": str(SHUTDOWN_RETRY_AFTER_S)},
    )


def raw_response(exc: QuasarError, request_id: str | None = None, path: str = "") -> bytes:
    """A whole HTTP/1.1 response carrying `exc` in `path`'s envelope, ending its connection."""
    body = orjson.dumps(envelope(exc, path))
    headers = {
        "content-type": "application/json",
        "content-length": str(len(body)),
        **{name.lower(): value for name, value in exc.headers.items()},
        "connection": "close",
    }
    if request_id:
        headers["x-request-id"] = request_id
    head = f"HTTP/1.1 {exc.status} {_REASONS.get(exc.status, '')}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return head.encode("latin-1") + b"\r\n" + body


def raw_stream_end(exc: QuasarError, path: str) -> bytes:
    """The last chunk of a chunked event stream: one error event (Anthropic's `event: error` on its paths),
    no [DONE] or message_stop, then the terminator."""
    name = b"event: error\n" if anthropic_path(path) else b""
    event = name + b"data: " + orjson.dumps(envelope(exc, path)) + b"\n\n"
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(event), event)


_REASONS = {408: "Request Timeout", 503: "Service Unavailable"}
