"""Chat POSTs go straight to their handler, past FastAPI's middleware stack and router.

Under load the seven layers between uvicorn and a route (Starlette's error and exception middleware,
FastAPI's telemetry, body-limit and exit-stack middleware, the router's regex match over every route,
the request/response wrappers) took about a seventh of a gateway request's CPU (py-spy); FastAPI's
own `__call__`, in front of all of them, asks OpenTelemetry on every request whether tracing is
configured. QuasarApp sends chat POSTs straight to `ChatFastPath.chat`, past both. The chat
paths keep what those layers gave them: the request id and body limit (the same middleware as the
rest of the app), errors in OpenAI's envelope, and a logged 500 for anything unexpected. Every other
request, and other methods on these paths (405), go through FastAPI as before.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from quasar.api.chat import ChatRequest
from quasar.api.gateway import GenerateRequest
from quasar.errors import EngineError, QuasarError
from quasar.server.disconnect import client_gone
from quasar.server.middleware import BodyLimit, RequestId
from quasar.server.responses import error_response
from quasar.server.routes.chat import handle_chat

log = logging.getLogger("quasar")

SCHEMAS: dict[str, type[ChatRequest]] = {
    "/v1/chat/completions": ChatRequest,
    "/chat/completions": ChatRequest,
    "/api/generate/": GenerateRequest,
    "/api/generate": GenerateRequest,
}


def unexpected_error() -> QuasarError:
    return EngineError("The server had an error while processing your request.")


class ChatFastPath:
    def __init__(self, rest: ASGIApp, body_limit: int) -> None:
        self.rest = rest
        self.chat = RequestId(BodyLimit(self._chat, body_limit))

    @staticmethod
    def handles(scope: Scope) -> bool:
        return scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in SCHEMAS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.handles(scope):
            await self.chat(scope, receive, send)
        else:
            await self.rest(scope, receive, send)

    async def _chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            try:
                response = await handle_chat(request, SCHEMAS[scope["path"]])
            except QuasarError as exc:
                response = error_response(exc)
            except Exception:
                log.exception("unhandled error on POST %s", scope["path"])
                response = error_response(unexpected_error())
            await response(scope, receive, send)
        except asyncio.CancelledError:
            if not client_gone(request):
                raise
            asyncio.current_task().uncancel()  # type: ignore[union-attr]  # nobody is left to answer
