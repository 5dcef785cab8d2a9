"""Thin routes: parse, call the service, frame the answer. No business logic here."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from starlette.responses import Response
from starlette.routing import Route

from quasar.accounting.meter import Meter
from quasar.api.chat import ChatRequest
from quasar.api.gateway import GenerateRequest
from quasar.auth.principal import Principal
from quasar.errors import NotReady
from quasar.server.disconnect import Disconnects
from quasar.server.parse import parse_body
from quasar.server.respond import respond
from quasar.server.responses import JSON
from quasar.server.sse import EventStream
from quasar.service import ChatService

router = APIRouter()


def _service(request: Request) -> ChatService:
    return request.app.state.service


async def _principal(request: Request) -> Principal:
    return await request.app.state.keys.authenticate(request.headers.get("authorization"))


async def chat_completions(request: Request) -> Response:
    return await handle_chat(request, ChatRequest)


async def handle_chat(request: Request, schema: type[ChatRequest]) -> Response:
    """The chat endpoints and seed 003's /api/generate/ (its schema allows `models` instead of `model`).

    Whatever happens inside, the meter writes the request's log row and settles its reservation. A
    client that leaves before its answer is complete cancels the work (logged as cancelled): a stream
    stays watched until its last event.
    """
    started = time.perf_counter()
    meter: Meter = request.app.state.meter
    async with meter.record(request.state.request_id) as record:
        principal = await _principal(request)
        record.key_id = principal.key_id
        body = parse_body(await request.body(), schema)
        disconnects: Disconnects = request.app.state.disconnects
        disconnects.add(request)
        try:
            response = await respond(_service(request), meter, record, body, principal, started)
        except BaseException:
            disconnects.discard()
            raise
        if isinstance(response, EventStream):
            response.ended = disconnects.discard
        else:
            disconnects.discard()
        return response


# Plain Starlette routes: FastAPI's per-request dependency solving cost about a sixth of the gateway's
# request time under load (py-spy). They are documented in /openapi.json by server/app.py.
async def generate(request: Request) -> Response:
    return await handle_chat(request, GenerateRequest)


for _path in ("/v1/chat/completions", "/chat/completions"):
    router.routes.append(Route(_path, chat_completions, methods=["POST"]))
for _path in ("/api/generate/", "/api/generate"):
    router.routes.append(Route(_path, generate, methods=["POST"]))


@router.get("/v1/models", summary="List models")
async def list_models(request: Request) -> Response:
    await _principal(request)
    data = [entry.describe() for entry in _service(request).models.values()]
    return JSON({"object": "list", "data": data})


@router.get("/v1/models/{model_id:path}", summary="Retrieve a model")
async def get_model(model_id: str, request: Request) -> Response:
    await _principal(request)
    return JSON(_service(request).entry(model_id).describe())


@router.get("/health", summary="Liveness")
async def health() -> Response:
    return JSON({"status": "ok"})


@router.get("/ready", summary="Readiness: 200 once every model is loaded")
async def ready(request: Request) -> Response:
    service = _service(request)
    failed = request.app.state.load_error
    loading = [name for name, entry in service.models.items() if not entry.ready]
    if failed:
        raise NotReady(f"a model failed to load: {failed}", code="model_load_failed")
    if loading:
        raise NotReady(f"still loading: {', '.join(loading)}", headers={"Retry-After": "1"})
    return JSON({"status": "ready", "models": list(service.models)})
