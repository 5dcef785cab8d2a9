"""Three Quasar replicas behind a real nginx on loopback, sharing PostgreSQL and Redis (docs/deploy.md):
limits are global, a revoked key is refused by all within a second, every request is logged once, and a
replica killed mid-run costs only its in-flight requests, whose clients get errors, not hangs."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx
import pytest
import yaml

from tests.fake_provider import FakeProvider
from tests.gateway_config import upstream
from tests.server import Running, _wait_ready, free_port, quasar_server
from tests.store_support import MASTER, REDIS, admin_headers, cli, log_rows, pg_schema, redis_namespace, wait_for

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
CONF = """
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/body;
  proxy_temp_path {prefix}/proxy;
  upstream quasar {{
{servers}
    keepalive 16;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://quasar;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_read_timeout 60s;
      proxy_next_upstream error timeout;
    }}
  }}
}}
"""


@contextlib.contextmanager
def nginx_in_front(ports: list[int]) -> Iterator[str]:
    prefix = Path(tempfile.mkdtemp(prefix="quasar-nginx-"))
    port = free_port()
    servers = "\n".join(f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;" for p in ports)
    (prefix / "nginx.conf").write_text(CONF.format(prefix=prefix, servers=servers, port=port))
    proc = subprocess.Popen([NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g", "daemon off;"])
    try:
        wait_for(lambda: _up(f"http://127.0.0.1:{port}/health"), timeout=10, every=0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def deployment() -> Iterator[tuple[str, list[Running], FakeProvider, str]]:
    if not Path(NGINX).exists():
        pytest.fail("nginx is not installed: .ci/run installs Debian's nginx-light")
    with FakeProvider("up") as fake, pg_schema() as url, redis_namespace() as namespace, contextlib.ExitStack() as st:
        config = yaml.safe_dump(
            {"models": [{"name": "m", "deployments": [upstream(fake)]}], "redis_namespace": namespace}
        )
        env = {"QUASAR_DATABASE_URL": url, "QUASAR_REDIS_URL": REDIS, "QUASAR_MASTER_KEY": MASTER}
        cli("db", "upgrade", env=env)
        replicas = [st.enter_context(quasar_server(config, env=env, wait_ready=False)) for _ in range(3)]
        for replica in replicas:
            _wait_ready(replica, 60)
        ports = [int(r.url.rsplit(":", 1)[1]) for r in replicas]
        front = st.enter_context(nginx_in_front(ports))
        yield front, replicas, fake, url


def chat(front: str, key: str, request_id: str | None = None, timeout: float = 30) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", "x-request-id": request_id or f"ng-{uuid.uuid4().hex}"}
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(f"{front}/v1/chat/completions", json=body, headers=headers, timeout=timeout)


def new_key(front: str, **fields: object) -> tuple[str, str]:
    made = httpx.post(f"{front}/admin/keys", json={"name": "nginx", **fields}, headers=admin_headers())
    assert made.status_code == 201, made.text
    return made.json()["key"], made.json()["id"]


def test_limits_are_global_and_every_request_is_logged_once(deployment) -> None:
    front, _, _, url = deployment
    key, _ = new_key(front, rpm=5)
    ids = [f"ng-{uuid.uuid4().hex}" for _ in range(12)]
    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(lambda i: chat(front, key, i).status_code, ids))
    assert Counter(statuses) == {200: 5, 429: 7}
    rows = wait_for(lambda: (r := [x for x in log_rows(url) if x["request_id"] in ids]) and len(r) >= 12 and r)
    assert Counter(r["request_id"] for r in rows) == dict.fromkeys(ids, 1)


def test_a_key_revoked_through_one_replica_is_refused_by_all(deployment) -> None:
    front, replicas, _, _ = deployment
    key, key_id = new_key(front)
    assert all(chat(r.url, key).status_code == 200 for r in replicas)
    assert httpx.delete(f"{front}/admin/keys/{key_id}", headers=admin_headers()).status_code == 200
    revoked = time.monotonic()
    for replica in replicas:
        wait_for(lambda r=replica: chat(r.url, key).status_code == 401, timeout=3, every=0.05)
    assert time.monotonic() - revoked < 1.5


def test_a_killed_replica_costs_only_its_in_flight_requests(deployment) -> None:
    front, replicas, fake, _ = deployment
    key, _ = new_key(front)
    fake.reset("slow:1.5")
    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(chat, front, key, None, 20) for _ in range(6)]
        time.sleep(0.7)  # every request is waiting on the upstream now
        victim = replicas[2]
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait(10)
        started = time.monotonic()
        results = []
        for f in futures:
            try:
                results.append(f.result().status_code)
            except httpx.HTTPError:
                results.append(None)
    assert time.monotonic() - started < 10  # errors, not hangs
    assert results.count(200) >= 3 and all(s in (200, 502, None) for s in results)
    fake.reset()
    after = [chat(front, key).status_code for _ in range(6)]
    assert after == [200] * 6  # nginx sends the rest to the two replicas left
