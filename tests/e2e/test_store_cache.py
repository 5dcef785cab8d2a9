"""The exact-match response cache: opt in per request, a hit costs nothing and is logged as a hit."""

from __future__ import annotations

import time
import uuid

import httpx2 as httpx

from tests.server import Running
from tests.store_support import admin_headers, chat_body, database_url, log_rows, wait_for


def ask(running: Running, **body: object) -> httpx.Response:
    request_id = f"cache-{uuid.uuid4().hex}"
    return httpx.post(
        f"{running.v1}/chat/completions",
        json=body,
        headers={**admin_headers(), "x-request-id": request_id},
        timeout=60,
    )


def logged(running: Running, ids: list[str]) -> dict[str, dict]:
    def found() -> dict[str, dict] | None:
        rows = {r["request_id"]: r for r in log_rows(database_url(running)) if r["request_id"] in ids}
        return rows if len(rows) == len(ids) else None

    return wait_for(found)


def test_a_hit_is_the_same_reply_costs_nothing_and_is_logged(store_server: Running) -> None:
    prompt = [{"role": "user", "content": f"Name a colour ({uuid.uuid4().hex[:6]})"}]
    body = chat_body(3, messages=prompt, cache_enabled=True)
    miss = ask(store_server, **body)
    assert miss.status_code == 200 and miss.headers["x-quasar-cache"] == "MISS"
    hit = ask(store_server, **body, customer_identifier="someone")  # who asks is not part of the key
    assert hit.headers["x-quasar-cache"] == "HIT" and hit.json() == miss.json()
    assert ask(store_server, **{**body, "max_tokens": 2}).headers["x-quasar-cache"] == "MISS"
    plain = ask(store_server, **chat_body(3, messages=prompt))
    assert "x-quasar-cache" not in plain.headers

    ids = [r.headers["x-request-id"] for r in (miss, hit)]
    rows = logged(store_server, ids)
    first, second = rows[ids[0]], rows[ids[1]]
    assert not first["cache_hit"] and first["cost"] > 0
    assert second["cache_hit"] and second["cost"] == 0 and second["status"] == "ok"
    assert second["completion_tokens"] == first["completion_tokens"]
    breakdown = httpx.get(f"{store_server.v1}/requests/{ids[1]}", headers=admin_headers()).json()["request_breakdown"]
    assert breakdown["cached"] is True and breakdown["cost"] == 0


def test_cache_ttl_and_bad_values(store_server: Running) -> None:
    body = chat_body(2, messages=[{"role": "user", "content": uuid.uuid4().hex}], cache_enabled=True, cache_ttl=1)
    assert ask(store_server, **body).headers["x-quasar-cache"] == "MISS"
    assert ask(store_server, **body).headers["x-quasar-cache"] == "HIT"
    time.sleep(1.2)
    assert ask(store_server, **body).headers["x-quasar-cache"] == "MISS"
    for field, value in (("cache_ttl", 0), ("cache_ttl", "1m"), ("cache_enabled", "yes")):
        bad = ask(store_server, **{**chat_body(1), field: value})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == field
