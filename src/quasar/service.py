"""The chat use case without HTTP: authorize, route, call the engine, account, shape the answer.

The server and the CLI both call this; it knows nothing of requests, responses or sockets.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from pydantic import ValidationError

from quasar.accounting.cost import price_usage
from quasar.api.chat import ChatRequest
from quasar.api.errors import describe
from quasar.api.gateway import gateway_options
from quasar.auth.principal import Principal
from quasar.catalog import ModelEntry
from quasar.config import Settings
from quasar.engines.base import Engine
from quasar.errors import InvalidRequest, ModelNotFound, QuasarError
from quasar.gateway.breakdown import stream_chunk, summary
from quasar.gateway.router import Router
from quasar.gateway.trace import Trace


class ChatService:
    def __init__(self, settings: Settings, models: dict[str, ModelEntry]) -> None:
        self.settings = settings
        self.models = models
        self.router = Router(settings.router, {name: entry.deployments for name, entry in models.items()})

    def entry(self, name: str) -> ModelEntry:
        entry = self.models.get(name)
        if entry is None:
            known = ", ".join(sorted(self.models))
            raise ModelNotFound(f"The model '{name}' does not exist. Known models: {known}.", param="model")
        return entry

    def start_trace(self, request: ChatRequest, started: float | None = None) -> Trace:
        """The request's trace, with its seed-003 gateway fields validated (400 naming the field)."""
        try:
            options = gateway_options(request)
        except ValidationError as exc:
            message, param = describe(exc)
            raise InvalidRequest(message, param=param) from None
        return Trace(options=options) if started is None else Trace(options=options, started=started)

    def _check(self, request: ChatRequest) -> None:
        max_n = self.settings.server.max_n
        if request.n > max_n:
            raise InvalidRequest(f"Invalid value for 'n': at most {max_n} choices per request.", param="n")

    def _shape(self, body: dict[str, Any], model: str, engine: Engine, trace: Trace) -> dict[str, Any]:
        """The engine's body or chunk as the client gets it; llama.cpp's `timings` go to the trace."""
        body["model"] = model
        body["system_fingerprint"] = getattr(engine, "fingerprint", None) or body.get("system_fingerprint")
        _take_timings(body, trace)
        return body

    def _settle(self, trace: Trace, request: ChatRequest, usage: Any, completion: str) -> None:
        trace.usage = usage if isinstance(usage, dict) else None

        def prompt() -> str:
            return "".join(m.text() for m in request.messages)

        trace.cost = price_usage(usage, trace.price, prompt, completion) if trace.price else None
        trace.finished = time.perf_counter()

    async def chat(self, request: ChatRequest, principal: Principal, trace: Trace | None = None) -> dict[str, Any]:
        trace = trace or self.start_trace(request)
        self._check(request)
        body, cand = await self.router.chat(request, principal, trace)
        body.setdefault("created", int(time.time()))
        self._shape(body, cand.model, cand.engine, trace)
        choices = body.get("choices") or [{}]
        message = choices[0].get("message") or {"role": "assistant", "content": None}
        self._settle(trace, request, body.get("usage"), message.get("content") or "")
        if trace.options.request_breakdown:
            body["request_breakdown"] = summary(trace, request, message)
        return body

    async def stream(
        self, request: ChatRequest, principal: Principal, trace: Trace | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Chunks for the client. Errors before the first chunk propagate from the first __anext__."""
        trace = trace or self.start_trace(request)
        self._check(request)
        first, chunks, cand = await self.router.stream(request, principal, trace)
        usage = None
        text: list[str] = []
        chunk: dict[str, Any] | None = first
        try:
            while chunk is not None:
                if isinstance(chunk.get("usage"), dict):
                    usage = chunk["usage"]
                for choice in chunk.get("choices") or ():
                    content = (choice.get("delta") or {}).get("content")
                    if content and choice.get("index", 0) == 0:
                        text.append(content)
                if not chunk.get("choices") and "usage" in chunk:
                    if request.include_usage:
                        yield self._shape(chunk, cand.model, cand.engine, trace)
                    else:
                        _take_timings(chunk, trace)
                else:
                    chunk.pop("usage", None)
                    yield self._shape(chunk, cand.model, cand.engine, trace)
                chunk = await anext(chunks, None)
        except QuasarError as exc:
            self.router.broke(trace, cand, exc)
            raise
        finally:
            await chunks.aclose()
        completion = "".join(text)
        self._settle(trace, request, usage, completion)
        if trace.options.request_breakdown:
            message = {"content": completion, "role": "assistant"}
            yield stream_chunk(summary(trace, request, message))


def _take_timings(body: dict[str, Any], trace: Trace) -> None:
    """llama.cpp's own `timings` (not OpenAI's) leave the body for the trace's request_breakdown."""
    timings = body.pop("timings", None)
    if isinstance(timings, dict):
        trace.engine_timings = timings
