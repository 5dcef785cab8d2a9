"""Stored Responses API answers: one row per response created with `store` on (the default).

A row holds the conversation up to the answer (`input`: the previous response's conversation, then
this request's items) and the Response object as returned. It is written once, on the request path,
before the answer leaves (so a follow-up naming it finds it); it is read only when a request names it
in `previous_response_id`, or by GET and DELETE.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from quasar.store.schema import plain, responses


async def insert_response(engine: AsyncEngine, row: dict[str, Any]) -> None:
    async with engine.begin() as conn:
        await conn.execute(insert(responses).values(**row))


async def get_response(engine: AsyncEngine, response_id: str) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(responses).where(responses.c.id == response_id))).mappings().first()
    return plain(row) if row else None


async def delete_response(engine: AsyncEngine, response_id: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(delete(responses).where(responses.c.id == response_id))
