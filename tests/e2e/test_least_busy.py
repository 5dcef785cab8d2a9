"""`least-busy` over vLLM deployments: each vLLM's own /metrics (running, waiting, KV cache) decides the
order; when every vLLM is saturated the request spills over to another candidate."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import httpx2 as httpx
import pytest
import yaml
from aiohttp import web

from quasar.config import Deployment
from quasar.engines.load import parse
from quasar.engines.openai import metrics_url
from tests.fake_provider import FakeProvider
from tests.gateway_config import upstream
from tests.server import Running, free_port, quasar_server
from tests.store_support import wait_for

HI = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "request_breakdown": True}


class Metrics:
    """A Prometheus endpoint serving vLLM's gauges, with values the test sets."""

    def __init__(self) -> None:
        self.port = free_port()
        self.values = {"running": 0.0, "waiting": 0.0, "kv": 0.1}
        self.scrapes = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    async def _handle(self, request: web.Request) -> web.Response:
        self.scrapes += 1
        v = self.values
        text = (
            "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
            f'vllm:num_requests_running{{model_name="m"}} {v["running"]}\n'
            f'vllm:num_requests_waiting{{model_name="m"}} {v["waiting"]}\n'
            f'vllm:kv_cache_usage_perc{{model_name="m",engine="0"}} {v["kv"]}\n'
        )
        return web.Response(text=text)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()

    def __enter__(self) -> Metrics:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)


@pytest.fixture(scope="module")
def vllms() -> Iterator[tuple[Running, Metrics, Metrics]]:
    with (
        FakeProvider("a") as a,
        FakeProvider("b") as b,
        FakeProvider("cloud") as cloud,
        Metrics() as ma,
        Metrics() as mb,
    ):
        deployments = [
            upstream(a, name="vllm-a", provider="vllm", metrics_url=f"http://127.0.0.1:{ma.port}/metrics",
                     metrics_interval=0.1),
            upstream(b, name="vllm-b", provider="vllm", metrics_url=f"http://127.0.0.1:{mb.port}/metrics",
                     metrics_interval=0.1),
        ]  # fmt: skip
        config = {
            "models": [
                {"name": "m", "deployments": deployments},
                {"name": "cloud", "deployments": [upstream(cloud, name="cloud-0")]},
            ],
            "router": {"strategy": "least-busy", "fallbacks": {"m": ["cloud"]}},
        }
        with quasar_server(yaml.safe_dump(config)) as running:
            yield running, ma, mb


def served_by(running: Running) -> str:
    r = httpx.post(f"{running.v1}/chat/completions", json=HI, timeout=30)
    assert r.status_code == 200, r.text
    return r.headers["x-quasar-deployment"]


def test_the_least_loaded_vllm_is_chosen_by_its_own_metrics(vllms) -> None:
    running, ma, mb = vllms
    ma.values.update(running=12, waiting=0, kv=0.5)
    mb.values.update(running=2, waiting=0, kv=0.2)
    served_by(running)  # starts the readers
    wait_for(lambda: ma.scrapes > 2 and mb.scrapes > 2, timeout=10, every=0.05)
    assert {served_by(running) for _ in range(5)} == {"vllm-b"}
    ma.values.update(running=1)
    mb.values.update(running=20)
    wait_for(lambda: served_by(running) == "vllm-a", timeout=5, every=0.1)


def test_when_every_vllm_is_saturated_the_request_spills_over(vllms) -> None:
    running, ma, mb = vllms
    ma.values.update(running=40, waiting=3, kv=0.6)  # requests wait there already
    mb.values.update(running=30, waiting=0, kv=0.99)  # its KV cache is full
    wait_for(lambda: served_by(running) == "cloud-0", timeout=5, every=0.1)
    mb.values.update(kv=0.5)
    wait_for(lambda: served_by(running) == "vllm-b", timeout=5, every=0.1)


def test_the_vllm_preset_reads_its_servers_metrics_and_the_gauges_parse() -> None:
    deployment = Deployment(engine="openai", provider="vllm", base_url="http://gpu-1:8000/v1")
    assert metrics_url(deployment, "http://gpu-1:8000/v1") == "http://gpu-1:8000/metrics"
    off = Deployment(engine="openai", provider="vllm", base_url="http://gpu-1:8000/v1", metrics_url=False)
    assert metrics_url(off, "http://gpu-1:8000/v1") is None
    assert metrics_url(Deployment(engine="openai", provider="openai"), "https://api.openai.com/v1") is None
    old = parse('vllm:num_requests_running 2\nvllm:num_requests_waiting 1\nvllm:gpu_cache_usage_perc{a="b"} 0.3\n')
    assert old is not None and (old.running, old.waiting, old.kv_usage, old.saturated) == (2, 1, 0.3, True)
    assert parse("some_other_metric 1\n") is None
