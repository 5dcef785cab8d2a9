"""Static keys (config and environment) and the master key, checked against hashes, never plaintext."""

from __future__ import annotations

import hashlib
from typing import NoReturn

from quasar.auth.principal import ANONYMOUS, Principal
from quasar.errors import AuthenticationFailed


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


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
        principal = self._principals.get(hash_key(token)) if token is not None else None
        if principal is None:
            self.refuse(token)
        return principal

    @staticmethod
    def refuse(token: str | None) -> NoReturn:
        """The 401 for a request whose key (`token`, None when it sent none) matches no key."""
        if token is None:
            raise AuthenticationFailed(
                "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'.",
                code="missing_api_key",
            )
        raise AuthenticationFailed("Incorrect API key provided.")
