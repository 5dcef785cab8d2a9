from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.server import Running, quasar_server

pytest_plugins = ["tests.store_support"]


@pytest.fixture(scope="session")
def server() -> Iterator[Running]:
    """One Quasar with the default config: the built-in model served as `spark`, no keys."""
    with quasar_server() as running:
        yield running


@pytest.fixture(scope="session")
def client(server: Running) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.v1, api_key="unused", max_retries=0, timeout=60)


@pytest.fixture(scope="session")
def aclient(server: Running) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.v1, api_key="unused", max_retries=0, timeout=60)


# Modules that need this machine's PostgreSQL or Redis (and nginx): `pytest -m "not services"` runs the rest.
SERVICES = {
    "test_health_shared", "test_limits_redis_down", "test_ops_logs", "test_replicas_nginx", "test_store_cluster",
    "test_store_migrations", "test_store_outage", "test_limits_atomic", "test_store_retention", "test_store_writer",
}  # fmt: skip


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "services: needs PostgreSQL and Redis on loopback (and nginx)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.module is not None and item.module.__name__.rsplit(".", 1)[-1] in SERVICES:
            item.add_marker(pytest.mark.services)
