"""Embedding models in the config: `mode`, `matryoshka`, and the default config's built-in one."""

from __future__ import annotations

import pytest

from quasar.config import BUILTIN_EMBEDDING_MODEL, Settings, default_settings, parse_settings
from quasar.errors import ConfigError

UPSTREAM = "    deployments:\n      - {engine: openai, base_url: 'http://127.0.0.1:9/v1'}\n"


def test_mode_defaults_to_chat_and_takes_embedding() -> None:
    settings = parse_settings(f"models:\n  - name: a\n{UPSTREAM}  - name: b\n    mode: embedding\n{UPSTREAM}")
    assert [m.mode for m in settings.models] == ["chat", "embedding"]


def test_matryoshka_needs_an_embedding_model() -> None:
    with pytest.raises(ConfigError, match="matryoshka applies to models with mode: embedding"):
        parse_settings(f"models:\n  - name: a\n    matryoshka: true\n{UPSTREAM}")


def test_an_unknown_mode_names_its_line() -> None:
    with pytest.raises(ConfigError, match=r"<config>:3: models.0.mode"):
        parse_settings(f"models:\n  - name: a\n    mode: rerank\n{UPSTREAM}")


def test_the_default_config_serves_the_builtin_embedding_model() -> None:
    models = Settings.model_validate(default_settings()).models
    embedding = next(m for m in models if m.mode == "embedding")
    assert embedding.name == "all-minilm-l6-v2" and embedding.deployments[0].path == BUILTIN_EMBEDDING_MODEL
