"""GET /metrics: Prometheus' text format (observability/metrics.py). Needs the master key once any key
is configured; open while the server is."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from quasar.errors import PermissionDenied
from quasar.observability.metrics import CONTENT_TYPE, render
from quasar.service import ChatService

router = APIRouter()


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    service: ChatService = request.app.state.service
    principal = await service.keys.authenticate(request.headers.get("authorization"))
    if principal.key_id is not None and not principal.is_admin:
        raise PermissionDenied("/metrics needs the master key.", code="admin_only")
    body = render(service.metrics, service.router, service.log, len(request.app.state.disconnects))
    return Response(body, media_type=CONTENT_TYPE)
