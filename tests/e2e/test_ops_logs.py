"""`quasar serve --log-format json`: every line is one JSON object; one access line per request; a
line written while a request is answered carries its request id."""

from __future__ import annotations

import json
import time

import httpx2 as httpx

from tests.fake_provider import FakeProvider
from tests.gateway_config import gateway_config, upstream
from tests.server import Running, free_port, quasar_server

MASTER = "sk-master-logs-test"


def lines(running: Running) -> list[dict]:
    return [json.loads(line) for line in running.log().splitlines() if line.strip()]


def access_line(running: Running, request_id: str) -> dict:
    deadline = time.monotonic() + 5
    while True:
        found = [r for r in lines(running) if r["logger"] == "quasar.access" and r.get("request_id") == request_id]
        if found or time.monotonic() > deadline:
            assert len(found) == 1, found
            return found[0]
        time.sleep(0.05)


def test_json_logs_with_access_lines() -> None:
    with FakeProvider("a") as fake:
        config = gateway_config({"solo": [upstream(fake, name="solo-a")]}) + "cache: {enabled: true}\n"
        env = {"QUASAR_MASTER_KEY": MASTER, "QUASAR_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}  # Redis away
        with quasar_server(config, env=env, args=("--log-format", "json", "--access-log")) as running:
            headers = {"Authorization": f"Bearer {MASTER}", "x-request-id": "req-ops-json-1"}
            body = {"model": "solo", "messages": [{"role": "user", "content": "hi"}]}
            ok = httpx.post(f"{running.v1}/chat/completions", json=body, headers=headers, timeout=30)
            assert ok.status_code == 200
            headers["x-request-id"] = "req-ops-json-2"
            missing = httpx.post(
                f"{running.v1}/chat/completions", json={**body, "model": "nope"}, headers=headers, timeout=30
            )
            assert missing.status_code == 404

            served = access_line(running, "req-ops-json-1")
            assert served["model"] == "solo" and served["deployment"] == "solo-a"
            assert served["http_status"] == 200 and served["status"] == "ok"
            assert served["prompt_tokens"] == 1000 and served["completion_tokens"] == 500  # the fake's usage
            assert served["latency_ms"] > 0 and served["level"] == "info"
            refused = access_line(running, "req-ops-json-2")
            assert refused["http_status"] == 404 and refused["status"] == "error" and "nope" in refused["error"]

            every = lines(running)  # each line parsed as JSON above
            cache = [r for r in every if "response cache unavailable" in r["message"]]
            assert cache and cache[0]["request_id"] == "req-ops-json-1" and cache[0]["level"] == "warning"
            startup = next(r for r in every if r["message"].startswith("quasar: serving solo"))
            assert "request_id" not in startup
            assert MASTER not in running.log()


def test_no_access_log_by_default() -> None:
    with FakeProvider("a") as fake:
        config = gateway_config({"solo": [upstream(fake)]})
        with quasar_server(config, args=("--log-format", "json")) as running:
            body = {"model": "solo", "messages": [{"role": "user", "content": "hi"}]}
            assert httpx.post(f"{running.v1}/chat/completions", json=body, timeout=30).status_code == 200
            time.sleep(0.2)
            assert not [r for r in lines(running) if r["logger"] == "quasar.access"]
