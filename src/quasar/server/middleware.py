"""Pure ASGI middleware (no BaseHTTPMiddleware): request ids, the body-size limit and the body's timeout."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from quasar.errors import PayloadTooLarge
from quasar.ids import sortable_id
from quasar.observability.logs import REQUEST_ID
from quasar.server.errors import envelope
from quasar.server.lifecycle import TIMED_OUT


class RequestId:
    """Keep the client's x-request-id or make one; echo it on the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value.decode("latin-1")[:128]
                break
        if not request_id:
            request_id = f"req_{sortable_id()}"
        scope.setdefault("state", {})["request_id"] = request_id
        raw_id = request_id.encode("latin-1")

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", raw_id)]
            await send(message)

        token = REQUEST_ID.set(request_id)  # for the log lines written while it is answered
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)


class BodyLimit:
    """413 for a body over `limit` bytes, declared or streamed, in the path's envelope (Anthropic's on the
    Messages API, OpenAI's elsewhere; a streamed one is raised and answered by the path's own handler).

    A body that did not arrive in time has been answered with a 408 by the protocol (server/protocol.py),
    which then tells the application its client has gone; here that becomes the 408's error, so the
    request's handler stops and its log row says why.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    def _error(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"Request body is larger than the limit of {self.limit} bytes.")

    async def _reject(self, path: str, send: Send) -> None:
        body = orjson.dumps(envelope(self._error(), path))
        await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                if value.isdigit() and int(value) > self.limit:
                    await self._reject(scope["path"], send)
                    return
                break
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message: dict[str, Any] = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise self._error()
            elif TIMED_OUT in scope:
                raise scope[TIMED_OUT]
            return message

        await self.app(scope, limited_receive, send)
