"""Managed API keys in the database: only the SHA-256 of a key is stored, never the key."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from quasar.store.schema import api_keys, plain

MAX_RATE = 2**31 - 1  # rpm and tpm are Integer columns: 32-bit signed on Postgres
EDITABLE = ("name", "models", "rpm", "tpm", "budget", "budget_period", "expires")


async def insert_key(engine: AsyncEngine, row: dict[str, Any]) -> None:
    async with engine.begin() as conn:
        await conn.execute(insert(api_keys).values(**row))


async def by_hash(engine: AsyncEngine, key_hash: str) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(api_keys).where(api_keys.c.key_hash == key_hash))).mappings().first()
    return plain(row) if row else None


async def by_id(engine: AsyncEngine, key_id: str) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(api_keys).where(api_keys.c.id == key_id))).mappings().first()
    return plain(row) if row else None


async def all_keys(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(api_keys).order_by(api_keys.c.created))).mappings().all()
    return [plain(r) for r in rows]


async def update_key(engine: AsyncEngine, key_id: str, changes: dict[str, Any]) -> dict[str, Any] | None:
    values = {k: v for k, v in changes.items() if k in EDITABLE}
    if values:
        async with engine.begin() as conn:
            await conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(**values))
    return await by_id(engine, key_id)


async def revoke_key(engine: AsyncEngine, key_id: str) -> dict[str, Any] | None:
    async with engine.begin() as conn:
        await conn.execute(
            update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked.is_(None)).values(revoked=time.time())
        )
    return await by_id(engine, key_id)


async def any_key(engine: AsyncEngine) -> bool:
    """Whether the store holds any key row at all, revoked and expired ones included."""
    async with engine.connect() as conn:
        return (await conn.execute(select(api_keys.c.id).limit(1))).first() is not None
