"""The routing trace of one request: what was considered, what was dropped and why, every attempt.

It becomes the x-quasar-* response headers and, with `request_breakdown`, part of the body. It holds
no secret: credentials stay in the request's GatewayOptions, which the trace never renders.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from quasar.accounting.cost import Cost
from quasar.api.gateway import GatewayOptions
from quasar.config import Price


@dataclass
class Attempt:
    deployment: str
    model: str
    provider: str
    status: int
    latency: float  # seconds
    error: str | None = None
    started: float = 0.0  # perf_counter() when it began

    def as_dict(self) -> dict[str, Any]:
        return {
            "deployment": self.deployment,
            "model": self.model,
            "provider": self.provider,
            "status": self.status,
            "latency": round(self.latency, 6),
            "error": self.error,
        }


@dataclass
class Trace:
    options: GatewayOptions = field(default_factory=GatewayOptions)
    started: float = field(default_factory=time.perf_counter)
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))
    strategy: str = ""
    primary: list[str] = field(default_factory=list)  # the models asked for, before fallbacks
    candidates: list[str] = field(default_factory=list)  # deployments in the order they would be tried
    dropped: list[dict[str, str]] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    routing_time: float = 0.0  # seconds spent choosing, before the first attempt
    upstream_time: float = 0.0  # seconds inside attempts and backoff waits
    deployment: str | None = None  # the one that answered
    model: str | None = None
    provider: str | None = None
    price: Price | None = None
    ttft: float | None = None  # seconds from the start to the first chunk
    finished: float | None = None
    truncated: bool = False
    usage: dict[str, Any] | None = None  # as the answering deployment reported it
    engine_timings: dict[str, Any] | None = None  # llama.cpp's own timings, from the local engine
    cost: Cost | None = None

    def drop(self, deployment: str, model: str, reason: str) -> None:
        self.dropped.append({"deployment": deployment, "model": model, "reason": reason})

    @property
    def fallbacks(self) -> int:
        """Fallback models tried: models outside the ones asked for that got an attempt."""
        return len({a.model for a in self.attempts if a.model not in self.primary})

    def overhead_ms(self) -> float:
        """Time Quasar itself spent on the request so far, upstream time and backoff waits excluded."""
        return max(0.0, (time.perf_counter() - self.started - self.upstream_time) * 1000)

    def latency(self) -> float:
        end = self.finished if self.finished is not None else time.perf_counter()
        return end - self.started

    def headers(self) -> dict[str, str]:
        headers = {
            "x-quasar-deployment": self.deployment or "",
            "x-quasar-attempts": str(len(self.attempts)),
            "x-quasar-fallbacks": str(self.fallbacks),
            "x-quasar-overhead-ms": f"{self.overhead_ms():.3f}",
        }
        if self.cost is not None:
            headers["x-quasar-cost"] = f"{self.cost.usd:.10f}".rstrip("0").rstrip(".") or "0"
            if self.cost.estimated:
                headers["x-quasar-cost-estimated"] = "true"
        return headers

    def routing(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "candidates": self.candidates,
            "dropped": self.dropped,
            "attempts": [a.as_dict() for a in self.attempts],
            "fallbacks": self.fallbacks,
            "deployment": self.deployment,
            "provider": self.provider,
            "truncated": self.truncated,
        }
