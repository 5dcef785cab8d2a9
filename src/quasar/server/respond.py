"""Answer a validated chat request: a JSON body or an SSE stream, with the x-quasar-* headers."""

from __future__ import annotations

from starlette.responses import Response, StreamingResponse

from quasar.api.chat import ChatRequest
from quasar.auth import Principal
from quasar.errors import QuasarError
from quasar.server import sse
from quasar.server.responses import JSON
from quasar.service import ChatService


async def respond(service: ChatService, body: ChatRequest, principal: Principal, started: float) -> Response:
    trace = service.start_trace(body, started)
    try:
        if not body.stream:
            result = await service.chat(body, principal, trace)
            return JSON(result, headers=trace.headers())
        chunks = service.stream(body, principal, trace)
        try:
            first = await anext(chunks)
        except BaseException:
            await chunks.aclose()
            raise
    except QuasarError as exc:
        if trace.attempts:  # an error after routing says what was tried, too
            exc.headers = {**trace.headers(), **exc.headers}
        raise
    headers = {**sse.HEADERS, **trace.headers()}
    return StreamingResponse(sse.frame(first, chunks), media_type="text/event-stream", headers=headers)
