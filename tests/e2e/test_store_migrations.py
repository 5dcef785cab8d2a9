"""Schema versions: `quasar db upgrade`, SQLite upgraded on start, a replica refuses a schema it does not match."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import time

from quasar.store.migrate import MIGRATIONS, head
from tests.server import quasar_server
from tests.store_support import cli, pg_schema, priced_config, tmp_sqlite_url


def refusal(config: str, env: dict[str, str]) -> str:
    """Start Quasar expecting it to refuse; return what it printed."""
    with quasar_server(config, env=env, wait_ready=False) as running:
        try:
            running.process.wait(60)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"Quasar started on a mismatched schema:\n{running.log()}") from None
        assert running.process.returncode != 0
        return running.log()


def test_postgres_needs_db_upgrade_then_starts() -> None:
    with pg_schema() as url:
        env = {"QUASAR_DATABASE_URL": url}
        log = refusal(priced_config(), env)
        assert "run `quasar db upgrade`" in log and "has no Quasar schema" in log
        assert f"revision {head()}" in cli("db", "upgrade", env=env).stdout
        assert "already at" in cli("db", "upgrade", env=env).stdout
        assert f"database revision: {head()}" in cli("db", "status", env=env).stdout
        with quasar_server(priced_config(), env=env) as running:
            assert running.process.poll() is None


def test_sqlite_is_upgraded_on_start_and_a_newer_schema_is_refused() -> None:
    url = tmp_sqlite_url()
    env = {"QUASAR_DATABASE_URL": url}
    cli("keys", "create", "--name", "made-before", env=env)  # the CLI upgrades an empty SQLite file too
    path = url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] == head()
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.execute("UPDATE alembic_version SET version_num = 'f00d'")
    started = time.monotonic()
    log = refusal(priced_config(), env)
    assert "newer than this Quasar knows" in log and time.monotonic() - started < 30
    bad = cli("keys", "list", env=env, check=False)
    assert bad.returncode != 0 and "newer" in bad.stderr
    with sqlite3.connect(path) as conn:  # refusing touched nothing
        assert conn.execute("SELECT count(*) FROM api_keys").fetchone()[0] == 1


def test_no_migration_drops_data() -> None:
    dropping = re.compile(r"op\.drop_|DROP\s+(TABLE|COLUMN)|TRUNCATE|DELETE\s+FROM", re.IGNORECASE)
    for path in (MIGRATIONS / "versions").glob("*.py"):
        body = path.read_text().split("def downgrade", 1)[0]
        assert not dropping.search(body), f"{path.name} drops data in its upgrade"
