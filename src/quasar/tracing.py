"""OpenTelemetry traces, when OTEL_EXPORTER_OTLP_ENDPOINT is set: one span per request, a child per attempt.

The spans are made when the request has ended, from its log record and routing trace (both hold the
times), so tracing costs the request path nothing but one call; the SDK's batch processor exports them
over OTLP/HTTP off the loop. Attributes follow OpenTelemetry's GenAI semantic conventions
(`gen_ai.operation.name`, `gen_ai.request.model`, `gen_ai.response.model`, `gen_ai.system`,
`gen_ai.usage.input_tokens` / `output_tokens`) plus Quasar's own (`quasar.*`). No key, credential or
message content is put on a span. The SDK is imported only when tracing is on.
"""

from __future__ import annotations

import os
import time
from typing import Any

from quasar.accounting.record import RequestRecord
from quasar.gateway.trace import Trace

ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"


class Tracing:
    """Exports finished requests as spans; `Tracing.from_environment()` is None when tracing is off."""

    def __init__(self, provider: Any) -> None:
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self._provider = provider
        self._tracer = provider.get_tracer("quasar")
        self._kind, self._status, self._code = SpanKind, Status, StatusCode
        # perf_counter() -> wall clock in ns: the record's times are perf_counter readings
        self._offset_ns = time.time_ns() - int(time.perf_counter() * 1e9)

    @classmethod
    def from_environment(cls, service_name: str = "quasar") -> Tracing | None:
        if not (os.environ.get(ENDPOINT) or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
            return None
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        return cls(provider)

    def _ns(self, perf: float) -> int:
        return self._offset_ns + int(perf * 1e9)

    def export(self, record: RequestRecord, trace: Trace | None) -> None:
        """The finished request as a span, with a child span for each attempt the router made."""
        operation = "embeddings" if record.endpoint == "embeddings" else "chat"
        start = self._ns(record.started)
        end = start + int(record.latency_ms * 1e6)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.request.model": record.model or "",
            "gen_ai.usage.input_tokens": record.prompt_tokens,
            "gen_ai.usage.output_tokens": record.completion_tokens,
            "http.response.status_code": record.http_status,
            "quasar.request_id": record.request_id,
            "quasar.status": record.status,
            "quasar.stream": record.stream,
            "quasar.cache_hit": record.cache_hit,
            "quasar.cost_usd": record.cost,
            "quasar.attempts": record.attempts,
        }
        if record.deployment:
            attributes["quasar.deployment"] = record.deployment
        if record.provider:
            attributes["gen_ai.system"] = record.provider
        if trace is not None and trace.model:
            attributes["gen_ai.response.model"] = trace.model
        if record.ttft_ms is not None:
            attributes["quasar.time_to_first_token_ms"] = record.ttft_ms
        span = self._tracer.start_span(
            f"{operation} {record.model or ''}".strip(), kind=self._kind.SERVER, start_time=start, attributes=attributes
        )
        if record.status != "ok":
            span.set_status(self._status(self._code.ERROR, f"{record.status} ({record.http_status})"))
        context = _context_of(span)
        for attempt in trace.attempts if trace is not None else ():
            began = self._ns(attempt.started) if attempt.started else start
            child = self._tracer.start_span(
                f"attempt {attempt.deployment}",
                context=context,
                kind=self._kind.CLIENT,
                start_time=began,
                attributes={
                    "gen_ai.system": attempt.provider,
                    "gen_ai.request.model": attempt.model,
                    "quasar.deployment": attempt.deployment,
                    "http.response.status_code": attempt.status,
                },
            )
            if attempt.error:  # its status only: an upstream's message could quote what it was sent
                child.set_status(self._status(self._code.ERROR, f"status {attempt.status}"))
            child.end(end_time=began + int(attempt.latency * 1e9))
        span.end(end_time=end)

    def close(self) -> None:
        self._provider.shutdown()


def _context_of(span: Any) -> Any:
    from opentelemetry import trace

    return trace.set_span_in_context(span)
