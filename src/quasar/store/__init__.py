"""The store: managed keys, the request log and usage, in SQLite or PostgreSQL through SQLAlchemy Core."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from quasar.config import StoreConfig
from quasar.store import migrate
from quasar.store.database import DatabaseURL, create_engine, parse_database_url
from quasar.store.logs import SqliteLog, insert_rows
from quasar.store.retention import Retention, prepare_sqlite
from quasar.store.spool import Spool
from quasar.store.writer import LogWriter

log = logging.getLogger("quasar.store")


class Store:
    """One database: its engine and the background writer of the request log."""

    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self.url: DatabaseURL = parse_database_url(config.url)
        self.engine: AsyncEngine = create_engine(self.url)
        sqlite_path = self.url.sqlite_path
        self.sqlite_log = SqliteLog(sqlite_path) if sqlite_path is not None else None
        self.writer = LogWriter(
            self.sqlite_log.insert if self.sqlite_log else functools.partial(insert_rows, self.engine),
            Spool(self.spool_dir()),
            batch_rows=config.batch_rows,
            buffer_rows=config.buffer_rows,
            flush_seconds=config.flush_seconds,
        )
        self.retention = Retention(self.engine, config, sqlite_path)

    def spool_dir(self) -> Path:
        if self.config.spool_dir:
            return Path(self.config.spool_dir)
        sqlite_path = self.url.sqlite_path
        return sqlite_path.parent if sqlite_path is not None else Path.cwd()

    async def open(self) -> None:
        """Check the schema (SQLite is upgraded in place), start the log writer and the retention job."""
        if self.url.is_sqlite:
            await prepare_sqlite(self.engine)
        await migrate.check(self.engine, upgrade_if_older=self.url.is_sqlite)
        self.writer.start()
        self.retention.start()

    async def close(self, timeout: float = 5.0) -> None:
        await self.retention.close()
        await self.writer.close(timeout)
        if self.sqlite_log is not None:
            await self.sqlite_log.close()
        await self.engine.dispose()
