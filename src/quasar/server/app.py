"""create_app(): the ASGI application. All state lives on app.state."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from quasar import __version__
from quasar.catalog import build_models
from quasar.config import Settings
from quasar.server import errors, openapi, state
from quasar.server.disconnect import Disconnects
from quasar.server.fastpath import ChatFastPath
from quasar.server.middleware import BodyLimit, RequestId
from quasar.server.reload import Reloader, reload_on_hangup
from quasar.server.routes import completions
from quasar.server.routes.admin import router as admin_router
from quasar.server.routes.deployments import router as deployments_router
from quasar.server.routes.embeddings import router as embeddings_router
from quasar.server.routes.metrics import router as metrics_router
from quasar.server.routes.models import router as models_router
from quasar.server.routes.responses import router as responses_router
from quasar.server.routes.usage import router as usage_router
from quasar.server.routes.web import router as web_router

log = logging.getLogger("quasar")


class QuasarApp(FastAPI):
    """FastAPI, with the chat endpoints answered in front of its middleware stack (server/fastpath.py)."""

    fast_path: ChatFastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast_path = self.fast_path
        if fast_path is not None and fast_path.handles(scope):
            scope["app"] = self
            await fast_path(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def create_app(
    settings: Settings,
    *,
    on_load_failure: Callable[[str], None] | None = None,
    on_loaded: Callable[[], None] | None = None,
    config_path: str | None = None,
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
        reload_on_hangup(app)
        try:
            yield
        finally:
            loading.cancel()
            await app.state.reloader.close()
            for entry in app.state.service.models.values():
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
    app.state.load_error = None
    app.state.serving = asyncio.Event()
    app.state.disconnects = Disconnects()
    state.install(app, settings, models)
    app.state.reloader = Reloader(app, config_path)
    app.fast_path = ChatFastPath(settings.server.max_body_bytes)
    app.include_router(models_router)
    app.include_router(completions.router)
    app.include_router(admin_router)
    app.include_router(usage_router)
    app.include_router(metrics_router)
    app.include_router(responses_router)
    app.include_router(deployments_router)
    app.include_router(web_router)
    app.include_router(embeddings_router)
    errors.install(app)
    openapi.install(app)
    app.add_middleware(BodyLimit, limit=settings.server.max_body_bytes)
    app.add_middleware(RequestId)
    return app
