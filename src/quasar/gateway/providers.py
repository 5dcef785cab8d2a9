"""Provider presets: where a provider lives and how it wants its key (`anthropic`: for `engine: anthropic`).

A deployment may name only `provider`, `model` and `api_key`; the preset fills in the rest. An explicit
`base_url` always wins over the preset's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from quasar.errors import ConfigError

AuthStyle = Literal["bearer", "api-key", "x-api-key"]


@dataclass(frozen=True)
class Preset:
    base_url: str | None  # None: the deployment must give one
    auth: AuthStyle = "bearer"


PRESETS: dict[str, Preset] = {
    "openai": Preset("https://api.openai.com/v1"),
    "anthropic": Preset("https://api.anthropic.com/v1", "x-api-key"),
    "avangenio": Preset("https://apigateway.avangenio.net"),
    "alphaedge": Preset("https://api.alphaedge-ai.com/v1"),
    "respan": Preset("https://api.respan.ai/api"),
    "vllm": Preset(None),
    "azure": Preset(None, "api-key"),
}


def resolve_base_url(provider: str | None, base_url: str | None) -> str:
    """The base URL a deployment talks to, without a trailing slash; ConfigError when there is none."""
    if base_url:
        return base_url.rstrip("/")
    preset = PRESETS.get(provider or "")
    if preset is None:
        known = ", ".join(sorted(PRESETS))
        raise ConfigError(f"unknown provider {provider!r} and no base_url; presets: {known}")
    if preset.base_url is None:
        raise ConfigError(f"provider {provider!r} needs a base_url (where your server listens)")
    return preset.base_url


def auth_headers(provider: str | None, api_key: str | None) -> dict[str, str]:
    if not api_key:
        return {}
    preset = PRESETS.get(provider or "")
    if preset is not None and preset.auth != "bearer":
        return {preset.auth: api_key}
    return {"Authorization": f"Bearer {api_key}"}
