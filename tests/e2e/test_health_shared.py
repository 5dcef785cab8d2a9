"""Cooldowns shared through Redis: one replica's 429 from an upstream rests that deployment for all."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import httpx2 as httpx
import pytest
import yaml

from tests.fake_provider import FakeProvider
from tests.gateway_config import upstream
from tests.server import Running, _wait_ready, quasar_server
from tests.store_support import REDIS, redis_namespace, tmp_sqlite_url

HI = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
MASTER = "sk-master-latency"
AS_MASTER = {"authorization": f"Bearer {MASTER}"}


@contextlib.contextmanager
def two_replicas(deployments: list[dict], **config: object) -> Iterator[list[Running]]:
    """Two Quasar processes on one config and one Redis namespace, each with its own log database."""
    with redis_namespace() as namespace, contextlib.ExitStack() as stack:
        text = yaml.safe_dump(
            {"models": [{"name": "m", "deployments": deployments}], **config, "redis_namespace": namespace}
        )
        running = []
        for _ in range(2):
            env = {"QUASAR_REDIS_URL": REDIS, "QUASAR_DATABASE_URL": tmp_sqlite_url()}
            running.append(stack.enter_context(quasar_server(text, env=env, wait_ready=False)))
        for replica in running:
            _wait_ready(replica, 60)
        yield running


@pytest.fixture(scope="module")
def replicas() -> Iterator[tuple[list[Running], FakeProvider, FakeProvider]]:
    router = {"strategy": "priority", "cooldown_seconds": 30, "retries": 0}
    with (
        FakeProvider("a") as a,
        FakeProvider("b") as b,
        two_replicas([upstream(a, name="first"), upstream(b, name="second")], router=router) as running,
    ):
        yield running, a, b


def test_a_429_on_one_replica_cools_the_deployment_on_every_replica(replicas) -> None:
    (one, two), a, _ = replicas
    a.script("429:30")
    first = httpx.post(f"{one.v1}/chat/completions", json=HI, timeout=30)
    assert first.status_code == 200 and first.headers["x-quasar-deployment"] == "second"
    assert first.headers["x-quasar-attempts"] == "2"
    served = len(a.requests)
    other = httpx.post(f"{two.v1}/chat/completions", json={**HI, "request_breakdown": True}, timeout=30)
    assert other.status_code == 200 and other.headers["x-quasar-deployment"] == "second"
    assert other.headers["x-quasar-attempts"] == "1" and len(a.requests) == served  # `first` was not asked
    dropped = other.json()["request_breakdown"]["routing"]["dropped"]
    assert any(d["deployment"] == "first" and "cooling down" in d["reason"] for d in dropped)


@pytest.fixture(scope="module")
def latency_replicas() -> Iterator[tuple[list[Running], FakeProvider, FakeProvider]]:
    with (
        FakeProvider("quick") as a,
        FakeProvider("steady", default="slow:0.25") as b,
        two_replicas(
            [upstream(a, name="quick"), upstream(b, name="steady")],
            router={"strategy": "latency", "retries": 0},
            auth={"master_key": MASTER},
        ) as running,
    ):
        yield running, a, b


def _latency_ms(replica: Running, deployment: str) -> float:
    rows = httpx.get(f"{replica.url}/admin/deployments", headers=AS_MASTER, timeout=10).json()["data"]
    return next(row["latency_ms"] or 0.0 for row in rows if row["name"] == deployment)


def _served_by(replica: Running) -> str:
    reply = httpx.post(f"{replica.v1}/chat/completions", json=HI, headers=AS_MASTER, timeout=30)
    assert reply.status_code == 200
    return reply.headers["x-quasar-deployment"]


def test_one_replicas_slow_observations_change_the_others_choice(latency_replicas) -> None:
    (one, two), quick, _ = latency_replicas
    # `two` measures both: unmeasured deployments go first, then the faster one
    assert [_served_by(two) for _ in range(3)] == ["quick", "steady", "quick"]
    # `quick` turns slow for `one`, which measures it once at 1.5 s and moves to `steady`
    quick.script("slow:1.5")
    assert [_served_by(one) for _ in range(3)] == ["quick", "steady", "steady"]
    deadline = time.monotonic() + 5
    while _latency_ms(two, "quick") < 400 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _latency_ms(two, "quick") >= 400  # `one`'s sample, weighed in with `two`'s own two fast ones
    assert _served_by(two) == "steady"
