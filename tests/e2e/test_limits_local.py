"""Rate limits and budgets in one process: per key and per customer_identifier, with OpenAI's headers."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx2 as httpx

from quasar.accounting.record import cost_of
from quasar.config import Price
from tests.server import Running
from tests.store_support import PRICE, admin_headers, chat_body, database_url, log_rows, wait_for

# The worst case a request with max_tokens=1 and the message "hi" reserves: the meter's prompt bound
# (64 + 8 per message + the bytes) times the input price, plus one output token.
WORST_PROMPT = 64 + 8 + 2
WORST_COST = cost_of(Price(**PRICE), WORST_PROMPT, 0, 1)


def make_key(running: Running, **fields: object) -> tuple[str, str]:
    made = httpx.post(f"{running.url}/admin/keys", json={"name": "limits", **fields}, headers=admin_headers()).json()
    return made["key"], made["id"]


def chat(running: Running, key: str, **body: object) -> httpx.Response:
    return httpx.post(
        f"{running.v1}/chat/completions",
        json={**chat_body(1), **body},
        headers={"Authorization": f"Bearer {key}"},
        timeout=120,
    )


def test_key_rpm(store_server: Running) -> None:
    key, _ = make_key(store_server, rpm=2)
    first = chat(store_server, key)
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert chat(store_server, key).status_code == 200
    refused = chat(store_server, key)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["type"] == "rate_limit_error" and error["code"] == "rate_limit_exceeded"
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-limit-requests"] == "2"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.headers["x-ratelimit-reset-requests"].endswith("s")


def test_key_tpm(store_server: Running) -> None:
    key, _ = make_key(store_server, tpm=50)
    first = chat(store_server, key)
    assert first.status_code == 200 and first.headers["x-ratelimit-limit-tokens"] == "50"
    refused = chat(store_server, key)
    assert refused.status_code == 429
    assert refused.headers["x-ratelimit-limit-tokens"] == "50" and "retry-after" in refused.headers
    assert "tokens per minute" in refused.json()["error"]["message"]


def test_twenty_concurrent_requests_cannot_overspend_a_budget_that_fits_five(store_server: Running) -> None:
    budget = WORST_COST * 5.5
    key, key_id = make_key(store_server, budget=budget)
    with ThreadPoolExecutor(20) as pool:
        replies = list(pool.map(lambda _: chat(store_server, key), range(20)))
    ok = [r for r in replies if r.status_code == 200]
    refused = [r for r in replies if r.status_code == 429]
    assert len(ok) + len(refused) == 20, [r.text for r in replies]
    assert len(ok) >= 5 and refused
    for r in refused:
        assert r.json()["error"]["code"] == "insufficient_quota" and "retry-after" in r.headers
    rows = wait_for(lambda: [r for r in log_rows(database_url(store_server)) if r["key_id"] == key_id][19:] and [
        r for r in log_rows(database_url(store_server)) if r["key_id"] == key_id])  # fmt: skip
    spent = sum(r["cost"] for r in rows)
    assert len(rows) == 20 and spent <= budget
    assert sum(1 for r in rows if r["http_status"] == 429) == len(refused)
    # once every request has settled, what is left is what the log says is left
    left = budget - spent
    if left < WORST_COST:
        assert chat(store_server, key).status_code == 429


def test_customer_limits(store_server: Running) -> None:
    key, _ = make_key(store_server)
    codes = [chat(store_server, key, customer_identifier="c-rpm").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    assert chat(store_server, key, customer_identifier="someone-else").status_code == 200
    other_key, _ = make_key(store_server)
    assert chat(store_server, other_key, customer_identifier="c-rpm").status_code == 429  # the customer, any key
    broke = chat(store_server, key, customer_identifier="c-budget")
    assert broke.status_code == 429 and broke.json()["error"]["code"] == "insufficient_quota"
    assert "customer c-budget" in broke.json()["error"]["message"]
