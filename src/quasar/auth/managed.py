"""Managed API keys: created, listed, updated and revoked in the store; looked up through a cache.

A request makes no database call for a key seen within the cache's lifetime. Without Redis the
lifetime is one second, so a revocation holds everywhere within a second; with Redis every change is
published and each replica drops its cache at once, and the lifetime is longer.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from quasar.auth.principal import ANONYMOUS, Principal
from quasar.auth.static import StaticKeys, bearer_token, hash_key
from quasar.config import Quota
from quasar.errors import AuthenticationFailed, StoreUnavailable
from quasar.store import keys as key_rows
from quasar.timeparse import parse_time

log = logging.getLogger("quasar.auth.managed")
KEY_PREFIX = "qsr-"
LOCAL_TTL_S = 1.0
SHARED_TTL_S = 30.0
MAX_CACHED = 10_000


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def parse_expiry(value: float | int | str | None, now: float | None = None) -> float | None:
    """An expiry as epoch seconds, an ISO 8601 time, or a duration from now (30d, 12h, 15m, 90s)."""
    return parse_time(value, "expires", durations="ahead", now=now)


def public(row: dict[str, Any]) -> dict[str, Any]:
    """A key row as the admin API and CLI show it: never the hash."""
    out = {k: v for k, v in row.items() if k != "key_hash"}
    out["object"] = "api_key"
    return out


def principal_of(row: dict[str, Any]) -> Principal:
    quota = Quota(rpm=row["rpm"], tpm=row["tpm"], budget=row["budget"], budget_period=row["budget_period"])
    return Principal(key_id=row["id"], name=row["name"], models=frozenset(row["models"] or []), quota=quota)


@dataclass
class _Cached:
    row: dict[str, Any] | None
    at: float


class KeyRing:
    """Static keys from the config, then managed keys from the store.

    The server is open (every caller is anonymous) only while there is no static key, no master key and no
    key row in the store at all: once a managed key exists, even a revoked or expired one, a key is required.
    Whether the store holds any key is cached with the same lifetime as the keys themselves.
    """

    def __init__(self, static: StaticKeys, engine: AsyncEngine, ttl: float = LOCAL_TTL_S) -> None:
        self.static = static
        self.engine = engine
        self.ttl = ttl
        self._cache: dict[str, _Cached] = {}
        self._has_keys: _Cached | None = None  # row is {} when the store holds a key, None when it holds none
        # The queries in flight, one per key and one for "any key?", shared by every caller that finds the
        # cached answer stale. `invalidate` starts a new generation: an answer read before it is returned to
        # the callers already waiting for it but never cached, so a revoked key is refused from then on.
        self._lookups: dict[str, asyncio.Task[dict[str, Any] | None]] = {}
        self._has_keys_query: asyncio.Task[bool] | None = None
        self._generation = 0

    def invalidate(self) -> None:
        self._generation += 1
        self._cache.clear()
        self._has_keys = None
        self._lookups.clear()
        self._has_keys_query = None

    async def _lookup(self, digest: str) -> dict[str, Any] | None:
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and now - cached.at < self.ttl:
            return cached.row
        query = self._lookups.get(digest)
        if query is None:
            query = self._lookups[digest] = asyncio.ensure_future(key_rows.by_hash(self.engine, digest))
            query.add_done_callback(functools.partial(self._looked_up, digest, self._generation, now))
        try:
            return await asyncio.shield(query)  # a caller that leaves does not cancel the others' query
        except Exception:
            if cached is not None:
                return cached.row  # the database is down: the last known answer is better than none
            raise StoreUnavailable("The key store is unavailable; try again shortly.") from None

    def _looked_up(self, digest: str, generation: int, asked: float, query: asyncio.Task[Any]) -> None:
        if self._lookups.get(digest) is query:
            del self._lookups[digest]
        if generation != self._generation or query.cancelled() or query.exception() is not None:
            return  # (the exception retrieved here, should no caller wait)
        if len(self._cache) >= MAX_CACHED:
            self._cache.clear()
        self._cache[digest] = _Cached(query.result(), asked)

    async def store_has_keys(self) -> bool:
        """Whether the store holds any managed key (revoked and expired ones count): then a key is required."""
        now = time.monotonic()
        cached = self._has_keys
        if cached is not None and now - cached.at < self.ttl:
            return cached.row is not None
        # One query for every request that finds the answer stale: a query each made the pool open (and
        # close) connections beyond its size every second under load, and SQLite kept fds of closed ones.
        query = self._has_keys_query
        if query is None:
            query = self._has_keys_query = asyncio.ensure_future(key_rows.any_key(self.engine))
            query.add_done_callback(functools.partial(self._has_keys_answered, self._generation))
        try:
            found = await asyncio.shield(query)  # a caller that leaves does not cancel it
        except Exception:
            if cached is not None:
                return cached.row is not None  # the database is down: keep the last known answer
            raise StoreUnavailable("The key store is unavailable; try again shortly.") from None
        return found

    def _has_keys_answered(self, generation: int, query: asyncio.Task[bool]) -> None:
        if self._has_keys_query is query:
            self._has_keys_query = None
        if generation != self._generation or query.cancelled() or query.exception() is not None:
            return  # (the exception retrieved here, should no caller wait)
        self._has_keys = _Cached({} if query.result() else None, time.monotonic())

    async def authenticate(self, authorization: str | None) -> Principal:
        token = bearer_token(authorization)
        if token is not None and token.startswith(KEY_PREFIX):
            row = await self._lookup(hash_key(token))
            if row is not None:
                if row["revoked"] is not None:
                    raise AuthenticationFailed("This API key has been revoked.", code="api_key_revoked")
                if row["expires"] is not None and row["expires"] <= time.time():
                    raise AuthenticationFailed("This API key has expired.", code="api_key_expired")
                return principal_of(row)
        if self.static.required:
            return self.static.authenticate(authorization)
        if await self.store_has_keys():
            return self.static.refuse(token)
        return ANONYMOUS


async def create_key(engine: AsyncEngine, fields: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Store a new key's hash; return the key (shown once) and its row."""
    key = new_key()
    row = {
        "id": f"key_{uuid.uuid4().hex[:16]}",
        "name": fields.get("name") or "unnamed",
        "key_hash": hash_key(key),
        "prefix": key[: len(KEY_PREFIX) + 4],
        "models": list(fields.get("models") or []),
        "rpm": fields.get("rpm"),
        "tpm": fields.get("tpm"),
        "budget": fields.get("budget"),
        "budget_period": fields.get("budget_period") or "total",
        "created": time.time(),
        "expires": fields.get("expires"),
        "revoked": None,
    }
    await key_rows.insert_key(engine, row)
    return key, row


class KeyEvents:
    """Redis pub/sub of key changes: every replica drops its key cache when any key changes."""

    def __init__(self, redis: Any, namespace: str, ring: KeyRing) -> None:
        self.redis = redis
        self.channel = f"{namespace}:keys"
        self.ring = ring
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def publish(self, key_id: str) -> None:
        """Tell every replica; if Redis is away, they see the change when their cache entries expire."""
        try:
            await self.redis.publish(self.channel, key_id)
        except Exception as exc:
            log.warning("quasar: key events: could not publish a key change (%s)", type(exc).__name__)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="quasar-key-events")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), 2)

    async def _listen(self) -> None:
        connected = True  # until shown otherwise: the first failure is reported
        while True:
            try:
                pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
                async with pubsub:
                    await pubsub.subscribe(self.channel)
                    self.ring.ttl = SHARED_TTL_S
                    self.ring.invalidate()  # changes made while unsubscribed
                    self._subscribed.set()
                    connected = True
                    async for _message in pubsub.listen():
                        self.ring.invalidate()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if connected:
                    log.warning("quasar: key events: Redis unavailable (%s); key cache lifetime 1s", type(exc).__name__)
                connected = False
            self.ring.ttl = LOCAL_TTL_S
            await asyncio.sleep(1)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
