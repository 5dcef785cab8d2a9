"""No secret in any output: keys planted everywhere a client or an operator can put one (provider keys,
the master key, static and managed keys, customer credentials and per-model keys in requests, an
upstream that quotes the key it was sent), then every output searched: answers and their headers,
stream events, error bodies, the server's own log, every table of the store, the OpenAPI document."""

from __future__ import annotations

import uuid

import httpx2 as httpx
import yaml

from tests.fake_provider import FakeProvider
from tests.gateway_config import upstream
from tests.server import quasar_server
from tests.store_support import table_dump, tmp_sqlite_url, wait_for

PROVIDER = "sk-provider-" + uuid.uuid4().hex
MASTER = "mk-master-" + uuid.uuid4().hex
STATIC = "sk-static-" + uuid.uuid4().hex
CUSTOMER = "sk-customer-" + uuid.uuid4().hex
PER_MODEL = "sk-per-model-" + uuid.uuid4().hex
SECRETS = (PROVIDER, MASTER, STATIC, CUSTOMER, PER_MODEL)


def test_no_secret_reaches_any_output() -> None:
    outputs: list[str] = []
    with FakeProvider("up") as fake:
        config = {
            "models": [
                {"name": "m", "deployments": [upstream(fake, provider="up", api_key="${PLANTED}")]},
            ],
            "router": {"strategy": "priority", "retries": 0},
            "auth": {"api_keys": [STATIC]},
        }
        url = tmp_sqlite_url()
        env = {"PLANTED": PROVIDER, "QUASAR_MASTER_KEY": MASTER, "QUASAR_DATABASE_URL": url}
        with quasar_server(yaml.safe_dump(config), env=env) as srv:
            managed = httpx.post(
                f"{srv.url}/admin/keys", json={"name": "k"}, headers={"Authorization": f"Bearer {MASTER}"}
            )
            assert managed.status_code == 201
            managed_key = managed.json()["key"]
            outputs.append(managed.text.replace(managed_key, ""))  # shown once, to the admin who made it
            ids = []

            def ask(key: str, **body: object) -> httpx.Response:
                request_id = f"sec-{uuid.uuid4().hex}"
                ids.append(request_id)
                full = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **body}
                headers = {"Authorization": f"Bearer {key}", "x-request-id": request_id}
                r = httpx.post(f"{srv.v1}/chat/completions", json=full, headers=headers, timeout=30)
                outputs.append(str(r.headers) + r.text)
                return r

            creds = {"customer_credentials": {"up": {"api_key": CUSTOMER}}, "request_breakdown": True}
            assert ask(STATIC, **creds).status_code == 200
            assert ask(managed_key, customer_api_keys={"m": PER_MODEL}, request_breakdown=True).status_code == 200
            fake.script("echo-key", "echo-key", "echo-key")  # the upstream quotes the Authorization it got
            assert ask(STATIC).status_code >= 400
            assert ask(STATIC, **creds).status_code >= 400
            assert ask(STATIC, stream=True, customer_api_keys={"m": PER_MODEL}).status_code >= 400
            assert ask(STATIC, stream=True, **creds).status_code == 200
            assert ask("sk-wrong-" + MASTER[3:]).status_code == 401
            for request_id in ids:
                row = wait_for(
                    lambda i=request_id: (
                        (
                            g := httpx.get(f"{srv.v1}/requests/{i}", headers={"Authorization": f"Bearer {MASTER}"})
                        ).status_code
                        == 200
                        and g
                    ),
                    timeout=10,
                )
                outputs.append(row.text)
            outputs.append(httpx.get(f"{srv.url}/openapi.json").text)
            outputs.append(httpx.get(f"{srv.v1}/models", headers={"Authorization": f"Bearer {STATIC}"}).text)
            outputs.append(httpx.get(f"{srv.v1}/usage", headers={"Authorization": f"Bearer {MASTER}"}).text)
        outputs.append(srv.log())
        outputs.append(table_dump(url))
    assert any(PROVIDER in r["headers"].get("Authorization", "") for r in fake.requests)  # it was really used
    assert any(CUSTOMER in r["headers"].get("Authorization", "") for r in fake.requests)
    for text in outputs:
        for secret in SECRETS:
            assert secret not in text, (secret[:12], text[:300])
        assert MASTER[3:] not in text  # not even the made-up key's body


def test_cors_is_off_unless_configured(server) -> None:
    preflight = httpx.options(
        f"{server.v1}/chat/completions",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    simple = httpx.get(f"{server.v1}/models", headers={"Origin": "https://evil.example"})
    assert simple.status_code == 200 and "access-control-allow-origin" not in simple.headers
