"""Prometheus metrics: per-request counters and histograms, and gauges read when /metrics is scraped.

Every request is counted from one place, its RequestRecord when it ends (`RequestMetrics.observe`,
called by ChatService.end). The request path only adds to plain dicts and lists, on the event loop's
thread: no lock, no prometheus-client child lookup per request (that cost ~10 us of a gateway
request's ~190). The families are built from those sums at scrape time, with the gauges (requests in
flight, local slots, deployment health, the log writer) read then from the objects that own them.

Label sets are bounded: a model name the config does not serve is counted as "unknown", deployments
are the configured ones, statuses and error types come from small fixed sets; no key, customer or
request id is ever a label.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import generate_latest

if TYPE_CHECKING:
    from quasar.accounting.record import RequestRecord
    from quasar.gateway.router import Router
    from quasar.store.writer import LogWriter

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
UNKNOWN_MODEL = "unknown"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# the OpenAI error type of a request that failed before its answer began, by its HTTP status
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    502: "upstream_error",
    504: "upstream_error",
}


def error_type(record: RequestRecord) -> str:
    """A bounded name for how the request failed: "" when it did not, else the OpenAI error type, or
    "truncated" (a stream cut after its first chunk) or "cancelled" (the client left)."""
    if record.status == "ok":
        return ""
    if record.status in ("truncated", "cancelled"):
        return record.status
    return _ERROR_TYPES.get(record.http_status, "server_error")


class _Histogram:
    """Cumulative-at-scrape bucket counts and a sum, for one label set."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for bound, count in zip((*map(repr, self.bounds), "+Inf"), self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out


@dataclass
class _Usage:
    """Sums for one (model, deployment) pair."""

    duration: _Histogram = field(default_factory=lambda: _Histogram(DURATION_BUCKETS))
    ttft: _Histogram = field(default_factory=lambda: _Histogram(TTFT_BUCKETS))
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost: float = 0.0
    cache_hits: int = 0


class RequestMetrics:
    """What every finished request adds: counts, latencies, tokens, cost and cache hits."""

    def __init__(self, models: Iterable[str]) -> None:
        self.models = frozenset(models)
        self.requests: dict[tuple[str, str, str, str, str], int] = {}
        self.usage: dict[tuple[str, str], _Usage] = {}

    def follow(self, models: Iterable[str]) -> RequestMetrics:
        """These sums, counting the models of a reloaded config from now on: a reload keeps the counters."""
        self.models = frozenset(models)
        return self

    def observe(self, record: RequestRecord) -> None:
        """Count one finished request (its record is complete: `finish` has run)."""
        model = record.model if record.model in self.models else UNKNOWN_MODEL
        deployment = record.deployment or ""
        key = (model, deployment, record.endpoint, str(record.http_status), error_type(record))
        self.requests[key] = self.requests.get(key, 0) + 1
        usage = self.usage.get((model, deployment))
        if usage is None:
            usage = self.usage[model, deployment] = _Usage()
        usage.duration.observe(record.latency_ms / 1000)
        if record.ttft_ms is not None:
            usage.ttft.observe(record.ttft_ms / 1000)
        usage.prompt_tokens += record.prompt_tokens
        usage.completion_tokens += record.completion_tokens
        usage.cached_tokens += record.cached_tokens
        usage.cost += record.cost
        usage.cache_hits += record.cache_hit

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "quasar_requests",
            "Requests finished, by model, deployment, endpoint, HTTP status and error type.",
            labels=["model", "deployment", "endpoint", "status", "error_type"],
        )
        for labels, count in sorted(self.requests.items()):
            requests.add_metric(list(labels), count)
        yield requests
        pairs = sorted(self.usage.items())
        for name, doc, of in (
            ("quasar_request_duration_seconds", "Time from arrival to the request's end.", "duration"),
            ("quasar_time_to_first_token_seconds", "Time from arrival to the first token.", "ttft"),
        ):
            family = HistogramMetricFamily(name, doc, labels=["model", "deployment"])
            for (model, deployment), usage in pairs:
                hist: _Histogram = getattr(usage, of)
                family.add_metric([model, deployment], hist.buckets(), hist.total)
            yield family
        for name, doc, of in (
            ("quasar_prompt_tokens", "Prompt tokens of finished requests.", "prompt_tokens"),
            ("quasar_completion_tokens", "Completion tokens of finished requests.", "completion_tokens"),
            ("quasar_cached_tokens", "Prompt tokens the upstream served from its prompt cache.", "cached_tokens"),
            ("quasar_cost_usd", "What finished requests cost, in USD at the deployments' prices.", "cost"),
            ("quasar_cache_hits", "Requests answered from Quasar's response cache.", "cache_hits"),
        ):
            family = CounterMetricFamily(name, doc, labels=["model", "deployment"])
            for (model, deployment), usage in pairs:
                family.add_metric([model, deployment], getattr(usage, of))
            yield family


def state_gauges(router: Router, writer: LogWriter, in_flight: int) -> Iterator[Metric]:
    """The gauges, read now from their owners: requests in flight, local slots, health, the log writer,
    and the event loop's task count (must be called on the loop)."""
    yield GaugeMetricFamily("quasar_requests_in_flight", "Chat requests being answered.", value=in_flight)
    busy = GaugeMetricFamily("quasar_local_slots_busy", "llama.cpp slots generating.", labels=["deployment"])
    slots = GaugeMetricFamily("quasar_local_slots", "llama.cpp slots configured.", labels=["deployment"])
    queued = GaugeMetricFamily(
        "quasar_local_queue_depth", "Requests waiting for a llama.cpp slot.", labels=["deployment"]
    )
    up = GaugeMetricFamily(
        "quasar_deployment_up",
        "1 when the router may use the deployment, 0 while it cools down.",
        labels=["model", "deployment"],
    )
    cooling = GaugeMetricFamily(
        "quasar_deployment_cooldown_seconds", "Seconds of cooldown left.", labels=["model", "deployment"]
    )
    for model, candidates in sorted(router.by_model.items()):
        for cand in candidates:
            left = router.health.cooling(cand.name)
            up.add_metric([model, cand.name], 0 if left else 1)
            cooling.add_metric([model, cand.name], left)
            parallel = getattr(cand.engine, "parallel", None)
            if parallel is not None:  # an in-process engine with slots
                taken = cand.engine.in_flight
                slots.add_metric([cand.name], parallel)
                busy.add_metric([cand.name], min(taken, parallel))
                queued.add_metric([cand.name], max(taken - parallel, 0))
    yield from (slots, busy, queued, up, cooling)
    yield GaugeMetricFamily(
        "quasar_log_backlog_rows", "Request log rows waiting in memory to be written.", value=writer.backlog
    )
    yield GaugeMetricFamily(
        "quasar_log_spool_bytes",
        "Request log rows spooled to disk while the database was away, in bytes.",
        value=writer.spool.size(),
    )
    yield GaugeMetricFamily(
        "quasar_log_database_up", "1 while the request log's database takes writes.", value=int(writer.healthy)
    )
    yield GaugeMetricFamily(
        "quasar_event_loop_tasks", "asyncio tasks alive on the server's event loop.", value=len(asyncio.all_tasks())
    )


class _Scrape:
    """One scrape's families, in the shape prometheus-client's exposition takes (`collect`)."""

    def __init__(self, *sources: Callable[[], Iterator[Metric]]) -> None:
        self.sources = sources

    def collect(self) -> Iterator[Metric]:
        for source in self.sources:
            yield from source()


def render(metrics: RequestMetrics, router: Router, writer: LogWriter, in_flight: int) -> bytes:
    """The text /metrics answers."""
    scrape = _Scrape(metrics.collect, lambda: state_gauges(router, writer, in_flight))
    return generate_latest(scrape)  # type: ignore[arg-type]
