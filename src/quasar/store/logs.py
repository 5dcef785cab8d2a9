"""Request log rows: batched inserts (idempotent by row id), reads by request id and by filter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from quasar.store.schema import plain, request_log


async def insert_rows(engine: AsyncEngine, rows: list[dict[str, Any]]) -> None:
    """Insert rows in one transaction; a row already there (same id) is skipped, so a retry is safe."""
    if not rows:
        return
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(request_log).on_conflict_do_nothing(index_elements=["id"])
    async with engine.begin() as conn:
        await conn.execute(statement, rows)


async def get_request(engine: AsyncEngine, request_id: str) -> dict[str, Any] | None:
    query = select(request_log).where(request_log.c.request_id == request_id).order_by(request_log.c.created.desc())
    async with engine.connect() as conn:
        row = (await conn.execute(query.limit(1))).mappings().first()
    return plain(row) if row else None


@dataclass(frozen=True)
class LogFilter:
    key_id: str | None = None
    customer_identifier: str | None = None
    model: str | None = None
    status: str | None = None
    since: float | None = None
    until: float | None = None

    def apply(self, query: Select) -> Select:
        c = request_log.c
        for column, value in (
            (c.key_id, self.key_id),
            (c.customer_identifier, self.customer_identifier),
            (c.model, self.model),
            (c.status, self.status),
        ):
            if value is not None:
                query = query.where(column == value)
        if self.since is not None:
            query = query.where(c.created >= self.since)
        if self.until is not None:
            query = query.where(c.created < self.until)
        return query


async def recent(engine: AsyncEngine, where: LogFilter, limit: int) -> list[dict[str, Any]]:
    """The newest `limit` rows matching, oldest first."""
    query = where.apply(select(request_log)).order_by(request_log.c.created.desc()).limit(limit)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [plain(r) for r in reversed(rows)]
