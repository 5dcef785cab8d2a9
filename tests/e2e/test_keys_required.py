"""A managed key in the store closes the server: with no static or master key, every request then needs a key."""

from __future__ import annotations

import httpx2 as httpx
import orjson

from tests.server import Running, quasar_server
from tests.store_support import chat_body, cli, priced_config, tmp_sqlite_url, wait_for


def status(running: Running, key: str | None, path: str = "/models") -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if path == "/models":
        return httpx.get(f"{running.v1}/models", headers=headers, timeout=60)
    return httpx.post(f"{running.v1}/chat/completions", json=chat_body(1), headers=headers, timeout=60)


def assert_refused(running: Running, key: str | None, code: str) -> None:
    for path in ("/models", "/chat/completions"):
        reply = status(running, key, path)
        assert reply.status_code == 401, (path, reply.text)
        error = reply.json()["error"]
        assert error["type"] == "authentication_error" and error["code"] == code, (path, error)
        assert set(error) == {"message", "type", "param", "code"}


def test_a_managed_key_means_a_key_is_required() -> None:
    env = {"QUASAR_DATABASE_URL": tmp_sqlite_url()}
    with quasar_server(priced_config(), env=env) as running:
        assert status(running, None).status_code == 200  # no key anywhere: open, as configured
        assert "the server is open" in running.log()

        made = cli("keys", "create", "--name", "first", "--json", env=env)
        key, key_id = orjson.loads(made.stdout)["key"], orjson.loads(made.stdout)["id"]
        assert "requires an API key" in made.stderr
        wait_for(lambda: status(running, None).status_code == 401, timeout=5, every=0.1)
        assert_refused(running, None, "missing_api_key")
        assert_refused(running, "made-up", "invalid_api_key")
        assert_refused(running, "qsr-made-up", "invalid_api_key")
        assert status(running, key).status_code == 200
        assert status(running, key, "/chat/completions").status_code == 200

        cli("keys", "revoke", key_id, env=env)
        wait_for(lambda: status(running, key).status_code == 401, timeout=5, every=0.1)
        assert status(running, key).json()["error"]["code"] == "api_key_revoked"
        assert_refused(running, None, "missing_api_key")  # the last key revoked: still closed

    # a fresh process on a store holding only a revoked key: closed from the first request, and says so
    with quasar_server(priced_config(), env=env) as again:
        assert "the server is open" not in again.log() and "API keys required" in again.log()
        assert_refused(again, None, "missing_api_key")
        assert_refused(again, key, "api_key_revoked")
