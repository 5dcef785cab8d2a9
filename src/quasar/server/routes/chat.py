"""The chat endpoints: one table of paths, one handler, answered by ChatService.chat.

QuasarApp sends these paths straight here (server/fastpath.py), past FastAPI's routing; server/app.py
describes them in /openapi.json from the same table.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from quasar.api.chat import ChatRequest
from quasar.api.gateway import GenerateRequest
from quasar.server import sse
from quasar.server.disconnect import Disconnects
from quasar.server.responses import JSON
from quasar.service import Call, ChatService, Reply

# path -> (request schema, summary in /openapi.json)
CHAT_ENDPOINTS: dict[str, tuple[type[ChatRequest], str]] = {
    "/v1/chat/completions": (ChatRequest, "Create a chat completion"),
    "/chat/completions": (ChatRequest, "Create a chat completion (seed 000's path)"),
    "/api/generate/": (GenerateRequest, "Seed 003: generate with routing, fallbacks and a request breakdown"),
    "/api/generate": (GenerateRequest, "Seed 003's endpoint without the trailing slash"),
}


async def chat(request: Request, started: float) -> Response:
    """Answer one chat POST. A client that leaves before its answer is complete cancels the work (the
    service logs it as cancelled); a stream stays watched until its last event."""
    service: ChatService = request.app.state.service
    disconnects: Disconnects = request.app.state.disconnects

    async def read_body() -> bytes:
        body = await request.body()
        disconnects.add(request)  # only once the body is read: the watcher reads from the connection
        return body

    schema = CHAT_ENDPOINTS[request.scope["path"]][0]
    call = Call(request.state.request_id, request.headers.get("authorization"), read_body, schema, started)
    try:
        reply = await service.chat(call)
        response = await _framed(reply)
    except BaseException:
        disconnects.discard()
        raise
    if isinstance(response, sse.EventStream):
        response.ended = disconnects.discard
    else:
        disconnects.discard()
    return response


async def _framed(reply: Reply) -> Response:
    if reply.body is not None:
        return JSON(reply.body, headers=reply.headers)
    assert reply.first is not None and reply.rest is not None
    first = [reply.first]
    if sse.role_only(reply.first):  # llama.cpp sends the role alone, its first token right behind it
        try:
            first.append(await anext(reply.rest))
        except StopAsyncIteration:
            pass
        except BaseException:
            await reply.rest.aclose()
            raise
    return sse.EventStream(first, reply.rest, headers=reply.headers)
