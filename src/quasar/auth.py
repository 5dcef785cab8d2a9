"""Who is calling: bearer keys checked against hashes, never against stored plaintext."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from quasar.config import Quota
from quasar.errors import AuthenticationFailed


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


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


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class StaticKeys:
    """Keys from QUASAR_API_KEYS / auth.api_keys and the master key, held only as SHA-256 hashes."""

    def __init__(self, api_keys: list[str], master_key: str | None = None) -> None:
        self._principals: dict[str, Principal] = {}
        for key in api_keys:
            digest = hash_key(key)
            self._principals[digest] = Principal(key_id=f"static:{digest[:12]}", name="static key")
        if master_key:
            digest = hash_key(master_key)
            self._principals[digest] = Principal(key_id=f"master:{digest[:12]}", name="master", is_admin=True)
        self.required = bool(self._principals)

    def authenticate(self, authorization: str | None) -> Principal:
        if not self.required:
            return ANONYMOUS
        token = bearer_token(authorization)
        if token is None:
            raise AuthenticationFailed(
                "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'.",
                code="missing_api_key",
            )
        principal = self._principals.get(hash_key(token))
        if principal is None:
            raise AuthenticationFailed("Incorrect API key provided.")
        return principal
