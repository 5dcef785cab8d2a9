"""Three Quasar processes sharing PostgreSQL and Redis: global limits, shared budgets, revocation, no lost row."""

from __future__ import annotations

import contextlib
import signal
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.e2e.test_limits_local import WORST_COST
from tests.server import Running, _wait_ready, quasar_server
from tests.store_support import (
    MASTER,
    REDIS,
    admin_headers,
    chat_body,
    cli,
    log_rows,
    pg_schema,
    priced_config,
    redis_namespace,
    wait_for,
)


@dataclass
class Cluster:
    replicas: list[Running]
    url: str
    env: dict[str, str]
    config: Path


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with pg_schema() as url, redis_namespace() as namespace, contextlib.ExitStack() as stack:
        limits = "limits:\n  customers:\n    c-shared: {rpm: 2}\n"
        config = priced_config(extra=f"redis_namespace: {namespace}\n{limits}")
        config_path = Path(tempfile.mkdtemp(prefix="quasar-cluster-")) / "quasar.yaml"
        config_path.write_text(config)
        env = {"QUASAR_DATABASE_URL": url, "QUASAR_REDIS_URL": REDIS, "QUASAR_MASTER_KEY": MASTER}
        cli("db", "upgrade", env=env)
        replicas = [stack.enter_context(quasar_server(config, env=env, wait_ready=False)) for _ in range(3)]
        for running in replicas:
            _wait_ready(running, 90)
        yield Cluster(replicas, url, env, config_path)


def post(running: Running, key: str, request_id: str, **body: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", "x-request-id": request_id}
    return httpx.post(f"{running.v1}/chat/completions", json={**chat_body(1), **body}, headers=headers, timeout=120)


def models_status(running: Running, key: str) -> int:
    """A request that needs only the key: quick however busy the machine is."""
    return httpx.get(f"{running.v1}/models", headers={"Authorization": f"Bearer {key}"}).status_code


def in_flight(running: Running) -> int:
    """Requests the replica's deployments are answering or queueing now (GET /admin/deployments)."""
    listed = httpx.get(f"{running.url}/admin/deployments", headers=admin_headers(), timeout=30).json()["data"]
    return sum(row["in_flight"] for row in listed)


def make_key(cluster: Cluster, **fields: object) -> dict:
    made = httpx.post(f"{cluster.replicas[0].url}/admin/keys", json={"name": "c", **fields}, headers=admin_headers())
    assert made.status_code == 201, made.text
    return made.json()


def rows_for(cluster: Cluster, ids: set[str]) -> list[dict]:
    def found() -> list[dict] | None:
        rows = [r for r in log_rows(cluster.url) if r["request_id"] in ids]
        return rows if len(rows) >= len(ids) else None

    return wait_for(found, timeout=30)


def burst(cluster: Cluster, key: str, count: int, replicas: list[Running] | None = None) -> list[tuple[str, int]]:
    replicas = replicas or cluster.replicas
    ids = [f"cluster-{uuid.uuid4().hex}" for _ in range(count)]

    def one(i: int) -> tuple[str, int]:
        return ids[i], post(replicas[i % len(replicas)], key, ids[i]).status_code

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def test_a_global_rpm_limit_holds_and_every_request_has_its_row(cluster: Cluster) -> None:
    key = make_key(cluster, rpm=6)["key"]
    started = time.monotonic()
    results = burst(cluster, key, 18)
    elapsed = time.monotonic() - started
    ok = [i for i, status in results if status == 200]
    assert {status for _, status in results} <= {200, 429}
    assert 6 <= len(ok) <= 6 + int(elapsed * 6 / 60), (len(ok), elapsed)
    rows = rows_for(cluster, {i for i, _ in results})
    assert len(rows) == 18 and len({r["id"] for r in rows}) == 18
    statuses = dict(results)
    for row in rows:
        assert row["http_status"] == statuses[row["request_id"]]
        assert row["status"] == ("ok" if row["http_status"] == 200 else "error")


def test_a_shared_budget_is_not_overspent_by_concurrent_requests_on_three_replicas(cluster: Cluster) -> None:
    budget = WORST_COST * 5.5
    made = make_key(cluster, budget=budget)
    results = burst(cluster, made["key"], 20)
    ok = [i for i, status in results if status == 200]
    assert 5 <= len(ok) < 20 and {s for _, s in results} <= {200, 429}
    rows = rows_for(cluster, {i for i, _ in results})
    assert sum(r["cost"] for r in rows) <= budget


def test_tpm_and_customer_limits_are_shared(cluster: Cluster) -> None:
    key = make_key(cluster, tpm=50)["key"]
    first = post(cluster.replicas[0], key, f"tpm-{uuid.uuid4().hex}")
    second = post(cluster.replicas[1], key, f"tpm-{uuid.uuid4().hex}")
    assert (first.status_code, second.status_code) == (200, 429)
    assert second.headers["x-ratelimit-limit-tokens"] == "50" and "retry-after" in second.headers
    key = make_key(cluster)["key"]
    codes = [post(r, key, f"cust-{uuid.uuid4().hex}", customer_identifier="c-shared").status_code
             for r in cluster.replicas]  # fmt: skip
    assert codes == [200, 200, 429]


def test_revocation_reaches_every_replica_within_a_second(cluster: Cluster) -> None:
    for revoke_with in ("admin", "cli"):
        made = make_key(cluster)
        for running in cluster.replicas:  # each replica has the key in its cache now
            assert post(running, made["key"], f"warm-{uuid.uuid4().hex}").status_code == 200
        if revoke_with == "admin":
            revoked = httpx.delete(f"{cluster.replicas[0].url}/admin/keys/{made['id']}", headers=admin_headers())
            assert revoked.status_code == 200
        else:
            cli("keys", "revoke", made["id"], "--config", str(cluster.config), env=cluster.env)
        at = time.monotonic()
        for running in cluster.replicas:
            wait_for(lambda r=running, k=made["key"]: models_status(r, k) == 401, timeout=3, every=0.05)
        assert time.monotonic() - at < 1.0, revoke_with


def test_the_response_cache_is_shared_through_redis(cluster: Cluster) -> None:
    key = make_key(cluster)["key"]
    body = {"messages": [{"role": "user", "content": uuid.uuid4().hex}], "cache_enabled": True, "max_tokens": 2}
    first = post(cluster.replicas[0], key, f"cache-{uuid.uuid4().hex}", **body)
    second = post(cluster.replicas[1], key, f"cache-{uuid.uuid4().hex}", **body)
    assert (first.headers["x-quasar-cache"], second.headers["x-quasar-cache"]) == ("MISS", "HIT")
    assert second.json()["choices"] == first.json()["choices"] and second.json()["usage"] == first.json()["usage"]


def test_sigterm_under_load_loses_no_row(cluster: Cluster) -> None:
    victim = cluster.replicas[2]
    key = make_key(cluster)["key"]
    ids = [f"term-{uuid.uuid4().hex}" for _ in range(16)]

    def one(request_id: str) -> tuple[str, int | None, float]:
        try:
            status = post(victim, key, request_id, max_tokens=30).status_code
        except httpx.HTTPError:
            status = None
        return request_id, status, time.monotonic()

    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(one, i) for i in ids]
        wait_for(lambda: in_flight(victim) or None, timeout=60)  # SIGTERM once a request is being answered
        victim.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        results = [f.result() for f in futures]
    victim.process.wait(30)
    answered = {i for i, status, _ in results if status is not None}
    assert any(status == 200 and at > signalled for _, status, at in results), "nothing was in flight at SIGTERM"
    rows = rows_for(cluster, answered)
    assert {r["request_id"] for r in rows} >= answered
