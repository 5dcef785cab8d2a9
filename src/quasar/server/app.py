"""create_app(): the ASGI application. All state lives on app.state."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from quasar import __version__
from quasar.api.chat import ChatRequest
from quasar.api.gateway import GenerateRequest
from quasar.catalog import build_models
from quasar.config import Settings
from quasar.errors import InvalidRequest, MethodNotAllowed, NotFound, QuasarError
from quasar.server import state
from quasar.server.disconnect import Disconnects
from quasar.server.fastpath import ChatFastPath, unexpected_error
from quasar.server.middleware import BodyLimit, RequestId
from quasar.server.responses import JSON, error_response
from quasar.server.routes.admin import router as admin_router
from quasar.server.routes.chat import router
from quasar.server.routes.usage import router as usage_router
from quasar.service import ChatService

log = logging.getLogger("quasar")


class QuasarApp(FastAPI):
    """FastAPI, with the chat POSTs answered in front of its middleware stack (server/fastpath.py)."""

    fast_path: ChatFastPath | None = None

    def build_middleware_stack(self) -> ASGIApp:
        self.fast_path = ChatFastPath(super().build_middleware_stack(), self.state.settings.server.max_body_bytes)
        return self.fast_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast_path = self.fast_path
        if fast_path is not None and fast_path.handles(scope):
            scope["app"] = self
            await fast_path.chat(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def create_app(
    settings: Settings,
    *,
    on_load_failure: Callable[[str], None] | None = None,
    on_loaded: Callable[[], None] | None = None,
) -> FastAPI:
    """The application; `on_loaded` is called on the loop's thread once every model has loaded (the
    serve command tunes the process then: cli/tuning.py)."""
    models = build_models(settings)

    async def load_engines(app: FastAPI) -> None:
        # Wait until the server listens (the CLI sets `serving`), so /health and /ready answer while
        # models load; an ASGI server that never sets it gets the models after a short wait anyway.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(app.state.serving.wait(), timeout=2)
        for entry in models.values():
            for _, engine in entry.deployments:
                try:
                    await asyncio.to_thread(engine.load)
                except Exception as exc:
                    app.state.load_error = str(exc)
                    log.error("quasar: %s", exc)
                    if on_load_failure is not None:
                        on_load_failure(str(exc))
                    return
        if on_loaded is not None:
            on_loaded()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await state.start(app)
        loading = asyncio.create_task(load_engines(app))
        try:
            yield
        finally:
            loading.cancel()
            for entry in models.values():
                for _, engine in entry.deployments:
                    await engine.close()
            await state.stop(app)

    app = QuasarApp(
        title="Quasar",
        version=__version__,
        description="One OpenAI-compatible chat API in front of every model a team uses.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.service = ChatService(settings, models)
    app.state.load_error = None
    app.state.serving = asyncio.Event()
    app.state.disconnects = Disconnects()
    state.install(app, settings)
    app.include_router(router)
    app.include_router(admin_router)
    app.include_router(usage_router)
    _install_error_handlers(app)
    _install_openapi(app)
    app.add_middleware(BodyLimit, limit=settings.server.max_body_bytes)
    app.add_middleware(RequestId)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(QuasarError)
    async def quasar_error(request: Request, exc: QuasarError) -> JSON:
        return error_response(exc)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSON:
        where = f"{request.method} {request.url.path}"
        if exc.status_code == 404:
            return error_response(NotFound(f"Invalid URL ({where}): no such endpoint."))
        if exc.status_code == 405:
            return error_response(MethodNotAllowed(f"Method not allowed ({where})."), headers=dict(exc.headers or {}))
        err = QuasarError(str(exc.detail))
        err.status = exc.status_code
        return error_response(err)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSON:
        first = exc.errors()[0] if exc.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return error_response(InvalidRequest(f"Invalid value for '{param}': {first.get('msg')}", param=param))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSON:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(unexpected_error())


# The chat routes are plain Starlette routes (server/routes/chat.py): their operations are described here.
_DOCUMENTED = (
    ("/v1/chat/completions", ChatRequest, "Create a chat completion"),
    ("/chat/completions", ChatRequest, "Create a chat completion (seed 000's path)"),
    ("/api/generate/", GenerateRequest, "Seed 003: generate with routing, fallbacks and a request breakdown"),
)


def _install_openapi(app: FastAPI) -> None:
    """Add the chat operations and their request schemas, which the routes parse themselves."""
    default = app.openapi

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = default()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (ChatRequest, GenerateRequest):
            defs = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(defs.pop("$defs", {}))
            components[model.__name__] = defs
        for path, model, summary in _DOCUMENTED:
            ref = {"$ref": f"#/components/schemas/{model.__name__}"}
            schema["paths"][path] = {
                "post": {
                    "summary": summary,
                    "requestBody": {"required": True, "content": {"application/json": {"schema": ref}}},
                    "responses": {
                        "200": {"description": "A chat.completion, or chat.completion.chunk events when streaming"},
                        "default": {"description": "An error in OpenAI's envelope"},
                    },
                }
            }
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
