"""What the router remembers about each deployment: cooldowns, consecutive failures, latency.

Kept in this replica's memory, read on every request without a round trip. With Redis, a cooldown one
replica starts is published (gateway/health_events.py) and every other replica applies it too, so one
replica's 429 from an upstream rests that deployment for all. Losing any of it (a restart, Redis away)
costs at most a few requests to a deployment that is still failing, never a wrong answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from quasar.errors import QuasarError, UpstreamError, UpstreamTimeout

_LATENCY_WEIGHT = 0.3  # of the newest sample in the moving average


class Health:
    def __init__(self, cooldown_seconds: float, allowed_fails: int) -> None:
        self.cooldown_seconds = cooldown_seconds
        self.allowed_fails = allowed_fails
        self._until: dict[str, float] = {}
        self._fails: dict[str, int] = {}
        self._latency: dict[str, float] = {}
        self.on_cool: Callable[[str, float], None] | None = None  # told of each cooldown this replica starts

    def cooling(self, name: str) -> float:
        """Seconds of cooldown left; 0 when the deployment may be used."""
        until = self._until.get(name)
        if until is None:
            return 0.0
        left = until - time.monotonic()
        if left <= 0:
            del self._until[name]
            return 0.0
        return left

    def latency(self, name: str) -> float:
        """Moving average of time to first token in seconds; 0 for a deployment not yet measured."""
        return self._latency.get(name, 0.0)

    def succeeded(self, name: str, latency: float) -> None:
        self._fails.pop(name, None)
        old = self._latency.get(name)
        self._latency[name] = latency if old is None else old + _LATENCY_WEIGHT * (latency - old)

    def failed(self, name: str, exc: QuasarError) -> None:
        """A 429 or a timeout cools the deployment at once; other failures after `allowed_fails` in a row."""
        if isinstance(exc, UpstreamError) and (exc.upstream_status == 429 or isinstance(exc, UpstreamTimeout)):
            self._cool(name, max(self.cooldown_seconds, exc.retry_after or 0.0))
            return
        fails = self._fails.get(name, 0) + 1
        if fails >= self.allowed_fails:
            self._fails.pop(name, None)
            self._cool(name, self.cooldown_seconds)
        else:
            self._fails[name] = fails

    def _cool(self, name: str, seconds: float) -> None:
        if seconds > 0:
            self.cool(name, seconds)
            if self.on_cool is not None:
                self.on_cool(name, seconds)

    def cool(self, name: str, seconds: float) -> None:
        """Rest `name` for `seconds` from now (longer if it already rests longer)."""
        self._until[name] = max(self._until.get(name, 0.0), time.monotonic() + seconds)
