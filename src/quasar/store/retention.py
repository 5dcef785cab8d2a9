"""Retention: the request log's old rows deleted, and older content dropped, in the background.

`store.retention_days`: rows older than that are deleted. `store.content_retention_days`: past that a
row keeps its usage (tokens, cost, latency, status) but loses `messages` and `reply`. Both run on
SQLite and PostgreSQL alike, through the created index, BATCH_ROWS rows per short transaction with a
pause between them, so the log writer's inserts are never held up for more than one batch.

Space: PostgreSQL's autovacuum makes deleted rows' space reusable (a plain `VACUUM request_log`
returns nothing to the OS either; `VACUUM FULL` does, under a lock). SQLite reuses freed pages for new
rows; a database created by this version has `auto_vacuum=INCREMENTAL`, and after each run the job
returns the freed pages to the file system (`PRAGMA incremental_vacuum`). An older SQLite file keeps
its size until `VACUUM` is run on it once, with Quasar stopped (documented in docs/operations.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from pathlib import Path

from sqlalchemy import null, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from quasar.config import StoreConfig
from quasar.store.schema import request_log

log = logging.getLogger("quasar.store")

BATCH_ROWS = 500
PAUSE_S = 0.05  # between batches: the log writer's inserts go in here
FIRST_RUN_S = 1.0  # after the store opens
INTERVAL_S = 3600.0
DAY_S = 86400.0
VACUUM_PAGES = 2000  # SQLite pages freed per step (8 MB at 4 kB a page)


class Retention:
    def __init__(
        self, engine: AsyncEngine, config: StoreConfig, sqlite_path: Path | None = None, *, batch_rows: int = BATCH_ROWS
    ) -> None:
        self.engine = engine
        self.sqlite_path = sqlite_path  # a SQLite file: its space is given back after each run
        self.config = config
        self.batch_rows = batch_rows
        self._content_done_until = 0.0  # rows created before this have had their content dropped
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self.config.retention_days is not None or self.config.content_retention_days is not None

    def start(self) -> None:
        if self.enabled:
            self._task = asyncio.create_task(self._run(), name="quasar-retention")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        await asyncio.sleep(FIRST_RUN_S)
        while True:
            try:
                deleted, stripped = await self.run_once()
                if deleted or stripped:
                    log.info("quasar: retention: %d log rows deleted, %d stripped of content", deleted, stripped)
            except Exception as exc:  # the database away: try again next time
                log.warning("quasar: retention: skipped this run (%s)", type(exc).__name__)
            await asyncio.sleep(INTERVAL_S)

    async def run_once(self, now: float | None = None) -> tuple[int, int]:
        """One pass: the rows deleted and the rows whose content was dropped."""
        now = time.time() if now is None else now
        deleted = stripped = 0
        if self.config.retention_days is not None:
            deleted = await self._delete_before(now - self.config.retention_days * DAY_S)
        if self.config.content_retention_days is not None:
            stripped = await self._strip_before(now - self.config.content_retention_days * DAY_S)
        if deleted or stripped:
            await self._reclaim()
        return deleted, stripped

    async def _delete_before(self, cut: float) -> int:
        total = 0
        while True:
            async with self.engine.begin() as conn:
                ids = select(request_log.c.id).where(request_log.c.created < cut).limit(self.batch_rows)
                result = await conn.execute(request_log.delete().where(request_log.c.id.in_(ids.scalar_subquery())))
            total += result.rowcount
            if result.rowcount < self.batch_rows:
                return total
            await asyncio.sleep(PAUSE_S)

    async def _strip_before(self, cut: float) -> int:
        """Drop messages and reply of rows created before `cut`, oldest first, from where the last run
        stopped (so the stripped rows are not read again)."""
        total = 0
        columns = request_log.c
        while True:
            async with self.engine.begin() as conn:
                batch = (
                    await conn.execute(
                        select(columns.id, columns.created)
                        .where(columns.created >= self._content_done_until, columns.created < cut)
                        .where(columns.messages.is_not(None) | columns.reply.is_not(None))
                        .order_by(columns.created)
                        .limit(self.batch_rows)
                    )
                ).all()
                if batch:
                    ids = [row.id for row in batch]
                    await conn.execute(
                        update(request_log).where(columns.id.in_(ids)).values(messages=null(), reply=null())
                    )
            total += len(batch)
            if len(batch) < self.batch_rows:
                self._content_done_until = cut
                return total
            self._content_done_until = batch[-1].created
            await asyncio.sleep(PAUSE_S)

    async def _reclaim(self) -> None:
        """SQLite with incremental auto-vacuum: give the freed pages back to the file system, VACUUM_PAGES
        at a time (each step holds the write lock)."""
        if self.sqlite_path is None:
            return
        while await asyncio.to_thread(_vacuum_some, self.sqlite_path, VACUUM_PAGES):
            await asyncio.sleep(PAUSE_S)


def _vacuum_some(path: Path, pages: int) -> int:
    """Free up to `pages` pages of an incremental auto-vacuum database; the free pages left (0 if the
    database is not in that mode: there is nothing this can do)."""
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
            return 0
        # executescript steps the pragma to its end; execute() frees one page per call
        conn.executescript(f"PRAGMA incremental_vacuum({pages});")
        return conn.execute("PRAGMA freelist_count").fetchone()[0]
    finally:
        conn.close()


async def prepare_sqlite(engine: AsyncEngine) -> None:
    """A SQLite database with no tables yet gets incremental auto-vacuum (it cannot be set later
    without a VACUUM): retention then returns the space of deleted rows."""
    async with engine.connect() as conn:
        tables = (await conn.execute(text("SELECT count(*) FROM sqlite_master WHERE type = 'table'"))).scalar()
        if not tables:
            await conn.exec_driver_sql("PRAGMA auto_vacuum = INCREMENTAL")
            await conn.exec_driver_sql("VACUUM")  # writes the setting into the (empty) file at once
