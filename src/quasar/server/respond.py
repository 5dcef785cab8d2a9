"""Answer a validated chat request: a JSON body or an SSE stream, with the x-quasar-* headers.

The router's trace gives the x-quasar-* headers; the meter gives the x-ratelimit-* and cache headers,
admits the request against limits and budgets first, and sees every chunk that reaches the client.
"""

from __future__ import annotations

import contextlib

from starlette.responses import Response

from quasar.accounting.meter import Meter
from quasar.accounting.record import RequestRecord
from quasar.api.chat import ChatRequest
from quasar.auth.principal import Principal
from quasar.errors import QuasarError
from quasar.server import sse
from quasar.server.responses import JSON
from quasar.service import ChatService


async def respond(
    service: ChatService,
    meter: Meter,
    record: RequestRecord,
    body: ChatRequest,
    principal: Principal,
    started: float,
) -> Response:
    trace = service.start_trace(body, started)
    limit_headers = await meter.admit(record, body, principal, service, trace)
    try:
        if not body.stream:
            result, cache_headers = await meter.chat(service, body, principal, record, trace)
            return JSON(result, headers={**trace.headers(), **limit_headers, **cache_headers})
        chunks = meter.watch(record, service.stream(body, principal, trace))
        try:
            first = [await anext(chunks)]
            if sse.role_only(first[0]):  # llama.cpp sends the role alone, its first token right behind it
                with contextlib.suppress(StopAsyncIteration):
                    first.append(await anext(chunks))
        except BaseException:
            await chunks.aclose()
            raise
    except QuasarError as exc:
        if trace.attempts:  # an error after routing says what was tried, too
            exc.headers = {**trace.headers(), **limit_headers, **exc.headers}
        raise
    return sse.EventStream(first, chunks, headers={**trace.headers(), **limit_headers})
