"""Anthropic's Messages API: `POST /v1/messages` and `POST /v1/messages/count_tokens`, in Anthropic's shapes.

Each path is a plain ASGI app that server/fastpath.py sends its requests to, after the request id and the
body limit (past FastAPI's stack, which cost about 60 us of CPU a request here). A message is
answered by ChatService.chat with the body translated to a chat request (translate/anthropic.py) and
the reply translated back: a message, or Anthropic's named events (`event: NAME` + `data: {...}`). A
deployment whose upstream speaks Messages itself (engines/anthropic.py) got the body as it is: its
message, or each of its events, rides along the chat reply under `native` and is relayed as it is. The
key comes from `x-api-key` or `Authorization: Bearer`; `anthropic-version` is accepted and not needed.
Every error leaves in Anthropic's envelope (server/errors.py), a stream's after its first event as an
`event: error`. A client that leaves cancels the work, as on the chat path (server/disconnect.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from quasar.api.anthropic import CountTokensRequest, MessagesRequest
from quasar.counting import count_tokens
from quasar.errors import EngineError, MethodNotAllowed, QuasarError
from quasar.server import sse
from quasar.server.disconnect import Disconnects, client_gone
from quasar.server.errors import anthropic_body, anthropic_response, anthropic_unexpected
from quasar.server.responses import JSON
from quasar.service import Call, ChatService
from quasar.translate import anthropic

log = logging.getLogger("quasar.sse")

# path -> (request schema, summary, what a 200 holds), for /openapi.json (server/app.py)
MESSAGES_ENDPOINTS: dict[str, tuple[type[CountTokensRequest], str, str]] = {
    "/v1/messages": (MessagesRequest, "Create a message (Anthropic's Messages API)", "A message, or its events"),
    "/v1/messages/count_tokens": (
        CountTokensRequest,
        "Count a message's input tokens (Anthropic's Messages API)",
        "`{input_tokens}`: exact for a local model, an estimate for an upstream one",
    ),
}


async def _message(service: ChatService, call: Call) -> Response:
    call.translate = anthropic.chat_request
    reply = await service.chat(call)
    if reply.body is not None:
        native = reply.body.get("native")  # an upstream speaking Messages answered: its message as it is
        body = native if native is not None else anthropic.message(reply.body, anthropic.message_id())
        return JSON(body, headers=reply.headers)
    assert reply.first is not None and reply.rest is not None
    if "native" in reply.first:  # its events as they are
        native = reply.first["native"]
        return MessageEvents(_event(native["type"], native), _events(_relayed, reply.rest), reply.headers)
    stream = anthropic.MessageStream(anthropic.message_id(), reply.first.get("model"))
    first = b"".join(_event(name, data) for name, data in [*stream.start(), *stream.feed(reply.first)])
    return MessageEvents(first, _events(stream.feed, reply.rest, stream.finish), reply.headers)


def _relayed(chunk: dict) -> list[anthropic.Event]:
    native = chunk.get("native")
    return [(native["type"], native)] if native is not None else []


async def _count(service: ChatService, call: Call) -> Response:
    call.translate = anthropic.count_request
    return JSON({"input_tokens": await count_tokens(service, call)})


_ALLOW = {"Allow": "POST"}


class _Endpoint:
    """One path: the answer to its POST, or an error in Anthropic's envelope."""

    def __init__(self, answer: Callable[[ChatService, Call], Awaitable[Response]]) -> None:
        self.answer = answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        request = Request(scope, receive)
        disconnects: Disconnects = request.app.state.disconnects

        async def read_body() -> bytes:
            body = await request.body()
            disconnects.add(request)  # only once the body is read: the watcher reads from the connection
            return body

        call = Call(
            request.state.request_id, authorization(request.headers), read_body, started=started, endpoint="messages"
        )
        try:
            try:
                if scope["method"] != "POST":
                    raise MethodNotAllowed(f"Method not allowed ({scope['method']} {scope['path']}).", headers=_ALLOW)
                response = await self.answer(request.app.state.service, call)
            except QuasarError as exc:
                response = anthropic_response(exc)
            except Exception:
                response = anthropic_unexpected("POST", scope["path"])
            if isinstance(response, MessageEvents):
                response.ended = disconnects.discard
            else:
                disconnects.discard()
            await response(scope, receive, send)
        except asyncio.CancelledError:
            disconnects.discard()
            if not client_gone(request):
                raise
            asyncio.current_task().uncancel()  # type: ignore[union-attr]  # nobody is left to answer


def authorization(headers: Headers) -> str | None:
    """The Authorization the service checks: Anthropic's `x-api-key` as a bearer token, else the header."""
    key = headers.get("x-api-key")
    return f"Bearer {key}" if key else headers.get("authorization")


# path -> its ASGI app, which server/fastpath.py sends every request for the path to
MESSAGES_APPS = {"/v1/messages": _Endpoint(_message), "/v1/messages/count_tokens": _Endpoint(_count)}


# -- the event stream -----------------------------------------------------------------------------


class MessageEvents(sse.EventStream):
    """server/sse.py's EventStream (head and first events at once, then the rest) for named events."""

    def __init__(self, first: bytes, rest: AsyncIterator[bytes], headers: dict[str, str]) -> None:
        StreamingResponse.__init__(self, rest, headers={**sse.HEADERS, **headers})
        self.first = first
        self.ended: Callable[[], None] = lambda: None


def _event(name: str, data: dict) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


async def _events(
    feed: Callable[[dict], list[anthropic.Event]],
    rest: AsyncIterator[dict],
    finish: Callable[[], list[anthropic.Event]] = list,
) -> AsyncIterator[bytes]:
    """The events after the first ones; a failure ends the stream with one `event: error` and no message_stop."""
    try:
        async for chunk in rest:
            for name, data in feed(chunk):
                yield _event(name, data)
        for name, data in finish():
            yield _event(name, data)
    except QuasarError as exc:
        yield _event("error", anthropic_body(exc))
    except Exception:
        log.exception("stream failed")
        yield _event("error", anthropic_body(EngineError("The stream failed on the server.")))
    finally:
        await rest.aclose()
