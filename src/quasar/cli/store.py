"""quasar db | keys | logs | usage: the store from the command line."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import orjson
import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from quasar.auth.managed import create_key, parse_expiry, public
from quasar.config import Settings, load_settings
from quasar.errors import ConfigError, QuasarError
from quasar.store import keys as key_rows
from quasar.store import migrate
from quasar.store.database import create_engine, parse_database_url
from quasar.store.logs import LogFilter, recent
from quasar.store.usage import GROUPS, usage
from quasar.timeparse import parse_time

T = TypeVar("T")
CONFIG = typer.Option(None, "--config", "-c", help="YAML config file (QUASAR_CONFIG).")
db_app = typer.Typer(no_args_is_help=True, help="The database: migrations.")
keys_app = typer.Typer(no_args_is_help=True, help="Managed API keys.")


def _fail(message: str) -> None:
    typer.secho(f"quasar: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _settings(config: str | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        _fail(str(exc))
        raise


def _run(config: str | None, work: Callable[[AsyncEngine, Settings], Awaitable[T]], *, check: bool = True) -> T:
    """Open the configured database (schema checked; SQLite upgraded), run `work`, close it."""
    return _run_with(_settings(config), work, check=check)


def _run_with(settings: Settings, work: Callable[[AsyncEngine, Settings], Awaitable[T]], *, check: bool = True) -> T:
    async def main() -> T:
        db = parse_database_url(settings.store.url)
        engine = create_engine(db)
        try:
            if check:
                await migrate.check(engine, upgrade_if_older=db.is_sqlite)
            return await work(engine, settings)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except (migrate.SchemaMismatch, ConfigError, QuasarError) as exc:
        _fail(str(exc))
        raise
    except OSError as exc:
        _fail(f"cannot reach the database: {exc}")
        raise
    except SQLAlchemyError as exc:  # the driver's own message: no SQL, no parameters
        _fail(f"database error: {getattr(exc, 'orig', None) or type(exc).__name__}")
        raise


async def _announce(settings: Settings, key_id: str) -> None:
    """Tell running replicas that a key changed (they drop their key caches)."""
    if not settings.redis_url:
        return
    import redis.asyncio as aioredis

    client = aioredis.from_url(settings.redis_url, socket_connect_timeout=5)
    try:
        await client.publish(f"{settings.redis_namespace}:keys", key_id)
    finally:
        await client.aclose()


def check_store(settings: Settings) -> bool:
    """Before serving: the schema must match this code (SQLite is upgraded); exits with the reason if not.

    Returns whether the store holds any managed key (revoked ones too): then the server requires a key.
    """

    async def work(engine: AsyncEngine, _: Settings) -> bool:
        return await key_rows.any_key(engine)

    return _run_with(settings, work)


@db_app.command("upgrade")
def db_upgrade(config: str = CONFIG) -> None:
    """Apply the migrations the database lacks (none drops data)."""

    async def work(engine: AsyncEngine, _: Settings) -> tuple[str | None, str]:
        return await migrate.upgrade(engine)

    before, after = _run(config, work, check=False)
    if before == after:
        typer.echo(f"quasar: database already at revision {after}")
    else:
        typer.echo(f"quasar: database upgraded from {before or 'empty'} to revision {after}")


@db_app.command("status")
def db_status(config: str = CONFIG) -> None:
    """Show the database's schema revision and the one this Quasar needs."""

    async def work(engine: AsyncEngine, _: Settings) -> str | None:
        return await migrate.current_revision(engine)

    current = _run(config, work, check=False)
    typer.echo(f"database revision: {current or 'none'}; this Quasar needs: {migrate.head()}")


def _key_fields(
    name: str | None, models: str | None, rpm: int | None, tpm: int | None, budget: float | None,
    budget_period: str | None, expires: str | None,
) -> dict[str, Any]:  # fmt: skip
    fields: dict[str, Any] = {}
    if name is not None:
        fields["name"] = name
    if models is not None:
        fields["models"] = [m.strip() for m in models.split(",") if m.strip()]
    for field, value in (("rpm", rpm), ("tpm", tpm), ("budget", budget), ("budget_period", budget_period)):
        if value is not None:
            fields[field] = value
    if budget_period not in (None, "total", "day", "month"):
        _fail("--budget-period must be total, day or month")
    if budget is not None and not math.isfinite(budget):
        _fail("--budget must be a finite number of USD")
    if expires is not None:
        try:
            fields["expires"] = parse_expiry(expires)
        except QuasarError:
            _fail(f"--expires: {expires!r} is neither a duration (30d, 12h), an ISO 8601 time nor epoch seconds")
    return fields


NAME = typer.Option(None, help="A name for the key.")
MODELS = typer.Option(None, help="Comma-separated models the key may use (default: all).")
RPM = typer.Option(None, min=1, max=key_rows.MAX_RATE, help="Requests per minute.")
TPM = typer.Option(None, min=1, max=key_rows.MAX_RATE, help="Tokens per minute.")
BUDGET = typer.Option(None, min=0, help="Budget in USD.")
PERIOD = typer.Option(None, help="Budget period: total, day or month (default total).")
EXPIRES = typer.Option(None, help="Expiry: a duration (30d, 12h), an ISO 8601 time or epoch seconds.")


@keys_app.command("create")
def keys_create(
    name: str = NAME, models: str = MODELS, rpm: int = RPM, tpm: int = TPM, budget: float = BUDGET,
    budget_period: str = PERIOD, expires: str = EXPIRES, config: str = CONFIG,
    as_json: bool = typer.Option(False, "--json", help="Print the key and its row as JSON."),
) -> None:  # fmt: skip
    """Create a key. It is printed once; the store keeps only its hash."""
    fields = _key_fields(name, models, rpm, tpm, budget, budget_period, expires)

    async def work(engine: AsyncEngine, settings: Settings) -> tuple[str, dict[str, Any]]:
        key, row = await create_key(engine, fields)
        await _announce(settings, row["id"])
        return key, row

    key, row = _run(config, work)
    if as_json:
        typer.echo(orjson.dumps({**public(row), "key": key}).decode())
    else:
        typer.echo(key)
        typer.echo(f"quasar: created {row['id']} ({row['name']}); the key above is shown only now", err=True)
    typer.echo("quasar: with a managed key in the store, the server requires an API key on every request", err=True)


@keys_app.command("list")
def keys_list(config: str = CONFIG) -> None:
    """List keys (never the keys themselves)."""

    async def work(engine: AsyncEngine, _: Settings) -> list[dict[str, Any]]:
        return await key_rows.all_keys(engine)

    table = Table("id", "name", "prefix", "models", "rpm", "tpm", "budget", "expires", "revoked")
    for row in _run(config, work):
        table.add_row(
            row["id"], row["name"], row["prefix"] + "…", ",".join(row["models"]) or "all",
            _opt(row["rpm"]), _opt(row["tpm"]),
            f"${row['budget']:g}/{row['budget_period']}" if row["budget"] is not None else "-",
            _when(row["expires"]), _when(row["revoked"]),
        )  # fmt: skip
    Console(width=160).print(table)


@keys_app.command("update")
def keys_update(
    key_id: str, name: str = NAME, models: str = MODELS, rpm: int = RPM, tpm: int = TPM, budget: float = BUDGET,
    budget_period: str = PERIOD, expires: str = EXPIRES, config: str = CONFIG,
) -> None:  # fmt: skip
    """Change a key's name, models, limits, budget or expiry."""
    fields = _key_fields(name, models, rpm, tpm, budget, budget_period, expires)

    async def work(engine: AsyncEngine, settings: Settings) -> dict[str, Any] | None:
        if await key_rows.by_id(engine, key_id) is None:
            return None
        row = await key_rows.update_key(engine, key_id, fields)
        await _announce(settings, key_id)
        return row

    row = _run(config, work)
    if row is None:
        _fail(f"no key with id {key_id}")
    typer.echo(f"quasar: updated {key_id}")


@keys_app.command("revoke")
def keys_revoke(key_id: str, config: str = CONFIG) -> None:
    """Revoke a key: every replica refuses it within a second."""

    async def work(engine: AsyncEngine, settings: Settings) -> dict[str, Any] | None:
        row = await key_rows.revoke_key(engine, key_id)
        if row is not None:
            await _announce(settings, key_id)
        return row

    if _run(config, work) is None:
        _fail(f"no key with id {key_id}")
    typer.echo(f"quasar: revoked {key_id}")


def _opt(value: Any) -> str:
    return "-" if value is None else str(value)


def _when(value: float | None) -> str:
    return "-" if value is None else datetime.fromtimestamp(value).strftime("%Y-%m-%d %H:%M:%S")


def _moment(value: str | None, option: str) -> float | None:
    """Epoch seconds, an ISO 8601 time, or a duration back from now (10m, 2h, 1d)."""
    try:
        return parse_time(value, option, durations="back")
    except QuasarError:
        _fail(f"{option}: {value!r} is neither an ISO 8601 time, epoch seconds nor a duration such as 1h")
        raise


def logs(
    tail: int = typer.Option(20, "--tail", "-n", min=1, help="How many recent rows."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new rows."),
    key: str = typer.Option(None, help="Only this key id."),
    customer: str = typer.Option(None, help="Only this customer_identifier."),
    model: str = typer.Option(None, help="Only this model."),
    status: str = typer.Option(None, help="Only this status: ok, error, truncated, cancelled."),
    since: str = typer.Option(None, help="Only rows since an ISO 8601 time or a duration ago (10m, 2h, 1d)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
    config: str = CONFIG,
) -> None:
    """Show the request log, newest last."""
    since_ = _moment(since, "--since")
    where = LogFilter(key_id=key, customer_identifier=customer, model=model, status=status, since=since_)

    def show(rows: list[dict[str, Any]]) -> None:
        for row in rows:
            if as_json:
                typer.echo(orjson.dumps(row).decode())
            else:
                stamp = datetime.fromtimestamp(row["created"]).strftime("%Y-%m-%d %H:%M:%S")
                typer.echo(
                    f"{stamp} {row['request_id']} {row['status']:<9} {row['http_status']} {row['model'] or '-'} "
                    f"key={row['key_id'] or '-'} customer={row['customer_identifier'] or '-'} "
                    f"tokens={row['prompt_tokens']}+{row['completion_tokens']} cost=${row['cost']:.6f} "
                    f"{row['latency_ms']:.0f}ms" + (f" error={row['error']}" if row["error"] else "")
                )

    async def work(engine: AsyncEngine, _: Settings) -> None:
        rows = await recent(engine, where, tail)
        show(rows)
        last = rows[-1]["created"] if rows else time.time()
        while follow:
            await asyncio.sleep(1)
            newer = await recent(engine, LogFilter(**{**where.__dict__, "since": last}), 1000)
            newer = [r for r in newer if r["created"] > last]
            show(newer)
            if newer:
                last = newer[-1]["created"]

    with contextlib.suppress(KeyboardInterrupt):
        _run(config, work)


def usage_command(
    group_by: str = typer.Option("model", "--group-by", "-g", help="model, key or customer."),
    since: str = typer.Option(None, "--from", help="Start: ISO 8601 time or a duration back from now (1d)."),
    until: str = typer.Option(None, "--to", help="End: ISO 8601 time."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    config: str = CONFIG,
) -> None:
    """Requests, tokens, cost, errors and latency, as a table."""
    if group_by not in GROUPS:
        _fail(f"--group-by must be one of {', '.join(GROUPS)}")

    where = LogFilter(since=_moment(since, "--from"), until=_moment(until, "--to"))

    async def work(engine: AsyncEngine, _: Settings) -> list[dict[str, Any]]:
        return await usage(engine, group_by, where)

    data = _run(config, work)
    if as_json:
        typer.echo(orjson.dumps(data).decode())
        return
    table = Table(
        group_by, "requests", "errors", "prompt tokens", "completion tokens", "cost (USD)", "p50 ms", "p95 ms"
    )
    for row in data:
        table.add_row(
            str(row[group_by] or "-"), str(row["requests"]), str(row["errors"]), str(row["prompt_tokens"]),
            str(row["completion_tokens"]), f"{row['cost']:.6f}", f"{row['p50_latency_ms'] or 0:.0f}",
            f"{row['p95_latency_ms'] or 0:.0f}",
        )  # fmt: skip
    Console(width=140).print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
    app.add_typer(keys_app, name="keys")
    app.command("logs")(logs)
    app.command("usage")(usage_command)
