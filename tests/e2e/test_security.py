"""docs/security.md's promises about keys and the web pages, through a real Quasar: keys are held only as
digests; the master key alone opens /admin, /metrics and the dashboard's view of every request, and an
API key sees only its own; the web pages carry the headers that keep a reply from running as code."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx2 as httpx
import pytest
import yaml

from quasar.auth.static import StaticKeys, hash_key
from quasar.errors import AuthenticationFailed
from tests.fake_provider import FakeProvider
from tests.gateway_config import upstream
from tests.server import Running, quasar_server
from tests.store_support import MASTER, tmp_sqlite_url

USER, OTHER = "sk-user-" + "u" * 24, "sk-other-" + "o" * 24
ASK = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
ADMIN_ONLY = [
    ("GET", "/admin/keys", None),
    ("POST", "/admin/keys", {"name": "made by the test"}),
    ("GET", "/admin/keys/none", None),
    ("GET", "/admin/deployments", None),
    ("POST", "/admin/reload", None),
    ("GET", "/metrics", None),
]


@pytest.fixture(scope="module")
def gw() -> Iterator[Running]:
    with FakeProvider("up") as fake:
        config = {"models": [{"name": "m", "deployments": [upstream(fake)]}], "auth": {"api_keys": [USER, OTHER]}}
        env = {"QUASAR_MASTER_KEY": MASTER, "QUASAR_DATABASE_URL": tmp_sqlite_url()}
        with quasar_server(yaml.safe_dump(config), env=env) as running:
            yield running


def _call(gw: Running, method: str, path: str, body: dict | None, key: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.request(method, f"{gw.url}{path}", json=body, headers=headers, timeout=30)


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ONLY)
def test_the_master_key_alone_opens_admin_and_metrics(gw: Running, method: str, path: str, body: dict | None) -> None:
    assert _call(gw, method, path, body, None).status_code == 401
    refused = _call(gw, method, path, body, USER)
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "admin_only"
    assert _call(gw, method, path, body, MASTER[:-1] + "x").status_code == 401  # one character off
    answered = _call(gw, method, path, body, MASTER)
    assert answered.status_code < 400 or path == "/admin/keys/none", answered.text


def test_the_dashboard_shows_every_request_to_the_master_key_only(gw: Running) -> None:
    for key in (USER, OTHER):
        r = httpx.post(f"{gw.v1}/chat/completions", json=ASK, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        assert r.status_code == 200, r.text

    def rows(key: str) -> set[str]:
        r = httpx.get(f"{gw.v1}/requests", headers={"Authorization": f"Bearer {key}"}, timeout=30)
        assert r.status_code == 200, r.text
        return {row["key_id"] for row in r.json()["data"]}

    deadline = time.monotonic() + 10
    while len(rows(MASTER)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)  # the log writer's batch
    assert len(rows(MASTER)) == 2
    assert len(rows(USER)) == 1 and rows(USER) != rows(OTHER)


@pytest.mark.parametrize("path", ["/", "/dashboard", "/web/playground.js", "/web/dashboard.js"])
def test_the_web_pages_carry_security_headers(gw: Running, path: str) -> None:
    r = httpx.get(f"{gw.url}{path}", timeout=30)
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert "access-control-allow-origin" not in r.headers


def test_static_keys_are_held_only_as_digests() -> None:
    """What the process holds is the SHA-256 of each key; a request's key is hashed and its digest looked up,
    so no comparison ever runs over the key itself."""
    keys = StaticKeys([USER], MASTER)
    held = repr(vars(keys))
    assert USER not in held and MASTER not in held
    assert hash_key(USER) in held and hash_key(MASTER) in held
    assert keys.authenticate(f"Bearer {USER}").key_id == f"static:{hash_key(USER)[:12]}"
    with pytest.raises(AuthenticationFailed):
        keys.authenticate(f"Bearer {USER[:-1]}x")
