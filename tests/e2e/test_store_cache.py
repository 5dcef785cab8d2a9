"""The exact-match response cache: opt in per request, a hit costs nothing and is logged as a hit."""

from __future__ import annotations

import time
import uuid

import httpx2 as httpx

from tests.server import Running
from tests.store_support import admin_headers, chat_body, database_url, log_rows, wait_for


def ask(running: Running, key: str | None = None, **body: object) -> httpx.Response:
    request_id = f"cache-{uuid.uuid4().hex}"
    auth = {"Authorization": f"Bearer {key}"} if key else admin_headers()
    return httpx.post(
        f"{running.v1}/chat/completions", json=body, headers={**auth, "x-request-id": request_id}, timeout=60
    )


def new_key(running: Running) -> str:
    reply = httpx.post(f"{running.url}/admin/keys", json={"name": "cache-test"}, headers=admin_headers())
    assert reply.status_code == 201, reply.text
    return reply.json()["key"]


def reply_of(response: httpx.Response) -> dict:
    """The reply without what names this one response (a hit gets an id of its own)."""
    return {k: v for k, v in response.json().items() if k not in ("id", "created")}


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
    assert hit.headers["x-quasar-cache"] == "HIT" and reply_of(hit) == reply_of(miss)
    assert hit.json()["id"] != miss.json()["id"] and hit.json()["id"].startswith("chatcmpl-")
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


def test_a_hit_carries_nothing_of_the_caller_who_stored_it(store_server: Running) -> None:
    alice, bob = new_key(store_server), new_key(store_server)
    prompt = [{"role": "user", "content": f"Name a fruit ({uuid.uuid4().hex[:6]})"}]
    body = chat_body(3, messages=prompt, cache_enabled=True)
    private = {"request_breakdown": True, "customer_identifier": "alice-co", "metadata": {"secret": "alice-only"}}
    stored = ask(store_server, alice, **body, **private)
    assert stored.headers["x-quasar-cache"] == "MISS" and stored.json()["request_breakdown"]["metadata"]
    plain = ask(store_server, bob, **body)
    assert plain.headers["x-quasar-cache"] == "HIT"
    assert "request_breakdown" not in plain.json() and "alice" not in plain.text
    own = ask(store_server, bob, **body, request_breakdown=True, metadata={"team": "bob"})
    assert own.headers["x-quasar-cache"] == "HIT" and "alice" not in own.text
    breakdown = own.json()["request_breakdown"]
    assert breakdown["metadata"] == {"team": "bob"} and breakdown["customer_identifier"] is None
    assert breakdown["cached"] is True and breakdown["full_request"]["metadata"] == {"team": "bob"}


def test_a_reply_bought_with_customer_credentials_is_never_shared(store_server: Running) -> None:
    alice, bob = new_key(store_server), new_key(store_server)
    prompt = [{"role": "user", "content": f"Name a tree ({uuid.uuid4().hex[:6]})"}]
    body = chat_body(3, messages=prompt, cache_enabled=True)
    paid = ask(store_server, alice, **body, customer_credentials={"llamacpp": {"api_key": "sk-alice-own-key"}})
    assert paid.status_code == 200 and "x-quasar-cache" not in paid.headers
    assert ask(store_server, bob, **body).headers["x-quasar-cache"] == "MISS"
