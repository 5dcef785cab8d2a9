"""Open the database a URL names: SQLite (aiosqlite, WAL) or PostgreSQL (asyncpg), one code path.

`sqlite:///quasar.db` and `postgresql://user@host/db` are accepted as written; the async driver is
filled in here. A PostgreSQL URL may carry `?search_path=SCHEMA` to keep Quasar's tables in one schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from quasar.errors import ConfigError
from quasar.store.rollup_sql import register_sqlite

CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class DatabaseURL:
    url: URL
    search_path: str | None = None

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    @property
    def sqlite_path(self) -> Path | None:
        if not self.is_sqlite or not self.url.database or self.url.database == ":memory:":
            return None
        return Path(self.url.database)

    def safe(self) -> str:
        """The URL with any password hidden, for messages."""
        return self.url.render_as_string(hide_password=True)


def parse_database_url(text: str) -> DatabaseURL:
    try:
        url = make_url(text)
    except Exception:
        raise ConfigError("store.url: not a database URL (expected sqlite:///PATH or postgresql://...)") from None
    backend = url.get_backend_name()
    if backend == "sqlite":
        return DatabaseURL(url.set(drivername="sqlite+aiosqlite"))
    if backend in ("postgresql", "postgres"):
        query = dict(url.query)
        search_path = query.pop("search_path", None)
        if isinstance(search_path, tuple):
            search_path = search_path[-1]
        return DatabaseURL(url.set(drivername="postgresql+asyncpg", query=query), search_path)
    raise ConfigError(f"store.url: unsupported database {backend!r} (use sqlite or postgresql)")


def create_engine(db: DatabaseURL) -> AsyncEngine:
    # orjson for the JSON columns (messages, reply, trace, metadata): the stdlib encoder dominated the writer.
    kwargs: dict[str, Any] = {"pool_pre_ping": True, "json_serializer": _json_dumps, "json_deserializer": orjson.loads}
    if db.is_sqlite:
        kwargs["connect_args"] = {"timeout": 30}
    else:
        settings = {"search_path": db.search_path} if db.search_path else {}
        kwargs["connect_args"] = {"timeout": CONNECT_TIMEOUT_S, "server_settings": settings}
        kwargs["pool_size"] = 5
        kwargs["max_overflow"] = 5
        kwargs["pool_timeout"] = CONNECT_TIMEOUT_S
    if db.sqlite_path is not None:
        db.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(db.url, **kwargs)
    if db.is_sqlite:
        event.listen(engine.sync_engine, "connect", lambda dbapi_connection, _record: sqlite_pragmas(dbapi_connection))
    return engine


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def sqlite_pragmas(dbapi_connection: Any) -> None:
    """WAL, normal sync, a 30 s busy wait, a page cache of up to 16 MiB (SQLite's default 2 MiB is less than
    the rollup rows of a 30-day dashboard query) and the rollups' quasar_hist_add, on every SQLite connection
    Quasar opens."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA cache_size=-16384")
    cursor.close()
    register_sqlite(dbapi_connection)
