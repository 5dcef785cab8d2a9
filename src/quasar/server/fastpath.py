"""The chat endpoints' way in: their paths go straight to their handler, past FastAPI's stack.

Under load the seven layers between uvicorn and a route (Starlette's error and exception middleware,
FastAPI's telemetry, body-limit and exit-stack middleware, the router's regex match over every route,
the request/response wrappers) took about a seventh of a gateway request's CPU (py-spy); FastAPI's
own `__call__`, in front of all of them, asks OpenTelemetry on every request whether tracing is
configured. QuasarApp sends every request for a path in routes/chat.py's CHAT_ENDPOINTS here: a POST
gets the request id and body limit (the same middleware as the rest of the app) and the chat handler;
any other method a 405. Errors leave in OpenAI's envelope through server/errors.py. A request for one of
routes/messages.py's MESSAGES_APPS (Anthropic's API) goes to its app, which answers in Anthropic's shapes.
"""

from __future__ import annotations

import asyncio
import time

from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from quasar.errors import QuasarError
from quasar.server.disconnect import client_gone
from quasar.server.errors import error_response, not_allowed, unexpected
from quasar.server.middleware import BodyLimit, RequestId
from quasar.server.routes.chat import CHAT_ENDPOINTS, chat
from quasar.server.routes.messages import MESSAGES_APPS
from quasar.server.routes.responses import RESPONSES_PATH, create


class ChatFastPath:
    def __init__(self, body_limit: int) -> None:
        self._app = RequestId(BodyLimit(self._chat, body_limit))

    @staticmethod
    def handles(scope: Scope) -> bool:
        if scope["type"] != "http":
            return False
        path = scope["path"]
        return path in CHAT_ENDPOINTS or path in MESSAGES_APPS or path == RESPONSES_PATH

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)

    async def _chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        messages = MESSAGES_APPS.get(scope["path"])
        if messages is not None:
            await messages(scope, receive, send)  # it answers its errors in Anthropic's envelope
            return
        started = time.perf_counter()
        request = Request(scope, receive)
        try:
            if scope["method"] != "POST":
                response = not_allowed(scope["method"], scope["path"], "POST")
            else:
                try:
                    handler = create if scope["path"] == RESPONSES_PATH else chat
                    response = await handler(request, started)
                except QuasarError as exc:
                    response = error_response(exc)
                except Exception:
                    response = unexpected("POST", scope["path"])
            await response(scope, receive, send)
        except asyncio.CancelledError:
            if not client_gone(request):
                raise
            asyncio.current_task().uncancel()  # type: ignore[union-attr]  # nobody is left to answer
