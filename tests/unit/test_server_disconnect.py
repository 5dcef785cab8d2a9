"""The disconnect watcher's one timer, under uvloop (whose timers count whole ms and may fire early).

Requests still running WATCH_AFTER_S after they began get a watcher that cancels them when their
client leaves; the timer that finds them must fire about once per request, not spin.
"""

from __future__ import annotations

import asyncio

import uvloop
from starlette.requests import Request

from quasar.server.disconnect import WATCH_AFTER_S, Disconnects

REQUESTS = 20


class CountingDisconnects(Disconnects):
    sweeps = 0

    def _sweep(self) -> None:
        self.sweeps += 1
        super()._sweep()


def test_long_requests_are_watched_and_cancelled_without_the_timer_spinning() -> None:
    async def main() -> tuple[int, int, list[BaseException | None]]:
        gone = asyncio.Event()

        async def receive() -> dict:
            await gone.wait()
            return {"type": "http.disconnect"}

        disconnects = CountingDisconnects()

        async def request() -> None:
            disconnects.add(Request({"type": "http", "method": "POST", "path": "/", "headers": []}, receive))
            try:
                await asyncio.sleep(30)
            finally:
                disconnects.discard()

        tasks = []
        for _ in range(REQUESTS):
            tasks.append(asyncio.create_task(request()))
            await asyncio.sleep(0.003)
        await asyncio.sleep(WATCH_AFTER_S + 0.1)
        watched = len(disconnects._watchers)
        gone.set()  # every client leaves
        results = await asyncio.gather(*tasks, return_exceptions=True)
        return disconnects.sweeps, watched, results

    sweeps, watched, results = uvloop.run(main())
    assert watched == REQUESTS
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    assert sweeps <= 2 * REQUESTS, f"{sweeps} sweeps for {REQUESTS} requests"
