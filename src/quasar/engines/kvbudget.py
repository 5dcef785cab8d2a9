"""Admission by KV cache: the tokens a local request may still put in llama.cpp's shared KV pool.

llama.cpp runs every slot of a deployment on one unified KV cache of `context_length` cells. When a
decode step finds no free cell it retries with smaller batches, clears idle slots' cached prompts, and
at a batch of one fails *every* running request with "Context size has been exceeded." (a 500 each),
so requests that each fit the context could fail half-way because of their neighbours.

So each request reserves its worst case (prompt tokens + output limit × n; the n choices share the
prompt's cells) before it reaches llama.cpp, and gives it back when llama.cpp is done with it. A
request that does not fit the free pool waits, in arrival order: a big request at the head is not
overtaken by small ones behind it, so it cannot starve. A request that waits longer than its timeout
gets TimeoutError and is gone from the queue.
"""

from __future__ import annotations

import asyncio
from collections import deque


class _Waiter:
    __slots__ = ("need", "future")

    def __init__(self, need: int, future: asyncio.Future[None]) -> None:
        self.need = need
        self.future = future


class KvBudget:
    """A pool of `size` tokens handed out whole, first come first served. Use on one event loop."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.used = 0
        self._waiters: deque[_Waiter] = deque()

    @property
    def free(self) -> int:
        return self.size - self.used

    @property
    def waiting(self) -> int:
        """Requests queued for room."""
        return len(self._waiters)

    def fits_now(self, need: int) -> bool:
        """Whether `reserve(need)` would return at once."""
        return not self._waiters and self.used + need <= self.size

    async def reserve(self, need: int, timeout: float | None) -> None:
        """Take `need` tokens, waiting behind earlier requests for room; TimeoutError after `timeout` s."""
        if need > self.size:
            raise ValueError(f"{need} tokens can never fit a pool of {self.size}")
        if self.fits_now(need):
            self.used += need
            return
        waiter = _Waiter(need, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter.future
        except BaseException:
            if waiter.future.done() and not waiter.future.cancelled():
                self.release(need)  # granted just as the wait ended: give it straight back
            else:
                waiter.future.cancel()
                self._waiters.remove(waiter)
                self._grant()  # the head may have left: whoever is next may fit now
            raise

    def release(self, need: int) -> None:
        self.used -= need
        self._grant()

    def _grant(self) -> None:
        while self._waiters and self.used + self._waiters[0].need <= self.size:
            waiter = self._waiters.popleft()
            self.used += waiter.need
            waiter.future.set_result(None)
