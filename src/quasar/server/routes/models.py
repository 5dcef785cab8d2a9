"""The models, liveness and readiness: GET /v1/models, /v1/models/{id}, /health, /ready."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from quasar.errors import NotReady
from quasar.server.responses import JSON
from quasar.service import ChatService

router = APIRouter()


def _service(request: Request) -> ChatService:
    return request.app.state.service


@router.get("/v1/models", summary="List models")
async def list_models(request: Request) -> Response:
    service = _service(request)
    await service.keys.authenticate(request.headers.get("authorization"))
    return JSON({"object": "list", "data": [entry.describe() for entry in service.models.values()]})


@router.get("/v1/models/{model_id:path}", summary="Retrieve a model")
async def get_model(model_id: str, request: Request) -> Response:
    service = _service(request)
    await service.keys.authenticate(request.headers.get("authorization"))
    return JSON(service.entry(model_id).describe())


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
