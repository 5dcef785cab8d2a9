"""The background log writer: rows are queued off the request path and inserted in batches.

While the database is unreachable rows wait in a bounded in-memory buffer; past its bound, and at
shutdown, they go to the local spool and are written once the database is back. Nothing accepted is
lost: `submit` never fails and never waits.

A batch the database refuses for its data (`rows.refused`: a value out of range, a NUL, a wrong type) is
not a database that is away: the batch is halved until the refused rows stand alone, the others are
written, and each refused row is written sanitised, or else set aside in the spool's dead-letter file
with a warning naming its request id. Either way the writer goes on with the next rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from quasar.store.rows import bare_row, refused, sanitise
from quasar.store.spool import Spool, request_id

log = logging.getLogger("quasar.store")


class Loggable(Protocol):
    def row(self) -> dict[str, Any]:
        """The request_log row; built by the writer, off the request path."""
        ...


INSERT_TIMEOUT_S = 15.0
MAX_BACKOFF_S = 2.0
ROW_SLICE = 64


class LogWriter:
    def __init__(
        self,
        insert: Callable[[list[dict[str, Any]]], Awaitable[None]],
        spool: Spool,
        *,
        batch_rows: int,
        buffer_rows: int,
        flush_seconds: float,
    ) -> None:
        self.insert = insert  # one batch in one transaction; a row already stored is skipped
        self.spool = spool
        self.batch_rows = batch_rows
        self.buffer_rows = buffer_rows
        self.flush_seconds = flush_seconds
        self.healthy = True
        self.written = 0
        self.sanitised_rows = 0  # refused by the database, then written sanitised
        self.dead_rows = 0  # refused even sanitised: set aside in the dead-letter file
        self._buffer: deque[Loggable] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._spill_at = buffer_rows

    @property
    def backlog(self) -> int:
        """Rows accepted and waiting in memory for their batch (spooled ones are in `spool.size()`)."""
        return len(self._buffer)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="quasar-log-writer")

    def submit(self, item: Loggable) -> None:
        self._buffer.append(item)
        if len(self._buffer) > self._spill_at:
            self._spill()
        if len(self._buffer) >= self.batch_rows:
            self._wake.set()

    def _spill(self) -> None:
        """Move the buffer to the spool file; if the disk refuses, the rows stay in memory (as rows)."""
        rows = [_row_of(item) for item in self._buffer]
        try:
            self.spool.append(rows)
        except OSError as exc:
            log.error("quasar: request log: cannot write the spool in %s (%s)", self.spool.directory, exc.strerror)
            self._buffer = deque(_Made(row) for row in rows)
            self._spill_at = len(self._buffer) * 2  # try again when twice as many wait, not on every row
            return
        self._buffer.clear()
        self._spill_at = self.buffer_rows

    async def _run(self) -> None:
        backoff = self.flush_seconds
        while not self._stopping:  # a flag as well as cancel(): Python 3.11's wait_for can swallow a cancel
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), backoff)
            self._wake.clear()
            ok = await self.drain(len(self._buffer))
            backoff = self.flush_seconds if ok else min(max(backoff * 2, 0.1), MAX_BACKOFF_S)

    async def drain(self, limit: int | None = None) -> bool:
        """Write the spool, then the buffer (or its first `limit` rows); False if the database failed.

        The writer's loop passes the rows waiting when it woke: rows that come while they are written wait
        for the next flush (or a full batch), rather than each going in a batch of the few that came during
        the last one's insert. Under load that made batches of a handful of rows, each paying a batch's
        transaction and its rollup upserts."""
        left = len(self._buffer) if limit is None else limit
        try:
            if self.spool.pending():
                await self._drain_spool()
            while self._buffer and left > 0:
                batch = [self._buffer.popleft() for _ in range(min(self.batch_rows, len(self._buffer), left))]
                left -= len(batch)
                try:
                    rows = await _rows(batch)
                except BaseException:
                    self._buffer.extendleft(reversed(batch))
                    raise
                done: set[int] = set()
                try:
                    await self._write(rows, done)
                except BaseException:  # back to the head of the queue, as rows, less those already settled
                    self._buffer.extendleft(reversed([_Made(row) for row in rows if id(row) not in done]))
                    raise
        except Exception as exc:
            if self.healthy:
                log.warning(
                    "quasar: request log: database unreachable (%s); %d rows waiting",
                    type(exc).__name__,
                    len(self._buffer),
                )
            self.healthy = False
            return False
        if not self.healthy:
            log.warning("quasar: request log: database reachable again; waiting rows written")
        self.healthy = True
        return True

    async def _drain_spool(self) -> None:
        self.spool.release()
        for path in self.spool.files():
            failure: BaseException | None = None
            with self.spool.claim(path) as rows:
                if not rows:
                    continue
                done: set[int] = set()
                try:
                    for start in range(0, len(rows), self.batch_rows):
                        await self._write(rows[start : start + self.batch_rows], done)
                except BaseException as exc:
                    # What is left goes to this process's own spool file and this one is removed, so that
                    # rows written or set aside are not tried again; if the disk refuses, the file stays.
                    self.spool.append([row for row in rows if id(row) not in done])
                    failure = exc
            if failure is not None:
                raise failure

    async def _write(self, rows: list[dict[str, Any]], done: set[int]) -> None:
        """Insert rows, adding the id() of each one settled (written or set aside) to `done`.

        A batch refused for its data is halved until each refused row stands alone; any other failure
        (the database away, a timeout) is raised for the caller to keep the rows not in `done`."""
        parts = [rows]
        while parts:
            part = parts.pop()
            try:
                await self._insert(part)
            except Exception as exc:
                if not refused(exc):
                    raise
                if len(part) > 1:
                    half = len(part) // 2
                    parts += [part[half:], part[:half]]
                    continue
                await self._isolate(part[0], exc)
            done.update(map(id, part))

    async def _isolate(self, row: dict[str, Any], exc: Exception) -> None:
        """One row the database refused: write it sanitised, or set it aside. Never logs its content."""
        try:
            await self._insert([sanitise(row)])
        except Exception as again:
            if not refused(again):
                raise
            self.dead_rows += 1
            kept = self.spool.dead_letter(row)  # sanitised there if orjson refuses it
            log.warning(
                "quasar: request log: the database refused the row of request %s (%s), even sanitised; %s",
                request_id(row),
                type(again).__name__,
                f"set aside in {self.spool.directory}" if kept else "dropped",
            )
            return
        self.sanitised_rows += 1
        log.warning(
            "quasar: request log: the database refused the row of request %s (%s); written sanitised",
            request_id(row),
            type(exc).__name__,
        )

    async def _insert(self, rows: list[dict[str, Any]]) -> None:
        await asyncio.wait_for(self.insert(rows), INSERT_TIMEOUT_S)
        self.written += len(rows)

    async def close(self, timeout: float) -> None:
        """Stop; write what waits if the database takes it within `timeout`, else spool it."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.drain(), timeout)  # one try: a failure means the database is away
        if self._buffer:
            log.warning("quasar: request log: %d rows spooled to %s", len(self._buffer), self.spool.directory)
            self._spill()
        self.spool.release()


async def _rows(batch: list[Loggable]) -> list[dict[str, Any]]:
    """The batch's rows, made ROW_SLICE at a time with the event loop let run in between: 500 rows
    made at once held the loop for ~10 ms, which requests saw as their p99."""
    rows: list[dict[str, Any]] = []
    for start in range(0, len(batch), ROW_SLICE):
        if start:
            await asyncio.sleep(0)
        rows.extend(_row_of(item) for item in batch[start : start + ROW_SLICE])
    return rows


def _row_of(item: Loggable) -> dict[str, Any]:
    """The item's row; if making it fails, its plain columns without content (never an exception)."""
    try:
        row = item.row()
        if isinstance(row, dict):
            return row
        failure = f"not a dict but {type(row).__name__}"
    except Exception as exc:
        failure = type(exc).__name__
    row = bare_row(item)
    log.warning(
        "quasar: request log: the row of request %s could not be made (%s); written without its content",
        request_id(row),
        failure,
    )
    return row


class _Made:
    """A row already made, waiting in the buffer again (after a failed insert, or a failed spill)."""

    __slots__ = ("_row",)

    def __init__(self, row: dict[str, Any]) -> None:
        self._row = row

    def row(self) -> dict[str, Any]:
        return self._row
