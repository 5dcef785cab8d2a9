"""How busy a vLLM server is, read from its Prometheus `/metrics`: requests running and waiting, and
how full its KV cache is. The router's `least-busy` strategy orders deployments by it.

Read in the background at `metrics_interval`, never on the request path: the router sees the last
reading (and this replica's own requests in flight on top of it, which the next reading includes). A
reading older than three intervals, or a server whose metrics cannot be read, counts as unknown: the
deployment is then ordered by this replica's in-flight requests alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from quasar.engines.http import HTTPError, Pool

log = logging.getLogger("quasar.load")
RUNNING = ("vllm:num_requests_running",)
WAITING = ("vllm:num_requests_waiting",)
KV_USAGE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
SATURATED_KV = 0.95  # a KV cache this full takes no new request without preempting another


@dataclass(frozen=True)
class Reading:
    running: float
    waiting: float
    kv_usage: float | None
    at: float

    @property
    def saturated(self) -> bool:
        """Requests wait there already, or its KV cache is (nearly) full."""
        return self.waiting > 0 or (self.kv_usage is not None and self.kv_usage >= SATURATED_KV)


def parse(text: str) -> Reading | None:
    """The reading in a Prometheus text exposition, summed over label sets; None without vLLM's gauges."""
    sums: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if "{" in line:
            name, value = line[: line.index("{")], line[line.rindex("}") + 1 :]
        else:
            name, _, value = line.partition(" ")
        try:
            sums[name] = sums.get(name, 0.0) + float(value.split()[0])
        except (ValueError, IndexError):
            continue

    def first(names: tuple[str, ...]) -> float | None:
        return next((sums[n] for n in names if n in sums), None)

    running, waiting = first(RUNNING), first(WAITING)
    if running is None and waiting is None:
        return None
    return Reading(running or 0.0, waiting or 0.0, first(KV_USAGE), time.monotonic())


class LoadReader:
    """Polls one server's metrics URL while the process runs; `current()` is the last fresh reading."""

    def __init__(self, url: str, interval: float, headers: dict[str, str]) -> None:
        self.pool = Pool(url, limit=1, connect_timeout=interval)  # the origin of `url`
        parts = urlsplit(url)
        self.prefix = self.pool.prefix(parts.path + (f"?{parts.query}" if parts.query else ""), headers, "GET")
        self.interval = interval
        self.reading: Reading | None = None
        self._task: asyncio.Task[None] | None = None

    def current(self) -> Reading | None:
        """The last reading if fresh; starts the poller on first use (from inside the event loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._poll(), name="quasar-load-reader")
        reading = self.reading
        if reading is None or time.monotonic() - reading.at > 3 * self.interval:
            return None
        return reading

    async def _poll(self) -> None:
        failing = False
        while True:
            try:
                async with asyncio.timeout(self.interval * 2):
                    resp = await self.pool.post(self.prefix, b"")
                    try:
                        body = await resp.read(4 << 20)
                    finally:
                        resp.release()
                self.reading = parse(body.decode(errors="replace")) if resp.status == 200 else None
                failing = False
            except (TimeoutError, HTTPError, OSError) as exc:
                if not failing:
                    log.warning("quasar: cannot read load metrics (%s)", type(exc).__name__)
                failing, self.reading = True, None
            await asyncio.sleep(self.interval)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.pool.close()
