"""Gateway-only Quasar configs (no local model) pointing at fake providers."""

from __future__ import annotations

from typing import Any

import yaml

from tests.fake_provider import FakeProvider


def upstream(fake: FakeProvider | str, **fields: Any) -> dict[str, Any]:
    """An `engine: openai` deployment for a fake provider (or a bare URL)."""
    url = fake if isinstance(fake, str) else fake.url
    name = fields.pop("provider", None) or (fake if isinstance(fake, str) else fake.name)
    return {"engine": "openai", "provider": name, "base_url": url, "api_key": f"sk-test-{name}", **fields}


def gateway_config(models: dict[str, list[dict[str, Any]]], **router: Any) -> str:
    config: dict[str, Any] = {"models": [{"name": name, "deployments": deps} for name, deps in models.items()]}
    config["router"] = {"strategy": "priority", "backoff_base": 0.01, "backoff_max": 0.05, **router}
    return yaml.safe_dump(config, sort_keys=False)
