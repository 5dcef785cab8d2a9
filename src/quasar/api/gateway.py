"""Seed 003's gateway fields: on `POST /api/generate/`, and through `extra_body` on the chat endpoints.

They arrive as extra fields of a ChatRequest; `gateway_options` validates them (a pydantic error whose
location names the field) and they are never forwarded to an upstream. Keys given here are SecretStr so
that no repr, log line or dump shows them.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, model_validator

from quasar.api.chat import ChatRequest

Name = Annotated[str, Field(min_length=1)]


class ProviderCredentials(BaseModel):
    """One provider's credentials for one request. Other deployment variables are accepted and ignored.

    `api_base` is LiteLLM's name for `base_url`: it fills `base_url`, so that the router's SSRF guard
    (gateway/credentials.py) checks it like any base_url."""

    model_config = ConfigDict(extra="allow")

    api_key: SecretStr | None = None
    base_url: str | None = None
    api_base: str | None = None
    # the address the SSRF guard checked base_url's host at: the only one the request connects to
    _address: str | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _api_base_is_base_url(self) -> ProviderCredentials:
        if self.api_base is not None:
            if self.base_url is not None and self.base_url != self.api_base:
                raise ValueError("api_base and base_url differ; give one of them")
            self.base_url = self.api_base
        return self


class GatewayOptions(BaseModel):
    # frozen: the options of every request that sends no gateway field are one shared instance
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    # default_factory, not `= []`: pydantic deep-copies mutable defaults on every request.
    models: list[Name] = Field(default_factory=list)
    fallback_models: list[Name] = Field(default_factory=list)
    exclude_models: list[Name] = Field(default_factory=list)
    exclude_providers: list[Name] = Field(default_factory=list)
    disable_fallback: bool = False
    customer_credentials: dict[str, ProviderCredentials] = Field(default_factory=dict)
    customer_api_keys: dict[str, SecretStr] = Field(default_factory=dict, strict=False)  # deprecated: model -> key
    customer_identifier: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    metadata: dict[str, Any] | None = None
    disable_log: bool = False
    request_breakdown: bool = False
    # The store's response cache (not seed 003): declared here so that they are never forwarded upstream.
    cache_enabled: bool | None = None
    cache_ttl: Annotated[int, Field(ge=1, le=2**31 - 1)] | None = None  # seconds; Redis takes no more


GATEWAY_FIELDS = frozenset(GatewayOptions.model_fields)
SECRET_FIELDS = frozenset({"customer_credentials", "customer_api_keys"})


NO_OPTIONS = GatewayOptions()


def gateway_options(request: BaseModel) -> GatewayOptions:
    """The request's gateway fields (extra fields of a chat or embeddings body), validated; raises
    pydantic.ValidationError naming the field. Most requests send none: they share NO_OPTIONS (validating
    an empty dict cost ~4 us, a tenth of parsing a plain chat body)."""
    extra = request.model_extra
    given = {k: v for k, v in extra.items() if k in GATEWAY_FIELDS} if extra else None
    return GatewayOptions.model_validate(given) if given else NO_OPTIONS


class GenerateRequest(ChatRequest):
    """`POST /api/generate/`: `model` may be left out when `models` names the candidates."""

    model: str | None = Field(None, min_length=1)  # type: ignore[assignment]

    @model_validator(mode="after")
    def _model_or_models(self) -> GenerateRequest:
        if self.model is None:
            models = (self.model_extra or {}).get("models")
            if not models or not isinstance(models, list):
                raise ValueError("give 'model' or a non-empty 'models' list")
            self.model = str(models[0])
        return self
