"""Gateway config: deployments, presets and router settings are checked when the file is loaded."""

from __future__ import annotations

import pytest

from quasar.catalog import build_models
from quasar.config import parse_settings
from quasar.engines.openai import OpenAIEngine
from quasar.errors import ConfigError


def test_a_preset_deployment_needs_only_provider_model_and_key() -> None:
    settings = parse_settings(
        "models:\n  - name: radiance\n    deployments:\n"
        "      - {engine: openai, provider: avangenio, model: radiance, api_key: k}\n"
    )
    engine = build_models(settings)["radiance"].deployments[0][1]
    assert isinstance(engine, OpenAIEngine)
    assert engine.url == "https://apigateway.avangenio.net/chat/completions"
    assert engine.capabilities == {"tools", "vision", "json_schema"}
    assert engine.ready and engine.in_flight == 0


def test_vllm_without_base_url_is_a_config_error() -> None:
    settings = parse_settings("models:\n  - name: m\n    deployments:\n      - {engine: openai, provider: vllm}\n")
    with pytest.raises(ConfigError, match="needs a base_url"):
        build_models(settings)


def test_fallbacks_must_name_known_models() -> None:
    text = (
        "models:\n  - name: m\n    deployments:\n      - {engine: openai, base_url: 'http://127.0.0.1:9/v1'}\n"
        "router:\n  fallbacks: {m: [nope]}\n"
    )
    with pytest.raises(ConfigError, match="unknown models: nope"):
        parse_settings(text, "q.yaml")


def test_timeouts_must_be_positive() -> None:
    text = "models:\n  - name: m\n    deployments:\n      - {engine: openai, base_url: 'http://x', chunk_timeout: 0}\n"
    with pytest.raises(ConfigError, match=r"q.yaml:4: models.0.deployments.0.chunk_timeout"):
        parse_settings(text, "q.yaml")


def test_deployment_names_are_unique() -> None:
    text = (
        "models:\n  - name: m\n    deployments:\n"
        "      - {engine: openai, base_url: 'http://127.0.0.1:9/v1', name: m#1}\n"
        "      - {engine: openai, base_url: 'http://127.0.0.1:9/v1'}\n"
    )
    with pytest.raises(ConfigError, match="deployment names appear twice: m#1"):
        parse_settings(text, "q.yaml")
