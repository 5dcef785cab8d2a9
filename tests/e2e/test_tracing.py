"""OpenTelemetry traces over OTLP/HTTP to a collector the test runs: a span per request, a child span
per attempt, GenAI attributes, no secret."""

from __future__ import annotations

import asyncio
import threading

import httpx2 as httpx
import yaml
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.fake_provider import FakeProvider
from tests.gateway_config import upstream
from tests.server import free_port, quasar_server
from tests.store_support import wait_for


class Collector:
    """An OTLP/HTTP trace receiver on loopback: keeps every span it is sent, and the raw bodies."""

    def __init__(self) -> None:
        self.port = free_port()
        self.spans: list = []
        self.bodies: list[bytes] = []
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/traces", self._receive)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.bodies.append(body)
        export = ExportTraceServiceRequest.FromString(body)
        for resource in export.resource_spans:
            for scope in resource.scope_spans:
                self.spans.extend(scope.spans)
        return web.Response(body=b"", content_type="application/x-protobuf")


def attributes(span) -> dict:
    out = {}
    for kv in span.attributes:
        value = kv.value
        out[kv.key] = next(getattr(value, f) for f in ("string_value", "int_value", "double_value", "bool_value")
                           if value.HasField(f))  # fmt: skip
    return out


def test_a_request_and_its_attempts_are_spans() -> None:
    collector = Collector()
    with FakeProvider("first") as a, FakeProvider("second") as b:
        config = {
            "models": [{"name": "m", "deployments": [upstream(a, name="dep-a"), upstream(b, name="dep-b")]}],
            "router": {"strategy": "priority", "retries": 0},
        }
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.port}", "OTEL_BSP_SCHEDULE_DELAY": "100"}
        with quasar_server(yaml.safe_dump(config), env=env) as srv:
            a.script("500")
            r = httpx.post(
                f"{srv.v1}/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "hi"}]}
            )
            assert r.status_code == 200 and r.headers["x-quasar-deployment"] == "dep-b"
            wait_for(lambda: len(collector.spans) >= 3, timeout=10, every=0.1)
    (server,) = [s for s in collector.spans if s.name == "chat m"]
    attrs = attributes(server)
    assert attrs["gen_ai.operation.name"] == "chat" and attrs["gen_ai.request.model"] == "m"
    assert attrs["gen_ai.usage.input_tokens"] == 1000 and attrs["gen_ai.usage.output_tokens"] == 500
    assert attrs["quasar.deployment"] == "dep-b" and attrs["http.response.status_code"] == 200
    assert attrs["quasar.request_id"] == r.headers["x-request-id"]
    children = sorted(
        (s for s in collector.spans if s.parent_span_id == server.span_id), key=lambda s: s.start_time_unix_nano
    )
    assert [s.name for s in children] == ["attempt dep-a", "attempt dep-b"]
    assert [attributes(s)["http.response.status_code"] for s in children] == [500, 200]
    begin, end = server.start_time_unix_nano, server.end_time_unix_nano
    assert all(begin <= s.start_time_unix_nano <= s.end_time_unix_nano <= end for s in children)
    assert not any(b"sk-test-" in body for body in collector.bodies)  # the deployments' keys
