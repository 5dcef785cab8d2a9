"""Cooldowns shared by every replica through Redis pub/sub.

A replica that puts a deployment in cooldown publishes its name and the seconds; every replica
(itself included, harmlessly) applies the same cooldown to its own Health. Subscribing happens at
start; while Redis is away each replica keeps its own cooldowns, as without Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson

from quasar.gateway.health import Health

log = logging.getLogger("quasar.health")


class HealthEvents:
    def __init__(self, redis: Any, namespace: str, health: Health) -> None:
        self.redis = redis
        self.channel = f"{namespace}:health"
        self.health = health
        self._task: asyncio.Task[None] | None = None
        self._publishing: set[asyncio.Task[None]] = set()
        self._subscribed = asyncio.Event()

    async def start(self) -> None:
        self.health.on_cool = self._cooled
        self._task = asyncio.create_task(self._listen(), name="quasar-health-events")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), 2)

    def _cooled(self, name: str, seconds: float) -> None:
        task = asyncio.get_running_loop().create_task(self._publish(name, seconds))
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)

    async def _publish(self, name: str, seconds: float) -> None:
        try:
            await self.redis.publish(self.channel, orjson.dumps({"deployment": name, "seconds": seconds}))
        except Exception as exc:
            log.warning("quasar: health events: could not publish a cooldown (%s)", type(exc).__name__)

    async def _listen(self) -> None:
        reported = False
        while True:
            try:
                pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
                async with pubsub:
                    await pubsub.subscribe(self.channel)
                    self._subscribed.set()
                    reported = False
                    async for message in pubsub.listen():
                        self._apply(message.get("data"))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not reported:
                    log.warning(
                        "quasar: health events: Redis unavailable (%s); cooldowns stay local", type(exc).__name__
                    )
                reported = True
            await asyncio.sleep(1)

    def _apply(self, data: Any) -> None:
        try:
            event = orjson.loads(data)
            name, seconds = str(event["deployment"]), float(event["seconds"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return
        if 0 < seconds <= 86400:
            self.health.cool(name, seconds)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._publishing:
            await asyncio.wait(set(self._publishing), timeout=2)
