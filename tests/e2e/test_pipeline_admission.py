"""Admission follows the router's plan: whatever names the models (`model`, `models`, fallbacks), every
answered request counts against every limit of its key, at the worst price of any candidate."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2 as httpx
import pytest
import yaml

from tests.fake_provider import FakeProvider
from tests.gateway_config import upstream
from tests.server import Running, quasar_server
from tests.store_support import MASTER, admin_headers, tmp_sqlite_url

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def gateway() -> Iterator[Running]:
    with FakeProvider("p") as fake:
        config = {
            "models": [
                {"name": "a", "deployments": [upstream(fake)]},
                {"name": "b", "deployments": [upstream(fake)]},
                {"name": "c", "deployments": [upstream(fake)]},
                {"name": "cheap", "deployments": [upstream(fake, price={"input": 0, "output": 0})]},
                {"name": "pricey", "deployments": [upstream(fake, price={"input": 1000, "output": 1000})]},
            ],
            "router": {"strategy": "priority", "fallbacks": {"cheap": ["pricey"]}},
        }
        env = {"QUASAR_DATABASE_URL": tmp_sqlite_url(), "QUASAR_MASTER_KEY": MASTER}
        with quasar_server(yaml.safe_dump(config), env=env) as running:
            yield running


def key(running: Running, **fields: object) -> str:
    made = httpx.post(f"{running.url}/admin/keys", json={"name": "pipeline", **fields}, headers=admin_headers())
    assert made.status_code == 201, made.text
    return made.json()["key"]


def post(running: Running, key: str, path: str, **body: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.post(f"{running.url}{path}", json={"messages": HI, **body}, headers=headers, timeout=30)


@pytest.mark.parametrize("path", ["/api/generate/", "/v1/chat/completions"])
def test_models_naming_allowed_models_counts_against_the_key(gateway: Running, path: str) -> None:
    limited = key(gateway, models=["a", "b"], rpm=1)
    first = post(gateway, limited, path, model="c", models=["a", "b"])
    assert first.status_code == 200, first.text
    assert first.headers["x-ratelimit-remaining-requests"] == "0"
    second = post(gateway, limited, path, model="c", models=["a", "b"])
    assert second.status_code == 429 and second.json()["error"]["code"] == "rate_limit_exceeded"


def test_a_model_the_key_may_not_use_is_refused_before_anything_is_reserved(gateway: Running) -> None:
    limited = key(gateway, models=["a"], rpm=1)
    refused = post(gateway, limited, "/v1/chat/completions", model="c")
    assert refused.status_code == 403 and refused.json()["error"]["param"] == "model"
    assert post(gateway, limited, "/v1/chat/completions", model="a").status_code == 200


def test_the_budget_reserves_the_most_expensive_fallback(gateway: Running) -> None:
    # cheap costs nothing, but router.fallbacks may send the request to pricey: 100 output tokens
    # there cost $0.10 and more, past this key's $0.05.
    budgeted = key(gateway, budget=0.05)
    refused = post(gateway, budgeted, "/v1/chat/completions", model="cheap", max_tokens=100)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "insufficient_quota"
    kept = post(gateway, budgeted, "/v1/chat/completions", model="cheap", max_tokens=100, disable_fallback=True)
    assert kept.status_code == 200, kept.text
