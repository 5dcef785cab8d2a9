"""What the router remembers about each deployment: cooldowns, consecutive failures, latency.

Kept in this replica's memory, read on every request without a round trip. With Redis, a cooldown one
replica starts is published (gateway/health_events.py) and every other replica applies it too, so one
replica's 429 from an upstream rests that deployment for all; and each replica's latency averages are
exchanged in the background (gateway/latency_share.py), so `strategy: latency` ranks by what every
replica saw. Losing any of it (a restart, Redis away) costs at most a few requests to a deployment that
is still failing or slow, never a wrong answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from quasar.errors import QuasarError, UpstreamError, UpstreamTimeout

_LATENCY_WEIGHT = 0.3  # of the newest sample in the moving average
_MOST_WEIGHT = 10  # samples: a replica's average counts by how many it measured, up to this many


class Health:
    def __init__(self, cooldown_seconds: float, allowed_fails: int) -> None:
        self.cooldown_seconds = cooldown_seconds
        self.allowed_fails = allowed_fails
        self._until: dict[str, float] = {}
        self._fails: dict[str, int] = {}
        self._latency: dict[str, float] = {}
        self._samples: dict[str, int] = {}
        self._others: dict[str, tuple[float, float]] = {}  # other replicas': (sum of weight x average, weight)
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
        """Moving average of time to first token in seconds, over this replica's samples and the other
        replicas' last shared averages, each weighted by its samples (up to _MOST_WEIGHT); 0 for a
        deployment no replica has measured yet."""
        total, weight = self._others.get(name, (0.0, 0.0))
        own = self._latency.get(name)
        if own is not None:
            mine = min(self._samples[name], _MOST_WEIGHT)
            total, weight = total + own * mine, weight + mine
        return total / weight if weight else 0.0

    def succeeded(self, name: str, latency: float) -> None:
        self._fails.pop(name, None)
        old = self._latency.get(name)
        self._latency[name] = latency if old is None else old + _LATENCY_WEIGHT * (latency - old)
        self._samples[name] = self._samples.get(name, 0) + 1

    def measured(self) -> dict[str, tuple[float, int]]:
        """This replica's own averages and sample counts, by deployment, for the other replicas."""
        return {name: (avg, self._samples[name]) for name, avg in self._latency.items()}

    def share(self, others: list[dict[str, tuple[float, int]]]) -> None:
        """Replace what the other replicas measured (one `measured()` each) with their newest reports."""
        merged: dict[str, tuple[float, float]] = {}
        for report in others:
            for name, (avg, samples) in report.items():
                weight = min(samples, _MOST_WEIGHT)
                total, sum_weight = merged.get(name, (0.0, 0.0))
                merged[name] = (total + avg * weight, sum_weight + weight)
        self._others = merged

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
