"""Quasar configs for the built-in model (SmolLM2-135M on llama.cpp), small enough for quick tests."""

from __future__ import annotations

from typing import Any

import yaml

NO_EOS = {"0": -100, "2": -100}  # SmolLM2's <|endoftext|> and <|im_end|> banned: a request runs to its max_tokens


def local(**fields: Any) -> dict[str, Any]:
    """An `engine: llamacpp` deployment of the built-in model, with `fields` (parallel, context_length, ...)."""
    return {"engine": "llamacpp", "path": "builtin:smollm2-135m-instruct", **fields}


def local_config(**models: dict[str, Any]) -> str:
    """A config of models named by the keywords, each one built-in deployment with those fields."""
    return yaml.safe_dump(
        {"models": [{"name": name, "deployments": [local(**fields)]} for name, fields in models.items()]}
    )
