"""quasar serve | check | models"""

from __future__ import annotations

import errno
import ipaddress
import os
import signal
import socket
from enum import StrEnum

import typer
import uvicorn

from quasar import __version__
from quasar.cli.bench import bench
from quasar.cli.chat import chat
from quasar.cli.store import check_store, register
from quasar.config import environment_secrets, load_settings, redact
from quasar.errors import ConfigError
from quasar.observability.logs import STARTUP, configure, json_logs

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Quasar: one OpenAI-compatible chat API.")


class LogFormat(StrEnum):
    text = "text"
    json = "json"


def _show_version(show: bool) -> None:
    if show:
        typer.echo(f"quasar {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Print Quasar's version and exit."
    ),
) -> None:
    """Quasar: one OpenAI-compatible chat API."""
    configure("text", "warning", access=False)  # `serve` sets its own; for the others, long steps' progress


def _fail(message: str) -> None:
    """Say why in one line (a JSON object under `--log-format json`) and exit 2."""
    if json_logs():
        STARTUP.error("quasar: %s", message)
    else:
        typer.secho(f"quasar: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _listen(host: str, port: int) -> socket.socket:
    """The bound socket uvicorn will serve on; a port in use (or an address not ours) ends `serve` here."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        why = "the port is in use (is another server running there?)" if exc.errno == errno.EADDRINUSE else exc.strerror
        _fail(f"cannot listen on {host}:{port}: {why}")
    sock.set_inheritable(True)
    return sock


def _where(url: str) -> str:
    """The database as a person finds it: a SQLite file's absolute path, else the URL without its password."""
    from quasar.store.database import parse_database_url

    try:
        db = parse_database_url(url)
    except ConfigError:
        return "?"
    path = db.sqlite_path
    return str(path.resolve()) if path is not None else db.safe()


@app.command()
def serve(
    host: str = typer.Option(None, help="Address to bind (QUASAR_HOST; default 127.0.0.1)."),
    port: int = typer.Option(None, help="Port to bind (QUASAR_PORT; default 8000)."),
    config: str = typer.Option(None, "--config", "-c", help="YAML config file (QUASAR_CONFIG)."),
    insecure: bool = typer.Option(False, help="Allow a non-loopback bind with no API keys."),
    log_level: str = typer.Option("warning", help="Level of the log lines other than access lines."),
    log_format: LogFormat = typer.Option(LogFormat.text, help="Log lines as text, or one JSON object a line."),
    access_log: bool = typer.Option(
        False, help="One access line per request (request id, model, status, latency, tokens); costs CPU."
    ),
) -> None:
    """Serve the OpenAI-compatible API."""
    from quasar.cli.serving import QuasarServer
    from quasar.cli.tuning import tune_loaded_process
    from quasar.server import create_app
    from quasar.server.protocol import CorkedHttpToolsProtocol

    configure(log_format.value, log_level, access=access_log)  # type: ignore[arg-type]

    host = host or os.environ.get("QUASAR_HOST") or "127.0.0.1"
    port = port or int(os.environ.get("QUASAR_PORT") or 8000)
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        _fail(str(exc))
    sock = _listen(host, port)  # before anything says "serving" or migrates: a busy port is one line and exit 2
    store_has_keys = check_store(settings)
    open_server = not (settings.auth.api_keys or settings.auth.master_key or store_has_keys)
    if open_server and not is_loopback(host) and not insecure:
        _fail(
            f"refusing to serve on {host} with no API keys: anyone who can reach it could use it. "
            "Set QUASAR_API_KEYS (or auth.api_keys), create a key with `quasar keys create`, "
            "bind to 127.0.0.1, or pass --insecure."
        )
    failures: list[str] = []

    def on_load_failure(message: str) -> None:
        failures.append(message)
        os.kill(os.getpid(), signal.SIGTERM)

    try:
        application = create_app(
            settings,
            on_load_failure=on_load_failure,
            on_loaded=lambda: tune_loaded_process(settings),
            config_path=config or os.environ.get("QUASAR_CONFIG") or None,
        )
    except ConfigError as exc:
        _fail(redact(str(exc), environment_secrets(config)))
    base = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
    STARTUP.info("quasar: serving %s at %s/v1", ", ".join(settings.model_names()), base)
    if open_server:
        STARTUP.info("quasar: no API keys configured: the server is open, no key required")
    else:
        STARTUP.info("quasar: API keys required (Authorization: Bearer ...)")
    STARTUP.info("quasar: request log and keys in %s", _where(settings.store.url))
    config_ = uvicorn.Config(
        application,
        host=host,
        port=port,
        loop="uvloop",
        http=CorkedHttpToolsProtocol.with_timeouts(
            settings.server.header_timeout_seconds, settings.server.body_timeout_seconds
        ),
        log_level=log_level,
        log_config=None,  # logging is configured above: one format for every line
        access_log=False,  # Quasar writes its own access line, with what the request did
        proxy_headers=False,  # Quasar reads no client address; skips a middleware on every request
        timeout_graceful_shutdown=settings.server.shutdown_grace_seconds,  # applied by QuasarServer.shutdown
    )
    grace = settings.server.shutdown_grace_seconds
    QuasarServer(config_, grace=grace, on_listening=application.state.serving.set).run(sockets=[sock])
    if failures:
        _fail(f"could not start: {failures[0]}")


@app.command()
def check(config: str = typer.Option(..., "--config", "-c", help="YAML config file.")) -> None:
    """Validate a config file; name the line of each problem."""
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    from quasar.catalog import build_models

    try:
        build_models(settings)
    except ConfigError as exc:  # may quote a value the config took from the environment: show ${VAR} instead
        typer.echo(f"{config}: {redact(str(exc), environment_secrets(config))}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{config}: ok ({len(settings.models)} models)")


@app.command()
def models(config: str = typer.Option(None, "--config", "-c", help="YAML config file.")) -> None:
    """List the models a config serves."""
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        _fail(str(exc))
    for m in settings.models:
        engines = ", ".join(d.engine for d in m.deployments)
        typer.echo(f"{m.name}\t{engines}")


app.command()(chat)
app.command()(bench)
register(app)


def main() -> None:
    app(prog_name="quasar")
