"""`quasar chat`: an interactive streaming chat in the terminal against a running Quasar, or (`--local`)
a private one serving the built-in model (cli/local.py).

Plain stdlib HTTP (http.client), so that it works wherever `quasar` is installed. Each line typed is a
user message; the reply streams as it is generated, then its token count and tokens/s. The history is
kept for the session. Commands: /model NAME, /system TEXT, /clear, /exit (or end of input).
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import typer

HELP = "Commands: /model NAME, /system TEXT, /clear, /exit"


class ChatFailed(Exception):
    """The server refused or failed a request; its error message, as the envelope gives it."""


@dataclass
class Session:
    url: str
    key: str | None
    model: str | None = None
    system: str | None = None
    max_tokens: int | None = None
    history: list[dict[str, str]] = field(default_factory=list)

    def _connection(self) -> http.client.HTTPConnection:
        parts = urlsplit(self.url)
        kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        return kind(parts.hostname or "127.0.0.1", parts.port, timeout=300)

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> http.client.HTTPResponse:
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream, application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        prefix = urlsplit(self.url).path.rstrip("/")
        connection = self._connection()
        connection.request(method, prefix + path, json.dumps(body) if body is not None else None, headers)
        response = connection.getresponse()
        if response.status >= 400:
            raise ChatFailed(_error_message(response.read(), response.status))
        return response

    def models(self) -> list[str]:
        return [m["id"] for m in json.loads(self._request("GET", "/v1/models").read())["data"]]

    def ask(self, text: str) -> Iterator[str]:
        """Send `text` with the history; yield the reply's pieces; then keep both in the history."""
        reply: list[str] = []
        for piece in self.ask_once(text, self.max_tokens):
            reply.append(piece)
            yield piece
        self.history += [{"role": "user", "content": text}, {"role": "assistant", "content": "".join(reply)}]

    def ask_once(self, text: str, max_tokens: int | None = None) -> Iterator[str]:
        """Send `text` after the history, streamed; yield the reply's pieces (`usage` is set at the end)."""
        messages = ([{"role": "system", "content": self.system}] if self.system else []) + self.history
        messages.append({"role": "user", "content": text})
        body: dict[str, Any] = {"model": self.model, "messages": messages, "stream": True}
        body["stream_options"] = {"include_usage": True}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        response = self._request("POST", "/v1/chat/completions", body)
        self.usage: dict[str, Any] | None = None
        for data in _events(response):
            if "error" in data:
                raise ChatFailed(data["error"].get("message") or "the stream failed")
            if data.get("usage"):
                self.usage = data["usage"]
            for choice in data.get("choices") or ():
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    yield piece


def _events(response: http.client.HTTPResponse) -> Iterator[dict[str, Any]]:
    """The JSON of each `data:` event of a server-sent event stream, until [DONE]."""
    for raw in response:
        line = raw.decode("utf-8", errors="replace").strip()
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            return
        yield json.loads(payload)


def _error_message(body: bytes, status: int) -> str:
    try:
        return f"{status}: {json.loads(body)['error']['message']}"
    except (ValueError, KeyError, TypeError):
        return f"{status}: {body[:200].decode(errors='replace')}"


def chat(
    model: str = typer.Option(None, "--model", "-m", help="Model to talk to (default: the server's first)."),
    url: str = typer.Option(None, help="The server (QUASAR_URL; default http://127.0.0.1:8000)."),
    key: str = typer.Option(None, help="API key (QUASAR_API_KEY), if the server needs one."),
    local: bool = typer.Option(False, "--local", help="Start a private server with the built-in model instead."),
    max_tokens: int = typer.Option(None, "--max-tokens", min=1, help="Longest reply, in tokens."),
) -> None:
    """Chat with a running Quasar (or, with --local, the built-in model) in the terminal, streaming each reply."""
    if not local:
        url = url or os.environ.get("QUASAR_URL") or "http://127.0.0.1:8000"
        _converse(Session(url, key or os.environ.get("QUASAR_API_KEY"), max_tokens=max_tokens), model)
        return
    from quasar.cli.local import LocalFailed, local_server

    try:
        with local_server() as private:
            _converse(Session(private, None, max_tokens=max_tokens), model)
    except LocalFailed as exc:
        typer.secho(f"quasar: the built-in model did not start: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None


def _converse(session: Session, model: str | None) -> None:
    """Read lines until /exit or the end of input; each a message or a command."""
    try:
        session.model = model or session.models()[0]
    except (OSError, ChatFailed) as exc:
        typer.secho(
            f"quasar: cannot reach {session.url}: {exc} (start one with `quasar serve`, or use --local)",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(1) from None
    interactive = sys.stdin.isatty()
    typer.echo(f"quasar chat: {session.model} at {session.url}. {HELP}", err=True)
    while True:
        try:
            line = input("> " if interactive else "").strip()
        except (EOFError, KeyboardInterrupt):
            break
        if not line:
            continue
        if line.startswith("/") and not _command(session, line):
            break
        if line.startswith("/"):
            continue
        _answer(session, line)


def _command(session: Session, line: str) -> bool:
    """Run one /command; False to end the session."""
    name, _, arg = line.partition(" ")
    arg = arg.strip()
    if name in ("/exit", "/quit"):
        return False
    if name == "/model" and arg:
        session.model = arg
        typer.echo(f"model: {arg}", err=True)
    elif name == "/system":
        session.system = arg or None
        typer.echo(f"system: {arg or '(none)'}", err=True)
    elif name == "/clear":
        session.history.clear()
        typer.echo("history cleared", err=True)
    else:
        typer.echo(HELP, err=True)
    return True


def _answer(session: Session, text: str) -> None:
    """Stream one reply to stdout, then its tokens and tokens/s to stderr."""
    started = time.perf_counter()
    first: float | None = None
    pieces = 0
    try:
        for piece in session.ask(text):
            first = first or time.perf_counter()
            pieces += 1
            sys.stdout.write(piece)
            sys.stdout.flush()
    except (OSError, ChatFailed) as exc:
        typer.secho(f"\nquasar: {exc}", fg=typer.colors.RED, err=True)
        return
    except KeyboardInterrupt:
        typer.echo("\n(interrupted)", err=True)
        return
    sys.stdout.write("\n")
    sys.stdout.flush()
    tokens = (session.usage or {}).get("completion_tokens") or pieces
    took = time.perf_counter() - (first or started)
    rate = f", {tokens / took:.1f} tokens/s" if took > 0 and tokens > 1 else ""
    typer.echo(
        f"[{session.model}: {tokens} tokens{rate}, first token after {((first or started) - started):.2f} s]", err=True
    )
