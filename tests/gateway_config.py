"""Quasar gateway configs pointing at fake providers, and a server on one."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import yaml

from tests.fake_provider import FakeProvider
from tests.local_config import local
from tests.server import Running, quasar_server
from tests.store_support import MASTER, tmp_sqlite_url


def upstream(fake: FakeProvider | str, **fields: Any) -> dict[str, Any]:
    """An `engine: openai` deployment for a fake provider (or a bare URL)."""
    url = fake if isinstance(fake, str) else fake.url
    name = fields.pop("provider", None) or (fake if isinstance(fake, str) else fake.name)
    return {"engine": "openai", "provider": name, "base_url": url, "api_key": f"sk-test-{name}", **fields}


def gateway_config(models: dict[str, list[dict[str, Any]]], **router: Any) -> str:
    config: dict[str, Any] = {"models": [{"name": name, "deployments": deps} for name, deps in models.items()]}
    config["router"] = {"strategy": "priority", "backoff_base": 0.01, "backoff_max": 0.05, **router}
    return yaml.safe_dump(config, sort_keys=False)


def with_local_fallback(name: str, up: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """`name` on the upstream alone, and `guarded`: the upstream first, then the built-in model."""
    fallback = local(name="guarded-local", parallel=2, context_length=2048)
    return {name: [up], "guarded": [{**up, "name": "guarded-up"}, fallback]}


@contextlib.contextmanager
def gateway_server(
    models: dict[str, list[dict[str, Any]]], *, logged: bool = False, env: dict[str, str] | None = None, **router: Any
) -> Iterator[Running]:
    """`quasar serve` on `gateway_config(models, **router)`; `logged`: with the master key and its own log database."""
    full_env = {"QUASAR_MASTER_KEY": MASTER, "QUASAR_DATABASE_URL": tmp_sqlite_url()} if logged else {}
    with quasar_server(gateway_config(models, **router), env={**full_env, **(env or {})}) as running:
        yield running
