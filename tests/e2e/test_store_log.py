"""The request log: one row per request whatever happened, read back through the API and the CLI."""

from __future__ import annotations

import socket
import sqlite3
import time
import uuid

import httpx2 as httpx
import openai
import pytest

from quasar.accounting.record import cost_of
from quasar.config import Price
from tests.server import Running, raw_chat
from tests.store_support import (
    MASTER,
    PLANTED_CUSTOMER_SECRET,
    PLANTED_PROVIDER_KEY,
    PRICE,
    admin_headers,
    chat_body,
    cli,
    database_url,
    log_rows,
    table_dump,
    wait_for,
)


def rows_by_request(running: Running, ids: list[str]) -> dict[str, dict]:
    def found() -> dict[str, dict] | None:
        rows = {r["request_id"]: r for r in log_rows(database_url(running)) if r["request_id"] in ids}
        return rows if len(rows) == len(ids) else None

    return wait_for(found)


def post(running: Running, body: dict, request_id: str) -> httpx.Response:
    headers = {**admin_headers(), "x-request-id": request_id}
    return httpx.post(f"{running.v1}/chat/completions", json=body, headers=headers, timeout=60)


def new_id() -> str:
    return f"test-{uuid.uuid4().hex}"


def test_every_request_gets_one_row(store_server: Running) -> None:
    ids = {name: new_id() for name in ("ok", "stream", "bad", "missing", "private", "bad_customer", "no_key")}
    meta = {"team": "search", "n": 3}
    ok = post(store_server, chat_body(2, customer_identifier="alice", metadata=meta), ids["ok"])
    assert ok.status_code == 200
    with httpx.stream(
        "POST",
        f"{store_server.v1}/chat/completions",
        json=chat_body(2, stream=True),
        headers={**admin_headers(), "x-request-id": ids["stream"]},
        timeout=60,
    ) as streamed:
        assert streamed.status_code == 200
        assert streamed.read().endswith(b"data: [DONE]\n\n")
    assert post(store_server, chat_body(0), ids["bad"]).status_code == 400
    assert post(store_server, {**chat_body(1), "model": "nope"}, ids["missing"]).status_code == 404
    assert post(store_server, chat_body(1, disable_log=True), ids["private"]).status_code == 200
    bad = post(store_server, chat_body(1, customer_identifier=42), ids["bad_customer"])
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "customer_identifier"
    no_key = httpx.post(
        f"{store_server.v1}/chat/completions", json=chat_body(1), headers={"x-request-id": ids["no_key"]}
    )
    assert no_key.status_code == 401

    rows = rows_by_request(store_server, list(ids.values()))
    row = rows[ids["ok"]]
    assert row["status"] == "ok" and row["http_status"] == 200 and not row["stream"]
    assert row["customer_identifier"] == "alice" and row["metadata"] == meta
    assert row["key_id"].startswith("master:") and row["model"] == "spark"
    assert row["provider"] == "llamacpp" and row["deployment"] == ok.headers["x-quasar-deployment"] == "spark#0"
    assert row["attempts"] == 1 and row["trace"]["attempts"][0]["status"] == 200
    usage = ok.json()["usage"]
    assert (row["prompt_tokens"], row["completion_tokens"]) == (usage["prompt_tokens"], usage["completion_tokens"])
    expected = cost_of(Price(**PRICE), usage["prompt_tokens"], 0, usage["completion_tokens"])
    assert row["cost"] == pytest.approx(expected) and row["cost"] > 0
    assert row["price_version"] == "100/200/100" and row["attempts"] == 1 and row["latency_ms"] > 0
    assert row["messages"] == [{"role": "user", "content": "hi"}]
    assert row["reply"][0]["content"] == ok.json()["choices"][0]["message"]["content"]

    row = rows[ids["stream"]]
    assert row["status"] == "ok" and bool(row["stream"]) and row["ttft_ms"] is not None
    assert row["completion_tokens"] > 0 and row["reply"][0]["content"]
    assert (rows[ids["bad"]]["status"], rows[ids["bad"]]["http_status"]) == ("error", 400)
    assert "max_tokens" in rows[ids["bad"]]["error"]
    assert (rows[ids["missing"]]["http_status"], rows[ids["missing"]]["model"]) == (404, "nope")
    assert rows[ids["bad_customer"]]["http_status"] == 400
    assert (rows[ids["no_key"]]["http_status"], rows[ids["no_key"]]["key_id"]) == (401, None)
    private = rows[ids["private"]]
    assert private["status"] == "ok" and private["completion_tokens"] > 0
    assert private["messages"] is None and private["reply"] is None


def raw_chat_as_master(running: Running, body: dict, request_id: str) -> socket.socket:
    return raw_chat(running, body, {"Authorization": f"Bearer {MASTER}", "x-request-id": request_id})


def test_cancelled_stream_is_logged_as_cancelled(store_server: Running) -> None:
    request_id = new_id()
    body = chat_body(400, stream=True, messages=[{"role": "user", "content": "Write a long story about the sea."}])
    with raw_chat_as_master(store_server, body, request_id) as sock:
        received = b""
        while b"data: " not in received:
            chunk = sock.recv(4096)
            assert chunk, "the server closed the stream before the first event"
            received += chunk
    row = rows_by_request(store_server, [request_id])[request_id]
    assert row["status"] == "cancelled", row
    assert row["completion_tokens"] < 400


def test_cancelled_non_streamed_request_is_logged_as_cancelled(store_server: Running) -> None:
    request_id = new_id()
    body = chat_body(400, messages=[{"role": "user", "content": "Write a long story about the sea."}])
    body["logit_bias"] = {"2": -100}
    with raw_chat_as_master(store_server, body, request_id):
        time.sleep(0.5)  # generating by now; then the client goes away
    row = rows_by_request(store_server, [request_id])[request_id]
    assert (row["status"], row["http_status"]) == ("cancelled", 499), row


def test_reading_back_through_the_api_and_cli(store_server: Running) -> None:
    request_id = new_id()
    customer = f"cust-{uuid.uuid4().hex[:6]}"
    assert post(store_server, chat_body(1, customer_identifier=customer), request_id).status_code == 200
    rows_by_request(store_server, [request_id])
    one = httpx.get(f"{store_server.v1}/requests/{request_id}", headers=admin_headers()).json()
    assert one["request_id"] == request_id and one["customer_identifier"] == customer
    breakdown = one["request_breakdown"]
    assert breakdown["status_code"] == 200 and breakdown["cost"] == one["cost"] and breakdown["cached"] is False
    assert breakdown["prompt_messages"] == [{"role": "user", "content": "hi"}]
    missing = httpx.get(f"{store_server.v1}/requests/nope-{uuid.uuid4().hex}", headers=admin_headers())
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"

    usage = httpx.get(f"{store_server.v1}/usage", params={"group_by": "customer"}, headers=admin_headers()).json()
    mine = next(r for r in usage["data"] if r["customer"] == customer)
    assert mine["requests"] == 1 and mine["cost"] == pytest.approx(one["cost"]) and mine["errors"] == 0
    assert mine["p50_latency_ms"] == pytest.approx(one["latency_ms"], rel=0.0906)  # the bins' bound, docs/api.md
    by_model = httpx.get(f"{store_server.v1}/usage", params={"group_by": "model"}, headers=admin_headers()).json()
    assert any(r["model"] == "spark" and r["requests"] >= 1 for r in by_model["data"])
    future = httpx.get(f"{store_server.v1}/usage", params={"from": "2100-01-01T00:00:00"}, headers=admin_headers())
    assert future.json()["data"] == []
    bad = httpx.get(f"{store_server.v1}/usage", params={"group_by": "planet"}, headers=admin_headers())
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "group_by"
    bad = httpx.get(f"{store_server.v1}/usage", params={"from": "yesterday-ish"}, headers=admin_headers())
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "from"

    other = httpx.post(f"{store_server.url}/admin/keys", json={"name": "reader"}, headers=admin_headers()).json()
    as_other = {"Authorization": f"Bearer {other['key']}"}
    assert httpx.get(f"{store_server.v1}/requests/{request_id}", headers=as_other).status_code == 404
    assert httpx.get(f"{store_server.v1}/usage", headers=as_other).json()["data"] == []  # only its own rows

    env = {"QUASAR_DATABASE_URL": database_url(store_server)}
    out = cli("logs", "--customer", customer, "--json", env=env).stdout
    assert request_id in out and '"status":"ok"' in out
    assert request_id in cli("logs", "--since", "1h", "--status", "ok", "--json", env=env).stdout
    assert request_id not in cli("logs", "--since", "2100-01-01T00:00:00", env=env).stdout
    assert cli("logs", "--since", "banana", env=env, check=False).returncode != 0
    table = cli("usage", "--group-by", "customer", "--from", "1d", env=env).stdout
    assert customer in table


def test_no_secret_in_any_log_line_or_table(store_server: Running) -> None:
    request_id = new_id()
    credentials = {"openai": {"api_key": PLANTED_CUSTOMER_SECRET}}
    body = chat_body(1, customer_credentials=credentials, metadata={"note": f"key is {PLANTED_CUSTOMER_SECRET}"})
    assert post(store_server, body, request_id).status_code == 200
    row = rows_by_request(store_server, [request_id])[request_id]
    assert row["metadata"] == {"note": "key is [redacted]"}
    client = openai.OpenAI(base_url=store_server.v1, api_key=MASTER, max_retries=0)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="spark",
            messages=[{"role": "user", "content": "x"}],
            max_tokens=0,
            extra_body={"customer_credentials": credentials},
        )
    cli("logs", "--tail", "50", env={"QUASAR_DATABASE_URL": database_url(store_server)})
    for text in (store_server.log(), table_dump(database_url(store_server))):
        for secret in (PLANTED_PROVIDER_KEY, PLANTED_CUSTOMER_SECRET, MASTER):
            assert secret not in text


def test_a_sqlite_file_locked_for_a_while_delays_rows_but_loses_none(store_server: Running) -> None:
    """Another process writing the database (a backup, `quasar keys create`) makes the log wait, not drop."""
    path = database_url(store_server).removeprefix("sqlite:///")
    ids = [new_id() for _ in range(3)]
    lock = sqlite3.connect(path, isolation_level=None)
    try:
        lock.execute("BEGIN EXCLUSIVE")
        for request_id in ids:
            assert post(store_server, chat_body(), request_id).status_code == 200
        time.sleep(1.0)  # the writer (every 0.2 s) has tried by now and waits on the lock
        marks = ",".join("?" * len(ids))
        assert lock.execute(f"SELECT count(*) FROM request_log WHERE request_id IN ({marks})", ids).fetchone()[0] == 0
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert set(rows_by_request(store_server, ids)) == set(ids)
