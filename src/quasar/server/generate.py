"""`POST /api/generate/`: seed 003's gateway endpoint. The chat request plus the gateway fields."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from starlette.responses import Response

from quasar.api.gateway import GenerateRequest
from quasar.server.parse import parse_body
from quasar.server.respond import respond

router = APIRouter()


async def generate(request: Request) -> Response:
    started = time.perf_counter()
    principal = request.app.state.keys.authenticate(request.headers.get("authorization"))
    body = parse_body(await request.body(), GenerateRequest)
    return await respond(request.app.state.service, body, principal, started)


for _path in ("/api/generate/", "/api/generate"):
    router.add_api_route(
        _path,
        generate,
        methods=["POST"],
        summary="Seed 003: generate with routing, fallbacks and a request breakdown",
        include_in_schema=_path.endswith("/"),
    )
