"""The background log writer: rows are queued off the request path and inserted in batches.

While the database is unreachable rows wait in a bounded in-memory buffer; past its bound, and at
shutdown, they go to the local spool and are written once the database is back. Nothing accepted is
lost: `submit` never fails and never waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from quasar.store.spool import Spool

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
        self._buffer: deque[Loggable] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._spill_at = buffer_rows

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="quasar-log-writer")

    def submit(self, item: Loggable) -> None:
        self._buffer.append(item)
        if len(self._buffer) > self._spill_at:
            self._spill()
        if len(self._buffer) >= self.batch_rows:
            self._wake.set()

    def _spill(self) -> None:
        """Move the buffer to the spool file; if the disk refuses, the rows stay in memory."""
        rows = [item.row() for item in self._buffer]
        try:
            self.spool.append(rows)
        except OSError as exc:
            log.error("quasar: request log: cannot write the spool in %s (%s)", self.spool.directory, exc.strerror)
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
            backoff = self.flush_seconds if await self.drain() else min(max(backoff * 2, 0.1), MAX_BACKOFF_S)

    async def drain(self) -> bool:
        """Write the spool, then the buffer; False if the database failed."""
        try:
            if self.spool.pending():
                await self._drain_spool()
            while self._buffer:
                batch = [self._buffer.popleft() for _ in range(min(self.batch_rows, len(self._buffer)))]
                try:
                    await self._insert(await _rows(batch))
                except BaseException:
                    self._buffer.extendleft(reversed(batch))
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
            with self.spool.claim(path) as rows:
                for start in range(0, len(rows or []), self.batch_rows):
                    await self._insert(rows[start : start + self.batch_rows])

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
        rows.extend(item.row() for item in batch[start : start + ROW_SLICE])
    return rows
