"""KeyRing over a real SQLite store: requests that find "does the store hold any key?" stale at once share
one query (each used to run its own, and the pool opened connections past its size every second)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.ext.asyncio import create_async_engine

from quasar.auth.managed import KeyRing
from quasar.auth.principal import ANONYMOUS
from quasar.auth.static import StaticKeys
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
