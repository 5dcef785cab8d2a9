"""`POST /v1/completions`: OpenAI's legacy completions, run through the chat pipeline.

The body becomes a chat request (api/completions.py `as_chat`) inside ChatService.chat, so auth, the
plan, limits, the cache, the log row and cost are the chat endpoints' own; the answer is turned back
into text_completion objects here.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import Response

from quasar.api.chat import ChatRequest
from quasar.api.completions import CompletionRequest, TextStream, as_chat, text_body
from quasar.api.errors import describe
from quasar.errors import InvalidRequest
from quasar.ids import sortable_id
from quasar.parse import parse_body
from quasar.server import sse
from quasar.server.disconnect import Disconnects
from quasar.server.responses import JSON
from quasar.service import Call, ChatService, Reply

router = APIRouter()
DOCUMENTED = {"/v1/completions": (CompletionRequest, "Create a completion (legacy)")}


async def completions(request: Request) -> Response:
    started = time.perf_counter()
    service: ChatService = request.app.state.service
    disconnects: Disconnects = request.app.state.disconnects
    parsed: list[CompletionRequest] = []

    async def read_body() -> bytes:
        body = await request.body()
        disconnects.add(request)
        return body

    def translate(raw: bytes) -> ChatRequest:
        body = parse_body(raw, CompletionRequest)
        parsed.append(body)
        try:
            return as_chat(body)
        except ValidationError as exc:  # what only the chat request checks (stream_options without stream...)
            message, param = describe(exc)
            raise InvalidRequest(message, param=param) from None

    call = Call(request.state.request_id, request.headers.get("authorization"), read_body, started=started)
    call.translate, call.endpoint = translate, "completions"
    try:
        reply = await service.chat(call)
        completion_id = f"cmpl-{sortable_id()}"
        if reply.body is not None:
            disconnects.discard()
            return JSON(text_body(reply.body, parsed[0], completion_id), headers=reply.headers)
        events = _text_events(reply, TextStream(parsed[0], completion_id))
        try:
            first = await anext(events)
        except BaseException:
            await events.aclose()
            raise
    except BaseException:
        disconnects.discard()
        raise
    stream = sse.EventStream([first], events, headers=reply.headers)
    stream.ended = disconnects.discard
    return stream


async def _text_events(reply: Reply, text: TextStream) -> AsyncIterator[dict]:
    assert reply.first is not None and reply.rest is not None
    try:
        converted = text.chunk(reply.first)
        if converted is not None:
            yield converted
        async for chunk in reply.rest:
            converted = text.chunk(chunk)
            if converted is not None:
                yield converted
    finally:
        await reply.rest.aclose()


router.add_api_route("/v1/completions", completions, methods=["POST"], summary="Create a completion (legacy)")
