"""Quasar's log lines, as text or as one JSON object a line (`quasar serve --log-format`).

Every line written while a request is being answered carries its request id: the RequestId
middleware puts it in `REQUEST_ID`, a context variable each request's task has its own copy of, and
`RequestIdFilter` copies it onto each log record. `access` writes the one access line per request,
from ChatService.end, with what the request's RequestRecord says.
"""

from __future__ import annotations

import logging
import sys
import time
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Literal

import orjson

from quasar.accounting.record import redact

if TYPE_CHECKING:
    from quasar.accounting.record import RequestRecord

REQUEST_ID: ContextVar[str | None] = ContextVar("quasar_request_id", default=None)
ACCESS = logging.getLogger("quasar.access")
STARTUP = logging.getLogger("quasar.serve")  # what `quasar serve` says as it starts, whatever the level
LogFormat = Literal["text", "json"]
# what an access line says, from the request's record
_ACCESS_FIELDS = (
    "model",
    "deployment",
    "provider",
    "status",
    "http_status",
    "latency_ms",
    "ttft_ms",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost",
    "cache_hit",
    "stream",
)
# not `extra` fields: the record's own, and uvicorn's copy of its message with terminal colours
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "request_id", "asctime", "color_message"}


class RequestIdFilter(logging.Filter):
    """Adds `request_id` (None outside a request) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, request_id and any `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.request_id is not None:  # type: ignore[attr-defined]
            line["request_id"] = record.request_id  # type: ignore[attr-defined]
        line.update((k, v) for k, v in vars(record).items() if k not in _STANDARD)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    """The message as it always was, then `key=value` for the request id and any `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [record.getMessage()]
        if record.request_id is not None:  # type: ignore[attr-defined]
            parts.append(f"request_id={record.request_id}")  # type: ignore[attr-defined]
        parts += [f"{k}={_text(v)}" for k, v in vars(record).items() if k not in _STANDARD]
        text = " ".join(parts)
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def configure(log_format: LogFormat, level: str, *, access: bool) -> None:
    """Send every log line (Quasar's, uvicorn's, the libraries') to stderr in `log_format`: Quasar's from
    `level` up (uvicorn sets its own loggers to it), the libraries' from WARNING, the access lines at
    INFO when `access`. The handler sits on the root logger. Under json, whatever else writes to stderr
    (llama.cpp, a traceback) is read back and logged as JSON too (observability/stderr.py)."""
    stream = sys.stderr
    if log_format == "json":
        from quasar.observability.stderr import reroute

        stream = reroute()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("quasar").setLevel(level.upper())
    ACCESS.setLevel(logging.INFO if access else logging.CRITICAL + 1)
    STARTUP.setLevel(logging.INFO)


def json_logs() -> bool:
    """Whether `configure` set the log lines to JSON."""
    return any(isinstance(handler.formatter, JsonFormatter) for handler in logging.getLogger().handlers)


def access(record: RequestRecord) -> None:
    """The request's access line (when access lines are on)."""
    if ACCESS.isEnabledFor(logging.INFO):
        fields = {name: getattr(record, name) for name in _ACCESS_FIELDS}
        fields["request_id"] = record.request_id
        fields["latency_ms"] = round(record.latency_ms, 2)
        if record.ttft_ms is not None:
            fields["ttft_ms"] = round(record.ttft_ms, 2)
        if record.error:
            fields["error"] = redact(record.error, record.secrets)
        ACCESS.info("quasar: request", extra=fields)


def _iso(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


def _text(value: Any) -> str:
    text = str(value)
    return orjson.dumps(text).decode() if (" " in text or not text) else text
