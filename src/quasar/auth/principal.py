"""Who is calling one request: the key, the models it may use, its limits, whether it is the admin."""

from __future__ import annotations

from dataclasses import dataclass, field

from quasar.config import Quota


@dataclass(frozen=True)
class Principal:
    """The caller of one request. `key_id` is None when the server is open."""

    key_id: str | None = None
    name: str = "anonymous"
    models: frozenset[str] = field(default_factory=frozenset)  # empty: every model
    is_admin: bool = False
    quota: Quota | None = None  # rate limits and budget of a managed key

    def may_use(self, model: str) -> bool:
        return not self.models or model in self.models


ANONYMOUS = Principal()
