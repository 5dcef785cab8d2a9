"""Latency averages shared by every replica through Redis, so `strategy: latency` ranks by what all saw.

Off the request path: every second a background task writes this replica's own averages and sample
counts to a Redis hash of its own (expiring when the replica stops refreshing it) and reads every other
replica's, which the router's Health then weighs in with its own samples. The shared view is at most
about one interval old; while Redis is away each replica ranks by its own measurements, as without Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

import orjson

from quasar.gateway.health import Health

log = logging.getLogger("quasar.health")

INTERVAL = 1.0  # seconds between two exchanges
_EXPIRES = 15  # seconds after a replica's last exchange that its averages are forgotten


class LatencyShare:
    def __init__(self, redis: Any, namespace: str, health: Health, interval: float = INTERVAL) -> None:
        self.redis = redis
        self.prefix = f"{namespace}:latency:"
        self.members = f"{namespace}:latency-replicas"
        self.replica = uuid.uuid4().hex[:16]
        self.health = health
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="quasar-latency-share")

    async def _run(self) -> None:
        reported = False
        while True:
            try:
                await self.exchange()
                reported = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not reported:
                    log.warning(
                        "quasar: latency share: Redis unavailable (%s); latency averages stay local",
                        type(exc).__name__,
                    )
                reported = True
            await asyncio.sleep(self.interval)

    async def exchange(self) -> None:
        """Publish this replica's averages and take in every other replica's newest ones."""
        own = self.prefix + self.replica
        measured = self.health.measured()
        async with self.redis.pipeline(transaction=False) as pipe:
            if measured:
                pipe.hset(own, mapping={name: orjson.dumps(value) for name, value in measured.items()})
                pipe.expire(own, _EXPIRES)
                pipe.sadd(self.members, self.replica)
            pipe.smembers(self.members)
            replies = await pipe.execute()
        others = sorted(_text(r) for r in replies[-1] if _text(r) != self.replica)
        if not others:
            self.health.share([])
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for replica in others:
                pipe.hgetall(self.prefix + replica)
            reports = await pipe.execute()
        gone = [replica for replica, report in zip(others, reports, strict=True) if not report]
        if gone:
            await self.redis.srem(self.members, *gone)
        self.health.share([_report(report) for report in reports if report])

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.redis.delete(self.prefix + self.replica), 2)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _report(raw: dict[Any, Any]) -> dict[str, tuple[float, int]]:
    """One replica's hash as {deployment: (average seconds, samples)}; malformed fields are skipped."""
    report = {}
    for name, value in raw.items():
        try:
            avg, samples = orjson.loads(value)
            avg, samples = float(avg), int(samples)
        except (orjson.JSONDecodeError, TypeError, ValueError):
            continue
        if 0 <= avg < 3600 and samples > 0:
            report[_text(name)] = (avg, samples)
    return report
