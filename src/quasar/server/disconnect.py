"""Stop working for a client that has gone away before its answer began.

A stream's disconnects are watched by Starlette once its first event has left. Before that, and for
the whole of a non-streamed request, nobody listens: a client that gives up on a long generation
would keep its slot (or its upstream request) busy to the end. `cancelled_if_gone` watches the
connection while the answer is being made and cancels the request's task when the client leaves;
the cancellation reaches the engine (llama.cpp stops at its next token, an upstream connection is
closed) and the request log records the request as cancelled (499).

The watch starts only once a request has run for WATCH_AFTER_S, so the many requests that finish
sooner pay for a timer, not for a task and a receive() each. The body must have been read before
the block starts: the watcher's receive() would otherwise take body parts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from starlette.requests import Request

WATCH_AFTER_S = 0.05


@contextlib.contextmanager
def cancelled_if_gone(request: Request) -> Iterator[None]:
    """Cancel the current task if the client disconnects while the block runs."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    watcher: asyncio.Task[None] | None = None

    def start() -> None:
        nonlocal watcher
        watcher = loop.create_task(_watch(request, task))

    timer = loop.call_later(WATCH_AFTER_S, start)
    try:
        yield
    finally:
        timer.cancel()
        if watcher is not None:
            watcher.cancel()


def client_gone(request: Request) -> bool:
    """Whether `cancelled_if_gone` cancelled this request because its client left."""
    return getattr(request.state, "client_gone", False)


async def _watch(request: Request, task: asyncio.Task) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
    request.state.client_gone = True
    task.cancel()
