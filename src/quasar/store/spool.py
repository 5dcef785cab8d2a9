"""The local spool: request log rows that could not reach the database, as JSON lines on disk.

Each process appends to its own file and holds an flock on it; any process drains files nobody holds,
so rows spooled by a process that has exited are written by the next one to find the database up.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson

PATTERN = "quasar-spool-*.jsonl"


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._file: IO[bytes] | None = None

    def append(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        if self._file is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"quasar-spool-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
            self._file = path.open("ab")
            fcntl.flock(self._file, fcntl.LOCK_EX)
        self._file.write(b"".join(orjson.dumps(row) + b"\n" for row in rows))
        self._file.flush()
        os.fsync(self._file.fileno())

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
                    rows.append(orjson.loads(line))  # a torn last line from a crash is skipped
            yield rows
            path.unlink(missing_ok=True)

    def files(self) -> list[Path]:
        return sorted(self.directory.glob(PATTERN)) if self.directory.is_dir() else []
