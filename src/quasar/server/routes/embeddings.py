"""POST /v1/embeddings, answered by EmbeddingsService.embed; its request schema is in /openapi.json."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from quasar.api.embeddings import EmbeddingRequest
from quasar.embeddings_service import EmbeddingsService
from quasar.server.responses import JSON
from quasar.service import Call

router = APIRouter()

_BODY = {"required": True, "content": {"application/json": {"schema": EmbeddingRequest.model_json_schema()}}}


@router.post(
    "/v1/embeddings",
    summary="Create embeddings",
    openapi_extra={"requestBody": _BODY},
    responses={
        200: {"description": "A list of embeddings"},
        "default": {"description": "An error in OpenAI's envelope"},
    },
)
async def embeddings(request: Request) -> Response:
    service: EmbeddingsService = request.app.state.embeddings
    call = Call(request.state.request_id, request.headers.get("authorization"), request.body)
    reply = await service.embed(call)
    return JSON(reply.body, headers=reply.headers)
