"""Build the engine a deployment names."""

from __future__ import annotations

from quasar.config import Deployment
from quasar.engines.base import Engine
from quasar.errors import ConfigError


def build_engine(deployment: Deployment, mode: str = "chat") -> Engine:
    """The engine of one deployment of a model whose `mode` is chat or embedding."""
    if deployment.engine == "llamacpp":
        from quasar.engines.llamacpp import LlamaCppEngine

        return LlamaCppEngine(deployment, mode=mode)
    if deployment.engine == "openai":
        from quasar.engines.openai import OpenAIEngine

        return OpenAIEngine(deployment)
    if deployment.engine == "anthropic":
        from quasar.engines.anthropic import AnthropicEngine

        return AnthropicEngine(deployment)
    raise ConfigError(f"engine {deployment.engine!r} is not available in this build")
