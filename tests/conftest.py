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
