"""Exact-match response cache: a non-streamed reply, keyed by everything in the request that shapes it.

What is stored is shared by every caller, so it holds only the reply itself: it is stored before
anything per-caller (the request breakdown with its metadata and customer) is added, a hit gets the
current caller's own, and a reply bought with a customer's own credentials is never stored or served.
In memory (an LRU with expiry) by default; in Redis, shared by every replica, when QUASAR_REDIS_URL is set.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from typing import Any, Protocol

import orjson

from quasar.api.chat import ChatRequest
from quasar.api.gateway import GatewayOptions

log = logging.getLogger("quasar.accounting.cache")
# Fields that say who asks or how to log and cache, not what the answer is.
NOT_IN_KEY = {
    "stream", "stream_options", "user", "customer_identifier", "metadata", "disable_log", "cache_enabled",
    "cache_ttl", "customer_credentials", "request_breakdown",
}  # fmt: skip


def cache_key(request: ChatRequest) -> str:
    data = request.model_dump(mode="json", exclude_none=True, by_alias=True)
    shaped = {k: v for k, v in data.items() if k not in NOT_IN_KEY}
    if request.came_as is not None:  # its reply may be that API's own answer (engines/anthropic.py)
        shaped["came_as"] = request.came_as
    return hashlib.sha256(orjson.dumps(shaped, option=orjson.OPT_SORT_KEYS)).hexdigest()


def shareable(options: GatewayOptions) -> bool:
    """Whether a reply to this request may be shared: not when it is paid for with the caller's own keys."""
    return not (options.customer_credentials or options.customer_api_keys)


class ResponseCache(Protocol):
    async def get(self, key: str) -> dict[str, Any] | None: ...

    async def put(self, key: str, reply: dict[str, Any], ttl: int) -> None: ...


class LocalCache:
    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    async def get(self, key: str) -> dict[str, Any] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return orjson.loads(entry[1])

    async def put(self, key: str, reply: dict[str, Any], ttl: int) -> None:
        self._entries[key] = (time.monotonic() + ttl, orjson.dumps(reply))
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


class RedisCache:
    def __init__(self, redis: Any, namespace: str) -> None:
        self.redis = redis
        self.prefix = f"{namespace}:cache:"

    async def get(self, key: str) -> dict[str, Any] | None:
        try:
            raw = await self.redis.get(self.prefix + key)
        except Exception as exc:
            log.warning("quasar: response cache unavailable (%s)", type(exc).__name__)
            return None
        return orjson.loads(raw) if raw else None

    async def put(self, key: str, reply: dict[str, Any], ttl: int) -> None:
        try:
            await self.redis.set(self.prefix + key, orjson.dumps(reply), ex=ttl)
        except Exception as exc:
            log.warning("quasar: response cache unavailable (%s)", type(exc).__name__)
