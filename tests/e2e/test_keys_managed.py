"""Managed keys end to end: the CLI and the admin API create, list, update and revoke them."""

from __future__ import annotations

import time

import httpx2 as httpx
import openai
import pytest

from tests.server import Running
from tests.store_support import admin_headers, chat_body, cli, database_url, table_dump, wait_for


def chat(running: Running, key: str | None, **body: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{running.v1}/chat/completions", json={**chat_body(1), **body}, headers=headers, timeout=60)


def authorized(running: Running, key: str) -> int:
    """The status of a request that needs only the key (no generation, so it is quick under load)."""
    return httpx.get(f"{running.v1}/models", headers={"Authorization": f"Bearer {key}"}).status_code


def create(running: Running, **fields: object) -> dict:
    reply = httpx.post(f"{running.url}/admin/keys", json=fields, headers=admin_headers())
    assert reply.status_code == 201, reply.text
    return reply.json()


def test_cli_key_is_printed_once_and_only_its_hash_is_stored(store_server: Running) -> None:
    env = {"QUASAR_DATABASE_URL": database_url(store_server)}
    done = cli("keys", "create", "--name", "cli-key", "--models", "spark", "--rpm", "100", "--budget", "5", env=env)
    key = done.stdout.strip()
    assert key.startswith("qsr-") and "shown only now" in done.stderr
    client = openai.OpenAI(base_url=store_server.v1, api_key=key, max_retries=0, timeout=60)
    reply = client.chat.completions.create(model="spark", messages=[{"role": "user", "content": "hi"}], max_tokens=1)
    assert reply.choices[0].message.role == "assistant"
    listed = cli("keys", "list", env=env).stdout
    assert "cli-key" in listed and key not in listed
    assert key not in table_dump(database_url(store_server))

    key_id = next(k["id"] for k in httpx.get(f"{store_server.url}/admin/keys", headers=admin_headers()).json()["data"]
                  if k["name"] == "cli-key")  # fmt: skip
    cli("keys", "update", key_id, "--models", "other", env=env)
    wait_for(lambda: chat(store_server, key).status_code == 403, timeout=5)
    cli("keys", "revoke", key_id, env=env)
    revoked_at = time.monotonic()
    wait_for(lambda: authorized(store_server, key) == 401, timeout=5, every=0.05)
    assert time.monotonic() - revoked_at < 1.5  # one second of cache, and the time to ask on a busy machine
    assert chat(store_server, key).json()["error"]["code"] == "api_key_revoked"
    assert cli("keys", "revoke", "key_nope", env=env, check=False).returncode != 0


def test_unknown_missing_expired_and_wrong_model_keys(store_server: Running) -> None:
    assert chat(store_server, None).status_code == 401
    unknown = chat(store_server, "qsr-not-a-real-key")
    assert unknown.status_code == 401 and unknown.json()["error"]["type"] == "authentication_error"
    assert chat(store_server, "sk-something-else").status_code == 401
    expired = create(store_server, name="old", expires="2001-01-01T00:00:00+00:00")
    assert chat(store_server, expired["key"]).json()["error"]["code"] == "api_key_expired"
    soon = create(store_server, name="soon", expires="2s")
    assert chat(store_server, soon["key"]).status_code == 200
    wait_for(lambda: chat(store_server, soon["key"]).status_code == 401, timeout=6)
    narrow = create(store_server, name="narrow", models=["other-model"])
    denied = chat(store_server, narrow["key"])
    assert denied.status_code == 403 and denied.json()["error"]["param"] == "model"


def test_admin_api(store_server: Running) -> None:
    made = create(store_server, name="api-key", models=["spark"], rpm=50, tpm=100000, budget=2.5, budget_period="day")
    key, key_id = made["key"], made["id"]
    assert made["prefix"] == key[:8] and "key_hash" not in made and made["budget_period"] == "day"
    assert chat(store_server, key).status_code == 200

    listed = httpx.get(f"{store_server.url}/admin/keys", headers=admin_headers()).json()["data"]
    assert key_id in {k["id"] for k in listed}
    assert all("key" not in k and "key_hash" not in k for k in listed)
    one = httpx.get(f"{store_server.url}/admin/keys/{key_id}", headers=admin_headers()).json()
    assert one["rpm"] == 50 and one["models"] == ["spark"]

    # only the master key may use the admin API
    assert httpx.get(f"{store_server.url}/admin/keys").status_code == 401
    forbidden = httpx.get(f"{store_server.url}/admin/keys", headers={"Authorization": f"Bearer {key}"})
    assert forbidden.status_code == 403

    changed = httpx.patch(f"{store_server.url}/admin/keys/{key_id}", json={"rpm": 1}, headers=admin_headers())
    assert changed.status_code == 200 and changed.json()["rpm"] == 1
    wait_for(lambda: chat(store_server, key).status_code == 429, timeout=5)
    cleared = httpx.patch(
        f"{store_server.url}/admin/keys/{key_id}", json={"models": None, "name": None}, headers=admin_headers()
    )
    assert cleared.status_code == 200 and cleared.json()["models"] == [] and cleared.json()["name"] == "api-key"

    for body, param in (({"rpm": 0}, "rpm"), ({"colour": "red"}, "colour"), ({"expires": "whenever"}, "expires")):
        bad = httpx.post(f"{store_server.url}/admin/keys", json=body, headers=admin_headers())
        assert bad.status_code == 400 and bad.json()["error"]["param"] == param, bad.text
    bad = httpx.post(f"{store_server.url}/admin/keys", content=b"{", headers=admin_headers())
    assert bad.status_code == 400
    missing = httpx.delete(f"{store_server.url}/admin/keys/key_nope", headers=admin_headers())
    assert missing.status_code == 404

    revoked = httpx.delete(f"{store_server.url}/admin/keys/{key_id}", headers=admin_headers())
    assert revoked.status_code == 200 and revoked.json()["revoked"] is not None
    assert chat(store_server, key).status_code == 401  # this replica drops its cache at once


@pytest.mark.parametrize("expires", ["30d", "2100-01-01T00:00:00"])
def test_cli_expiry_forms(store_server: Running, expires: str) -> None:
    env = {"QUASAR_DATABASE_URL": database_url(store_server)}
    key = cli("keys", "create", "--name", "exp", "--expires", expires, env=env).stdout.strip()
    assert chat(store_server, key).status_code == 200
