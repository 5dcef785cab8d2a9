"""`POST /api/generate/`: seed 003's gateway endpoint. The chat request plus the gateway fields."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response
from starlette.routing import Route

from quasar.api.gateway import GenerateRequest
from quasar.server.routes import handle_chat

router = APIRouter()


async def generate(request: Request) -> Response:
    return await handle_chat(request, GenerateRequest)


for _path in ("/api/generate/", "/api/generate"):
    router.routes.append(Route(_path, generate, methods=["POST"]))  # documented by server/app.py
