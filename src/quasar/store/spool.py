"""The local spool: request log rows that could not reach the database, as JSON lines on disk.

Each process appends to its own file and holds an flock on it; any process drains files nobody holds,
so rows spooled by a process that has exited are written by the next one to find the database up.

Rows the database refused even once sanitised go to a dead-letter file beside them (`quasar-dead-*.jsonl`),
which is never drained: kept for a person to look at, never retried.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from quasar.store.rows import sanitise

log = logging.getLogger("quasar.store")

PATTERN = "quasar-spool-*.jsonl"
DEAD_PATTERN = "quasar-dead-*.jsonl"


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._file: IO[bytes] | None = None

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Add rows to this process's file; a row orjson refuses is sanitised, one that fails even then is
        left out with a warning. Only OSError (the disk) escapes, and then nothing was written."""
        data = _lines(rows)
        if not data:
            return
        if self._file is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"quasar-spool-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
            self._file = path.open("ab")
            fcntl.flock(self._file, fcntl.LOCK_EX)
        self._file.write(data)
        self._file.flush()
        os.fsync(self._file.fileno())

    def dead_letter(self, row: dict[str, Any]) -> bool:
        """Set aside a row the database refused: appended to this process's dead-letter file, never
        drained. False if it could not be written (the disk, or a row that is not JSON at all)."""
        data = _lines([row])
        if not data:
            return False
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"quasar-dead-{os.getpid()}.jsonl"
            with path.open("ab") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            log.error("quasar: request log: cannot write the dead-letter file in %s (%s)", self.directory, exc.strerror)
            return False
        return True

    def release(self) -> None:
        """Close this process's file so that it can be drained like any other."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def pending(self) -> bool:
        return self._file is not None or any(self.directory.glob(PATTERN))

    @contextlib.contextmanager
    def claim(self, path: Path) -> Iterator[list[dict[str, Any]] | None]:
        """The rows of a file no process holds (None if held); the file is removed if the block succeeds."""
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            yield None
            return
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield None
                return
            if not path.exists():  # drained by another process between open and lock
                yield None
                return
            rows = []
            for line in handle.read().splitlines():
                with contextlib.suppress(orjson.JSONDecodeError):
                    row = orjson.loads(line)  # a torn last line from a crash is skipped
                    if isinstance(row, dict):
                        rows.append(row)
            yield rows
            path.unlink(missing_ok=True)

    def files(self) -> list[Path]:
        return sorted(self.directory.glob(PATTERN)) if self.directory.is_dir() else []

    def size(self) -> int:
        """Bytes of rows waiting in spool files (every process's), for /metrics."""
        total = 0
        for path in self.files():
            with contextlib.suppress(FileNotFoundError):  # drained meanwhile
                total += path.stat().st_size
        return total


def _lines(rows: list[dict[str, Any]]) -> bytes:
    out = []
    for row in rows:
        try:
            out.append(orjson.dumps(row))
        except TypeError:  # an int past 64 bits, a lone surrogate, an unknown type, a non-str key
            try:
                out.append(orjson.dumps(sanitise(row)))
            except TypeError:
                log.warning("quasar: request log: row of request %s cannot be spooled; dropped", request_id(row))
    return b"".join(line + b"\n" for line in out)


def request_id(row: Any) -> str:
    """The row's request id for a log line, never any of its content."""
    value = row.get("request_id") if isinstance(row, dict) else None
    return repr(value[:128]) if isinstance(value, str) else "(unknown)"
