"""The models a config serves: each name with its deployments and their engines, as /v1/models shows them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from quasar.config import Deployment, Settings
from quasar.engines.base import Engine
from quasar.engines.factory import build_engine


@dataclass
class ModelEntry:
    name: str
    deployments: list[tuple[Deployment, Engine]]
    created: int
    mode: str = "chat"  # or "embedding"
    matryoshka: bool = False  # an embedding model whose vectors may be truncated to `dimensions`

    @property
    def context_length(self) -> int:
        return max(d.context_length for d, _ in self.deployments)

    @property
    def owned_by(self) -> str:
        return self.deployments[0][1].owned_by

    @property
    def ready(self) -> bool:
        return any(engine.ready for _, engine in self.deployments)

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.name,
            "object": "model",
            "created": self.created,
            "owned_by": self.owned_by,
            "context_length": self.context_length,
            "ready": self.ready,
        }


def build_models(settings: Settings) -> dict[str, ModelEntry]:
    now = int(time.time())
    return {
        m.name: ModelEntry(m.name, [(d, build_engine(d, m.mode)) for d in m.deployments], now, m.mode, m.matryoshka)
        for m in settings.models
    }
