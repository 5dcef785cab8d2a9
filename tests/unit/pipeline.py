"""The chat service in-process, on a real SQLite store, with in-process limits and cache."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson

from quasar.accounting.cache import LocalCache
from quasar.accounting.limits import LocalLimits
from quasar.accounting.meter import Meter
from quasar.auth.managed import KeyRing
from quasar.auth.static import StaticKeys
from quasar.catalog import ModelEntry
from quasar.config import Settings
from quasar.service import Call, ChatService
from quasar.store import Store


@contextlib.asynccontextmanager
async def chat_service(
    settings: Settings, models: dict[str, ModelEntry], tmp_path: Path
) -> AsyncIterator[tuple[ChatService, Store]]:
    settings.store.url = f"sqlite:///{tmp_path / 'q.db'}"
    store = Store(settings.store)
    await store.open()
    keys = KeyRing(StaticKeys(settings.auth.api_keys, settings.auth.master_key), store.engine)
    meter = Meter(settings.limits, LocalLimits())
    service = ChatService(settings, models, keys=keys, meter=meter, cache=LocalCache(10), log=store.writer)
    try:
        yield service, store
    finally:
        await meter.close()
        await store.close()


def call(request_id: str, body: dict[str, Any], schema: Any = None) -> Call:
    raw = orjson.dumps(body)

    async def read() -> bytes:
        return raw

    return Call(request_id, None, read, schema) if schema else Call(request_id, None, read)


async def streamed(service: ChatService, request: Call, into: Callable[[dict], None] | None = None) -> list[dict]:
    """Every chunk of a streamed reply, passed to `into` as it arrives."""
    reply = await service.chat(request)
    assert reply.first is not None and reply.rest is not None
    chunks = [reply.first]
    if into:
        into(reply.first)
    async for chunk in reply.rest:
        chunks.append(chunk)
        if into:
            into(chunk)
    return chunks
