"""KeyRing over a real SQLite store: requests that find an answer stale at once share one query (each used to
run its own, and the pool opened connections past its size every second), and a revocation that lands while
a lookup is in flight is not undone by that lookup's answer."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from quasar.auth.managed import KeyRing, create_key
from quasar.auth.principal import ANONYMOUS, Principal
from quasar.auth.static import StaticKeys
from quasar.errors import AuthenticationFailed
from quasar.store.schema import metadata


def test_concurrent_requests_share_one_query_for_whether_keys_exist(tmp_path: Path) -> None:
    async def run() -> tuple[list[object], int, int]:
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}")
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        queries = []
        event.listen(engine.sync_engine, "before_cursor_execute", lambda *args: queries.append(args[2]))
        ring = KeyRing(StaticKeys([], None), engine, ttl=0.2)
        first = await asyncio.gather(*(ring.authenticate(None) for _ in range(20)))
        after_first = len(queries)
        await asyncio.sleep(0.3)  # stale again: one more query for the next wave
        second = await asyncio.gather(*(ring.authenticate(None) for _ in range(20)))
        await engine.dispose()
        return first + second, after_first, len(queries)

    principals, after_first, total = asyncio.run(run())
    assert all(p is ANONYMOUS for p in principals)
    assert (after_first, total) == (1, 2)


def _store(tmp_path: Path) -> tuple[AsyncEngine, list[str]]:
    """A SQLite store with the schema, and the list every statement it runs is appended to."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}")
    queries: list[str] = []
    event.listen(engine.sync_engine, "before_cursor_execute", lambda *args: queries.append(args[2]))
    return engine, queries


def test_concurrent_requests_with_one_stale_key_share_one_lookup(tmp_path: Path) -> None:
    async def run() -> tuple[list[Principal], int]:
        engine, queries = _store(tmp_path)
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        key, _ = await create_key(engine, {"name": "k"})
        ring = KeyRing(StaticKeys([], None), engine, ttl=60)
        queries.clear()
        principals = await asyncio.gather(*(ring.authenticate(f"Bearer {key}") for _ in range(20)))
        await engine.dispose()
        return principals, sum("api_keys.key_hash" in q for q in queries)

    principals, lookups = asyncio.run(run())
    assert len({p.key_id for p in principals}) == 1 and lookups == 1


def test_a_key_revoked_while_its_lookup_is_in_flight_is_refused_next(tmp_path: Path) -> None:
    """The revocation lands between the lookup's read and its caching: the row read before it must not be
    cached, or the revoked key would be accepted for the cache's lifetime."""

    async def run() -> tuple[Principal, BaseException | None]:
        engine, _ = _store(tmp_path)
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        key, row = await create_key(engine, {"name": "k"})
        ring = KeyRing(StaticKeys([], None), engine, ttl=60)
        armed = [True]

        def revoke_now(conn: object, cursor: object, statement: str, *args: object) -> None:
            if armed and "api_keys.key_hash" in statement:  # the lookup has read the key, not yet cached it
                armed.clear()
                with sqlite3.connect(tmp_path / "keys.db") as plain:  # as another replica's admin call would
                    plain.execute("UPDATE api_keys SET revoked = ? WHERE id = ?", (time.time(), row["id"]))
                ring.invalidate()  # and the revocation event reaching this replica

        event.listen(engine.sync_engine, "after_cursor_execute", revoke_now)
        first = await ring.authenticate(f"Bearer {key}")  # read before the revocation: answered
        try:
            await ring.authenticate(f"Bearer {key}")
            refused = None
        except AuthenticationFailed as exc:
            refused = exc
        await engine.dispose()
        return first, refused

    first, refused = asyncio.run(run())
    assert first.key_id is not None
    assert isinstance(refused, AuthenticationFailed) and refused.code == "api_key_revoked"
