"""Reload the config without a restart: SIGHUP, or `POST /admin/reload` with the master key.

The file is read and checked first; a config with errors is refused with its line and the running one
keeps serving. Then a new ChatService is put in place for the requests that arrive from then on, with
the new models, deployments, prices, router settings and static keys; requests in flight finish on the
one they started with. A deployment whose settings did not change keeps its engine (a local model is
not loaded again); new ones are loaded before the switch; the engines no longer configured are closed
once the requests using them are done. The store, Redis and `server` settings need a restart: a change
there is reported and left as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from typing import Any

from fastapi import FastAPI

from quasar.auth.static import StaticKeys
from quasar.catalog import ModelEntry
from quasar.config import Deployment, Settings, load_settings
from quasar.embeddings_service import EmbeddingsService
from quasar.engines.base import Engine
from quasar.engines.factory import build_engine
from quasar.errors import ConfigError, InvalidRequest
from quasar.service import ChatService

log = logging.getLogger("quasar")
DRAIN_POLL_S = 0.5
DRAIN_MAX_S = 600.0


class Reloader:
    def __init__(self, app: FastAPI, config_path: str | None) -> None:
        self.app = app
        self.config_path = config_path
        self.retired: list[Engine] = []  # engines taken out of service, closed once idle
        self._lock = asyncio.Lock()
        self._drains: set[asyncio.Task[None]] = set()

    async def reload(self) -> dict[str, Any]:
        """Apply the config file now; raises InvalidRequest (the file's problems, by line) when it is refused."""
        if self.config_path is None:
            raise InvalidRequest("This server was started without a config file: there is nothing to reload.")
        async with self._lock:
            try:
                settings = await asyncio.to_thread(load_settings, self.config_path)
            except ConfigError as exc:
                raise InvalidRequest(f"The config was not reloaded: {exc}") from None
            old: ChatService = self.app.state.service
            kept = _restart_only(old.settings, settings)
            models, fresh, unused = _rebuild(old.models, settings)
            try:
                for engine in fresh:
                    await asyncio.to_thread(engine.load)
            except Exception as exc:
                for engine in fresh:
                    await engine.close()
                raise InvalidRequest(f"The config was not reloaded: {exc}") from None
            service = ChatService(
                settings, models, keys=old.keys, meter=old.meter, cache=old.cache, log=old.log, tracing=old.tracing
            )
            health = service.router.health = old.router.health  # cooldowns and latency, by deployment name
            health.cooldown_seconds = settings.router.cooldown_seconds
            health.allowed_fails = settings.router.allowed_fails
            service.metrics = old.metrics.follow(models)  # /metrics' counters go on across a reload
            old.keys.static = StaticKeys(settings.auth.api_keys, settings.auth.master_key)
            old.keys.invalidate()
            old.meter.config = settings.limits
            self.app.state.service = service
            self.app.state.embeddings = EmbeddingsService.alongside(service)
            self.app.state.settings = settings
            self._retire(unused)
        log.warning("quasar: config reloaded from %s: %s", self.config_path, ", ".join(models) or "no models")
        return {"object": "reload", "models": list(models), "loaded": len(fresh), "restart_needed": kept}

    def on_hangup(self) -> None:
        task = asyncio.get_running_loop().create_task(self._reload_logged())
        self._drains.add(task)
        task.add_done_callback(self._drains.discard)

    async def _reload_logged(self) -> None:
        try:
            await self.reload()
        except InvalidRequest as exc:
            log.error("quasar: %s", exc.message)

    def _retire(self, engines: list[Engine]) -> None:
        for engine in engines:
            task = asyncio.get_running_loop().create_task(self._close_when_idle(engine))
            self._drains.add(task)
            task.add_done_callback(self._drains.discard)

    async def _close_when_idle(self, engine: Engine) -> None:
        self.retired.append(engine)
        waited = 0.0
        while engine.in_flight and waited < DRAIN_MAX_S:
            await asyncio.sleep(DRAIN_POLL_S)
            waited += DRAIN_POLL_S
        await engine.close()
        self.retired.remove(engine)

    async def close(self) -> None:
        for task in list(self._drains):
            task.cancel()
        for engine in list(self.retired):
            await engine.close()


def _rebuild(
    current: dict[str, ModelEntry], settings: Settings
) -> tuple[dict[str, ModelEntry], list[Engine], list[Engine]]:
    """The new models (engines reused where a deployment is unchanged), the new engines, the unused ones."""
    existing: dict[str, list[tuple[Deployment, Engine]]] = {}
    for entry in current.values():
        for deployment, engine in entry.deployments:
            existing.setdefault(_identity(entry.name, entry.mode, deployment), []).append((deployment, engine))
    models: dict[str, ModelEntry] = {}
    fresh: list[Engine] = []
    reused: set[int] = set()
    for model in settings.models:
        pairs = []
        for deployment in model.deployments:
            same = existing.get(_identity(model.name, model.mode, deployment))
            if same:
                engine = same.pop(0)[1]
                reused.add(id(engine))
            else:
                engine = build_engine(deployment, model.mode)
                fresh.append(engine)
            pairs.append((deployment, engine))
        created = current[model.name].created if model.name in current else int(time.time())
        models[model.name] = ModelEntry(model.name, pairs, created, model.mode, model.matryoshka)
    unused = [e for entry in current.values() for _, e in entry.deployments if id(e) not in reused]
    return models, fresh, unused


def _identity(model: str, mode: str, deployment: Deployment) -> str:
    """Two deployments with the same identity can share one engine: what the engine is built from (a
    price or a weight is the router's, read from the deployment on each request)."""
    return f"{model}\0{mode}\0{deployment.model_dump_json(exclude={'price', 'weight'})}"


def _restart_only(old: Settings, new: Settings) -> list[str]:
    """Settings that only a restart applies: reported, and the running values kept in `new`."""
    changed = []
    if old.store != new.store:
        changed.append("store")
        new.store = old.store
    if old.server != new.server:
        changed.append("server")
        new.server = old.server
    if (old.redis_url, old.redis_namespace) != (new.redis_url, new.redis_namespace):
        changed.append("redis_url/redis_namespace")
        new.redis_url, new.redis_namespace = old.redis_url, old.redis_namespace
    if old.cache.max_entries != new.cache.max_entries:
        changed.append("cache.max_entries")
        new.cache.max_entries = old.cache.max_entries
    for name in changed:
        log.warning("quasar: reload: '%s' changed; it takes effect at the next restart", name)
    return changed


def reload_on_hangup(app: FastAPI) -> None:
    """SIGHUP reloads the config (Unix, when the server runs on the main thread, as `quasar serve` does)."""
    reloader: Reloader = app.state.reloader
    if reloader.config_path is not None:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reloader.on_hangup)
