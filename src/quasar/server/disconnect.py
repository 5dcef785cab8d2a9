"""Stop working for a client that has gone away.

Nothing else listens for it: a client that gives up on a long generation, streamed or not, would
keep its slot (or its upstream request) busy to the end. `Disconnects` watches the connection of
every request that is still being answered WATCH_AFTER_S after it began (a stream until its last
event, see server/sse.py), and cancels the request's task when its client leaves; the cancellation
reaches the engine (llama.cpp stops at its next token, an upstream connection is closed) and the
request log records the request as cancelled (499 before the answer began, 200 after a stream's first
event).

The many requests that finish sooner pay for a dict entry only: one timer per app, not one per
request, looks for requests that have run long enough to need a watcher (a per-request timer and
context manager cost the gateway 10 us of CPU per request, 5%). A request's body must have been read
before it is added: the watcher's receive() would otherwise take body parts.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request

WATCH_AFTER_S = 0.05
# uvloop's timers count whole milliseconds and fire up to a millisecond early: a sweep that only took
# requests at least WATCH_AFTER_S old found none and rescheduled itself for the same instant, hundreds
# of times a second under load
TIMER_SLACK_S = 0.002


class Disconnects:
    def __init__(self) -> None:
        # by the task answering the request: not yet watched (in start order), and watched
        self._waiting: dict[asyncio.Task, tuple[float, Request]] = {}
        self._watchers: dict[asyncio.Task, asyncio.Task] = {}
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        """Requests being answered (their body read, not yet ended): /metrics' requests in flight."""
        return len(self._waiting) + len(self._watchers)

    def add(self, request: Request) -> None:
        """Watch `request`, answered by the current task, from WATCH_AFTER_S on until `discard`."""
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        self._waiting[task] = (loop.time(), request)
        if self._timer is None:
            self._timer = loop.call_later(WATCH_AFTER_S, self._sweep)

    def discard(self) -> None:
        """The current task's request is answered (or failed): stop watching it."""
        task = asyncio.current_task()
        if self._waiting.pop(task, None) is None:  # type: ignore[arg-type]
            watcher = self._watchers.pop(task, None)  # type: ignore[arg-type]
            if watcher is not None:
                watcher.cancel()

    def _sweep(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        due = loop.time() - WATCH_AFTER_S + TIMER_SLACK_S
        for task, (started, request) in list(self._waiting.items()):
            if started > due:
                break  # entries are in start order: the rest are younger
            del self._waiting[task]
            self._watchers[task] = loop.create_task(_watch(request, task))
        if self._waiting:
            oldest = next(iter(self._waiting.values()))[0]
            self._timer = loop.call_at(oldest + WATCH_AFTER_S, self._sweep)


def client_gone(request: Request) -> bool:
    """Whether this request's task was cancelled because its client left."""
    return getattr(request.state, "client_gone", False)


async def _watch(request: Request, task: asyncio.Task) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
    request.state.client_gone = True
    task.cancel()
