"""PostgreSQL and Redis go away in the middle of a load and come back, through a loopback TCP proxy the
test cuts and restores; and the local engine gets a burst of more requests than it has slots and KV room.

In each the client gets a correct answer or the documented error, the server stays up with bounded
memory, and every request has exactly one request-log row once the store is back:

- the database away: every request is still answered (rows wait in memory, then in the spool);
- Redis away: a key with limits is refused with 503 `store_unavailable` and Retry-After (limits fail
  closed, docs/deploy.md), a key without limits is served, and limited keys are served again once it is
  back;
- the local engine full: 200, or 503 `queue_full` with Retry-After; never another 5xx.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx
import yaml

from tests.fake_provider import FakeProvider
from tests.gateway_config import upstream
from tests.local_config import NO_EOS, local_config
from tests.server import Running, quasar_server
from tests.store_support import (
    MASTER,
    PG,
    REDIS,
    admin_headers,
    cli,
    log_rows,
    pg_schema,
    redis_namespace,
    tmp_sqlite_url,
    wait_for,
)
from tests.tcp_proxy import TcpProxy, tcp_proxy

BURST = 4  # requests per caller in each phase, at once (streamed and not, in turn)


@dataclass
class Result:
    request_id: str
    who: str
    status: int
    code: str | None
    retry_after: str | None
    whole: bool  # a 200 with a complete answer (a stream ending in [DONE], no error event)


def rss_mb(running: Running) -> float:
    status = Path(f"/proc/{running.process.pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]) / 1024


def ask(running: Running, who: str, headers: dict[str, str], stream: bool) -> Result:
    request_id = f"store-fault-{uuid.uuid4().hex}"
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    with httpx.stream(
        "POST",
        f"{running.v1}/chat/completions",
        json=body,
        headers={**headers, "x-request-id": request_id},
        timeout=30,
    ) as r:
        text = r.read().decode()
    code = r.json()["error"]["code"] if r.status_code != 200 else None
    if r.status_code != 200:
        assert {"message", "type", "param", "code"} <= set(r.json()["error"]), text
    whole = r.status_code == 200 and (
        text.rstrip().endswith("data: [DONE]") and '"error"' not in text if stream else "choices" in r.json()
    )
    return Result(request_id, who, r.status_code, code, r.headers.get("retry-after"), whole)


def burst(pool: ThreadPoolExecutor, running: Running, callers: dict[str, dict[str, str]]) -> list[Future[Result]]:
    return [pool.submit(ask, running, who, h, i % 2 == 1) for who, h in callers.items() for i in range(BURST)]


def load_through_an_outage(
    running: Running,
    proxy: TcpProxy,
    callers: dict[str, dict[str, str]],
    while_down: Callable[[], object] = lambda: None,
) -> dict[str, list[Result]]:
    """Bursts of requests from each caller: before the cut ("up"), cut while in flight ("cut"), sent while
    the store is away ("down"; then `while_down()`), and once it is back ("back")."""
    with ThreadPoolExecutor(2 * BURST * len(callers)) as pool:
        up = [f.result() for f in burst(pool, running, callers)]
        in_flight = burst(pool, running, callers)
        time.sleep(0.1)
        proxy.cut()
        cut = [f.result() for f in in_flight]
        down = [f.result() for f in burst(pool, running, callers)]
        while_down()
        proxy.restore()
        back = [f.result() for f in burst(pool, running, callers)]
    return {"up": up, "cut": cut, "down": down, "back": back}


def one_row_each(url: str, results: list[Result]) -> None:
    ids = {r.request_id for r in results}

    def rows() -> list[dict]:
        got = [row for row in log_rows(url) if row["request_id"] in ids]
        return got if len({row["request_id"] for row in got}) == len(ids) else []

    counts = Counter(row["request_id"] for row in wait_for(rows, timeout=30))
    assert counts == dict.fromkeys(ids, 1)


def gateway(fake: FakeProvider, **extra: object) -> str:
    config = {"models": [{"name": "m", "deployments": [upstream(fake)]}], "router": {"retries": 0}, **extra}
    return yaml.safe_dump(config)


def test_database_away_mid_load_every_request_is_answered_and_logged_once() -> None:
    spool = Path(tempfile.mkdtemp(prefix="quasar-spool-"))
    # two rows in memory at most, then the spool; small batches, often, so that the cut meets an insert
    store = {"buffer_rows": 2, "flush_seconds": 0.05, "batch_rows": 2, "spool_dir": str(spool)}
    with FakeProvider("f") as fake, pg_schema() as direct, tcp_proxy(("127.0.0.1", 5432)) as proxy:
        cli("db", "upgrade", env={"QUASAR_DATABASE_URL": direct})
        via_proxy = direct.replace(PG, f"postgresql://postgres@127.0.0.1:{proxy.port}/test")
        with quasar_server(gateway(fake, store=store), env={"QUASAR_DATABASE_URL": via_proxy}) as running:
            before = rss_mb(running)
            spooled = lambda: wait_for(lambda: list(spool.glob("quasar-spool-*.jsonl")), timeout=10)  # noqa: E731
            phases = load_through_an_outage(running, proxy, {"open": {}}, while_down=spooled)
            results = [r for phase in phases.values() for r in phase]
            bad = [r for r in results if not r.whole]
            assert not bad, bad[:3]  # the log's database is not on the request path
            one_row_each(direct, results)  # rows cut mid-insert are written once, not twice
            wait_for(lambda: not list(spool.glob("quasar-spool-*.jsonl")), timeout=10)
            assert httpx.get(f"{running.url}/health").status_code == 200
            assert rss_mb(running) - before < 100
            assert "Traceback" not in running.log()


def test_redis_away_mid_load_limits_fail_closed_then_recover_and_every_request_is_logged_once() -> None:
    url = tmp_sqlite_url()
    with FakeProvider("f") as fake, redis_namespace() as namespace, tcp_proxy(("127.0.0.1", 6379)) as proxy:
        via_proxy = REDIS.replace(":6379", f":{proxy.port}")
        env = {"QUASAR_DATABASE_URL": url, "QUASAR_MASTER_KEY": MASTER, "QUASAR_REDIS_URL": via_proxy}
        with quasar_server(gateway(fake, redis_namespace=namespace), env=env) as running:
            made = httpx.post(f"{running.url}/admin/keys", json={"rpm": 100_000}, headers=admin_headers()).json()
            callers = {"limited": {"Authorization": f"Bearer {made['key']}"}, "unlimited": admin_headers()}
            before = rss_mb(running)
            phases = load_through_an_outage(running, proxy, callers)
            results = [r for phase in phases.values() for r in phase]

            def of(who: str, phase: str) -> list[tuple[int, str | None, str | None]]:
                return [(r.status, r.code, r.retry_after) for r in phases[phase] if r.who == who]

            assert all(r.whole for r in results if r.who == "unlimited")  # no limits: Redis is not needed
            refused = (503, "store_unavailable", "1")  # fail closed: no request past a limit it cannot check
            assert all(r.whole for r in phases["up"])
            assert all(r.whole or (r.status, r.code, r.retry_after) == refused for r in phases["cut"])
            assert of("limited", "down") == [refused] * BURST
            assert all(r.whole for r in phases["back"]), of("limited", "back")  # the limits are checked again
            one_row_each(url, results)
            assert httpx.get(f"{running.url}/health").status_code == 200
            assert rss_mb(running) - before < 100
            assert "Traceback" not in running.log()


FULL = local_config(
    spark={"parallel": 2, "max_queue": 2, "context_length": 160, "queue_timeout": 1, "threads": 1, "nice": 0}
)


def test_local_engine_past_its_slots_and_kv_cache_answers_200_or_503_with_retry_after() -> None:
    """Ten requests at once of ~75 tokens each (a 33-token prompt, 40 out) on two slots sharing a 160-token
    KV cache, two more may wait: two are served at once, the others wait for room (1 s at most) or are
    refused at once."""
    url = tmp_sqlite_url()
    with quasar_server(FULL, env={"QUASAR_DATABASE_URL": url}) as running:
        body = {"model": "spark", "messages": [{"role": "user", "content": "Write a story."}], "max_tokens": 40}

        def one(i: int) -> tuple[str, httpx.Response]:
            request_id = f"kv-full-{uuid.uuid4().hex}"
            payload = {**body, "logit_bias": NO_EOS, "stream": i % 2 == 1}
            headers = {"x-request-id": request_id}
            r = httpx.post(f"{running.v1}/chat/completions", json=payload, headers=headers, timeout=120)
            return request_id, r

        with ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(one, range(10)))
        statuses = Counter(r.status_code for _, r in answers)
        assert set(statuses) == {200, 503}, statuses
        for _, r in answers:
            if r.status_code == 503:
                assert r.json()["error"]["code"] == "queue_full" and int(r.headers["retry-after"]) >= 1
            elif r.headers["content-type"].startswith("text/event-stream"):
                assert r.text.rstrip().endswith("data: [DONE]") and '"error"' not in r.text
            else:
                assert r.json()["usage"]["completion_tokens"] == 40
        ids = {request_id for request_id, _ in answers}
        rows = wait_for(
            lambda: (got := [x for x in log_rows(url) if x["request_id"] in ids]) and len(got) >= 10 and got
        )
        assert Counter(row["request_id"] for row in rows) == dict.fromkeys(ids, 1)
        assert httpx.post(f"{running.v1}/chat/completions", json=body, timeout=120).status_code == 200  # still up
        assert "Traceback" not in running.log()
