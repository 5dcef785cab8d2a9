"""Schema versions: Alembic, run programmatically against the package's own migrations directory."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from quasar.observability.progress import step

MIGRATIONS = Path(__file__).parent / "migrations"


class SchemaMismatch(Exception):
    """The database's schema is not the one this Quasar's code expects."""


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _known(connection: Connection) -> tuple[str | None, str, bool]:
    current = _current(connection)
    script = ScriptDirectory.from_config(_config())
    try:
        known = current is None or script.get_revision(current) is not None
    except Exception:
        known = False
    return current, head(), known


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> tuple[str | None, str]:
    """Apply every migration the database lacks, up to `revision` (benchmarks and tests stop short of the
    head to fill an older schema); (revision before, revision after)."""
    async with engine.begin() as conn:
        before, target, known = await conn.run_sync(_known)
        if not known:
            raise SchemaMismatch(_newer(before, target))
        target = target if revision == "head" else revision
        if before != target:
            doing = f"quasar: migrating the database from {before or 'empty'} to revision {target}"
            with step(doing, f"quasar: database migrated to revision {target}"):
                await conn.run_sync(lambda c: command.upgrade(_config(c), target))
    return before, target


async def check(engine: AsyncEngine, *, upgrade_if_older: bool) -> None:
    """Refuse a schema newer or older than the code (older is upgraded when `upgrade_if_older`)."""
    async with engine.connect() as conn:
        current, target, known = await conn.run_sync(_known)
    if not known:
        raise SchemaMismatch(_newer(current, target))
    if current == target:
        return
    if upgrade_if_older:
        await upgrade(engine)
        return
    found = f"is at revision {current}" if current else "has no Quasar schema"
    raise SchemaMismatch(
        f"the database {found}, but this Quasar needs revision {target}: run `quasar db upgrade` first"
    )


def _newer(current: str | None, target: str) -> str:
    return (
        f"the database schema is at revision {current}, which is newer than this Quasar knows (its latest is "
        f"{target}): upgrade Quasar on this machine before starting it"
    )
