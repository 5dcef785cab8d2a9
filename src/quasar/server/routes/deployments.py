"""GET /admin/deployments: every deployment the router can send to, with its health and load. Master key."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from quasar.gateway.router import Candidate, Router
from quasar.server.responses import JSON
from quasar.server.routes.admin import admin_only

router = APIRouter(prefix="/admin")


def describe(cand: Candidate, router: Router) -> dict[str, Any]:
    """One deployment as the dashboard shows it; `slots`, `slots_busy` and `queued` only for a local one."""
    engine, deployment = cand.engine, cand.deployment
    cooling = router.health.cooling(cand.name)
    row: dict[str, Any] = {
        "name": cand.name,
        "model": cand.model,
        "engine": deployment.engine,
        "provider": cand.provider,
        "ready": engine.ready,
        "cooling_down": cooling > 0,
        "cooldown_seconds_left": round(cooling, 3),
        "in_flight": engine.in_flight,
        "latency_ms": round(router.health.latency(cand.name) * 1000, 3) or None,
    }
    parallel = getattr(engine, "parallel", None)
    if isinstance(parallel, int):  # a local llama.cpp engine: `parallel` slots, the rest of in_flight waits
        row["slots"] = parallel
        row["slots_busy"] = min(engine.in_flight, parallel)
        row["queued"] = max(engine.in_flight - parallel, 0)
    return row


@router.get("/deployments", summary="Deployments with their health (cooldown, in flight, local slots and queue)")
async def list_deployments(request: Request) -> Response:
    await admin_only(request)
    routing: Router = request.app.state.service.router
    data = [describe(cand, routing) for cands in routing.by_model.values() for cand in cands]
    return JSON({"object": "list", "data": data})
