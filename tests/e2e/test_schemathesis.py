"""Every operation in /openapi.json under schemathesis's generated requests, bounded and on loopback: no
5xx, no 422, every error in its endpoint's envelope, every documented operation reachable."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings

from tests.fake_provider import FakeProvider
from tests.gateway_config import upstream
from tests.server import quasar_server
from tests.store_support import MASTER, tmp_sqlite_url

EXAMPLES = 12  # per operation: CI time is bounded


@pytest.fixture(scope="module")
def api() -> Iterator[str]:
    with FakeProvider("up") as fake:
        config = {"models": [{"name": "m", "deployments": [upstream(fake)]}], "router": {"retries": 0}}
        env = {"QUASAR_MASTER_KEY": MASTER, "QUASAR_DATABASE_URL": tmp_sqlite_url()}
        with quasar_server(yaml.safe_dump(config), env=env) as running:
            yield running.url


def _envelope(response, case) -> None:
    """An error answers in its endpoint's envelope: Anthropic's on /v1/messages, OpenAI's elsewhere."""
    if response.status_code < 400:
        return
    body = response.json()
    if case.path.startswith("/v1/messages"):
        assert body.get("type") == "error" and {"type", "message"} <= set(body["error"]), body
        return
    error = body.get("error")
    assert isinstance(error, dict) and {"message", "type", "param", "code"} <= set(error), body
    assert error["code"] is None or isinstance(error["code"], str), body


def test_every_operation(api: str) -> None:
    schema = schemathesis.openapi.from_url(f"{api}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case) -> None:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {MASTER}"}
            response = case.call(timeout=30)
            where = (case.method, case.formatted_path, response.status_code, response.text[:300])
            assert response.status_code < 500, where
            assert response.status_code != 422, where
            _envelope(response, case)

        check()
