"""The chat use case without HTTP: authorize, resolve the model, call the engine, shape the answer.

The server and the CLI both call this; it knows nothing of requests, responses or sockets.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from quasar.api.chat import ChatRequest
from quasar.auth import Principal
from quasar.config import Deployment, Settings
from quasar.engines.base import Engine
from quasar.errors import InvalidRequest, ModelNotFound, PermissionDenied
from quasar.record import RequestRecord


@dataclass
class ModelEntry:
    name: str
    deployments: list[tuple[Deployment, Engine]]
    created: int

    @property
    def context_length(self) -> int:
        return max(d.context_length for d, _ in self.deployments)

    @property
    def owned_by(self) -> str:
        return self.deployments[0][1].owned_by

    @property
    def ready(self) -> bool:
        return any(engine.ready for _, engine in self.deployments)

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.name,
            "object": "model",
            "created": self.created,
            "owned_by": self.owned_by,
            "context_length": self.context_length,
            "ready": self.ready,
        }


class ChatService:
    def __init__(self, settings: Settings, models: dict[str, ModelEntry]) -> None:
        self.settings = settings
        self.models = models

    def entry(self, name: str) -> ModelEntry:
        entry = self.models.get(name)
        if entry is None:
            known = ", ".join(sorted(self.models))
            raise ModelNotFound(f"The model '{name}' does not exist. Known models: {known}.", param="model")
        return entry

    def _prepare(self, request: ChatRequest, principal: Principal, record: RequestRecord | None = None) -> Engine:
        entry = self.entry(request.model)
        if not principal.may_use(request.model):
            raise PermissionDenied(f"This key may not use the model '{request.model}'.", param="model")
        max_n = self.settings.server.max_n
        if request.n > max_n:
            raise InvalidRequest(f"Invalid value for 'n': at most {max_n} choices per request.", param="n")
        deployment, engine = entry.deployments[0]
        if record is not None:
            record.used(
                deployment.model or deployment.path or entry.name,
                deployment.provider or deployment.engine,
                deployment.price,
            )
        return engine

    def _shape(self, body: dict[str, Any], request: ChatRequest, engine: Engine) -> dict[str, Any]:
        body["model"] = request.model
        body["system_fingerprint"] = getattr(engine, "fingerprint", None) or body.get("system_fingerprint")
        body.pop("timings", None)
        return body

    async def chat(
        self, request: ChatRequest, principal: Principal, record: RequestRecord | None = None
    ) -> dict[str, Any]:
        engine = self._prepare(request, principal, record)
        body = await engine.chat(request)
        if record is not None:
            record.take_reply(body)
        body.setdefault("created", int(time.time()))
        return self._shape(body, request, engine)

    async def stream(
        self, request: ChatRequest, principal: Principal, record: RequestRecord | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Chunks for the client. Errors before the first chunk propagate from the first __anext__."""
        engine = self._prepare(request, principal, record)
        chunks = engine.stream(request)
        try:
            async for chunk in chunks:
                if record is not None:
                    record.take_chunk(chunk)
                if not chunk.get("choices") and "usage" in chunk:
                    if not request.include_usage:
                        continue
                else:
                    chunk.pop("usage", None)
                yield self._shape(chunk, request, engine)
        finally:
            await chunks.aclose()
