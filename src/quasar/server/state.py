"""Wire the store, keys, limits, cache and the chat service onto app.state; open and close them with the app."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from fastapi import FastAPI

from quasar.accounting.cache import LocalCache, RedisCache, ResponseCache
from quasar.accounting.limits import Limits, LocalLimits, RedisLimits, Subject, period_start
from quasar.accounting.meter import Meter
from quasar.auth.managed import KeyEvents, KeyRing, principal_of
from quasar.auth.static import StaticKeys
from quasar.catalog import ModelEntry
from quasar.config import Settings
from quasar.embeddings_service import EmbeddingsService
from quasar.gateway.health_events import HealthEvents
from quasar.gateway.latency_share import LatencyShare
from quasar.service import ChatService
from quasar.store import Store
from quasar.store import keys as key_rows
from quasar.store.usage import spent_since
from quasar.tracing import Tracing

log = logging.getLogger("quasar")


def install(app: FastAPI, settings: Settings, models: dict[str, ModelEntry]) -> None:
    store = Store(settings.store)
    redis = None
    limits: Limits = LocalLimits()
    cache: ResponseCache = LocalCache(settings.cache.max_entries)
    if settings.redis_url:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry  # not redis.retry's: that one cannot retry a coroutine
        from redis.backoff import NoBackoff
        from redis.exceptions import ConnectionError as RedisConnectionError

        # Once Redis is back, pooled connections it dropped pass the pool's check and fail their next
        # command: that command is sent again at once on a new connection (a limit counted twice, were the
        # connection lost after Redis ran it, errs on the strict side).
        redis = aioredis.from_url(
            settings.redis_url,
            socket_timeout=5,
            socket_connect_timeout=5,
            retry=Retry(NoBackoff(), 1),
            retry_on_error=[RedisConnectionError],
        )
        limits = RedisLimits(redis, settings.redis_namespace)
        cache = RedisCache(redis, settings.redis_namespace)
    app.state.store = store
    app.state.redis = redis
    keys = KeyRing(StaticKeys(settings.auth.api_keys, settings.auth.master_key), store.engine)
    app.state.keys = keys
    app.state.key_events = KeyEvents(redis, settings.redis_namespace, keys) if redis else None
    app.state.meter = Meter(settings.limits, limits)
    app.state.tracing = Tracing.from_environment()
    app.state.service = ChatService(
        settings, models, keys=keys, meter=app.state.meter, cache=cache, log=store.writer, tracing=app.state.tracing
    )
    health = app.state.service.router.health
    app.state.health_events = HealthEvents(redis, settings.redis_namespace, health) if redis else None
    app.state.latency_share = LatencyShare(redis, settings.redis_namespace, health) if redis else None
    app.state.embeddings = EmbeddingsService.alongside(app.state.service)


async def start(app: FastAPI) -> None:
    """Check the schema, start the log writer, follow key changes, and seed budgets from the log."""
    try:
        await app.state.store.open()
    except Exception as exc:
        log.error("quasar: cannot open the store at %s: %s", app.state.store.url.safe(), exc)
        raise
    if app.state.key_events is not None:
        await app.state.key_events.start()
    if app.state.health_events is not None:
        await app.state.health_events.start()
    if app.state.latency_share is not None:
        app.state.latency_share.start()
    try:
        await _seed_budgets(app.state.settings, app.state.store, app.state.meter.limits)
    except Exception as exc:
        log.warning("quasar: budgets not seeded from the request log (%s)", type(exc).__name__)


async def stop(app: FastAPI) -> None:
    await app.state.meter.close()
    if app.state.tracing is not None:
        app.state.tracing.close()
    if app.state.key_events is not None:
        await app.state.key_events.close()
    if app.state.health_events is not None:
        await app.state.health_events.close()
    if app.state.latency_share is not None:
        await app.state.latency_share.close()
    await app.state.store.close()
    if app.state.redis is not None:
        await app.state.redis.aclose()


async def _seed_budgets(settings: Settings, store: Store, limits: Limits) -> None:
    now = datetime.now(UTC)
    cache: dict[tuple[str, str], dict[str, float]] = {}

    async def spent(by: str, period: str) -> dict[str, float]:
        if (by, period) not in cache:
            cache[by, period] = await spent_since(store.engine, by, period_start(period, now))
        return cache[by, period]

    subjects: list[tuple[Subject, str, str]] = []
    for row in await key_rows.all_keys(store.engine):
        if row["budget"] is not None and row["revoked"] is None:
            quota = principal_of(row).quota
            assert quota is not None
            subjects.append((Subject(f"key:{row['id']}", quota), "key", row["id"]))
    for customer, quota in settings.limits.customers.items():
        if quota.budget is not None:
            subjects.append((Subject(f"customer:{customer}", quota), "customer", customer))
    default = settings.limits.customer
    if default is not None and default.budget is not None:
        for customer in await spent("customer", default.budget_period):
            if customer not in settings.limits.customers:
                subjects.append((Subject(f"customer:{customer}", default), "customer", customer))
    for subject, by, ident in subjects:
        amount = (await spent(by, subject.quota.budget_period)).get(ident, 0.0)
        if amount:
            await limits.seed(subject, amount)
