"""Typed settings: the YAML config file, ${ENV} interpolation, and the QUASAR_* environment."""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from quasar.errors import ConfigError

BUILTIN_MODEL = "builtin:smollm2-135m-instruct"
BUILTIN_EMBEDDING_MODEL = "builtin:all-minilm-l6-v2"  # converted to GGUF by `make install` (engines/minilm.py)
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Price(_Strict):
    """USD per million tokens."""

    input: float = Field(0.0, ge=0)
    output: float = Field(0.0, ge=0)
    cached_input: float | None = Field(None, ge=0)


class Deployment(_Strict):
    engine: Literal["llamacpp", "openai", "anthropic"]  # anthropic: an upstream speaking Anthropic's Messages API
    # llamacpp
    path: str | None = None
    parallel: int = Field(4, ge=1, le=64)
    threads: int | None = Field(None, ge=1)
    max_queue: int = Field(64, ge=0)
    nice: int = Field(5, ge=0, le=19)  # llama.cpp's threads run this much lower than Quasar's (Linux)
    max_output_tokens: int = Field(1024, ge=1)  # the output limit of a request that sets no max_tokens
    queue_timeout: float = Field(30.0, gt=0)  # seconds a request may wait for room in the KV cache, then 503
    # openai-compatible upstream
    provider: str | None = None
    base_url: str | None = None
    model: str | None = None
    api_key: str | None = None
    # the client APIs this upstream speaks itself beside chat, whose requests it gets as they are
    apis: list[Literal["responses"]] = []
    connect_timeout: float = Field(5.0, gt=0)  # seconds to open a connection
    first_byte_timeout: float = Field(60.0, gt=0)  # seconds to the response headers / first stream chunk
    chunk_timeout: float = Field(30.0, gt=0)  # seconds allowed between two stream chunks
    timeout: float = Field(600.0, gt=0)  # seconds for a whole non-streaming response
    max_connections: int = Field(256, ge=1)  # pooled keep-alive connections to this upstream
    # where the upstream's Prometheus metrics say how busy it is (least-busy strategy); for the `vllm`
    # preset, its server's /metrics unless set; `false` turns it off
    metrics_url: str | Literal[False] | None = None
    metrics_interval: float = Field(2.0, gt=0, le=3600)  # seconds between two readings
    # both
    name: str | None = None  # how headers, traces and logs name this deployment
    context_length: int = Field(8192, ge=64)
    weight: float = Field(1.0, gt=0)
    price: Price = Price()
    # None: the engine's own (an upstream: all three; llama.cpp: json_schema)
    capabilities: list[Literal["tools", "vision", "json_schema"]] | None = None

    @model_validator(mode="after")
    def _engine_fields(self) -> Deployment:
        if self.engine == "llamacpp" and not self.path:
            raise ValueError(
                "a llamacpp deployment needs 'path' (a .gguf file, builtin:smollm2-135m-instruct or "
                "builtin:all-minilm-l6-v2)"
            )
        if self.engine != "llamacpp" and not (self.base_url or self.provider):
            raise ValueError(f"an {self.engine} deployment needs 'base_url' or a 'provider' preset")
        if self.apis and self.engine != "openai":
            raise ValueError("'apis' is for openai deployments (an anthropic one speaks Messages already)")
        return self


def deployment_name(model: str, index: int, deployment: Deployment) -> str:
    """How headers, traces and logs name a deployment: its `name`, else `<model>#<index>`."""
    return deployment.name or f"{model}#{index}"


class ModelConfig(_Strict):
    name: str = Field(min_length=1)
    # chat: /v1/chat/completions and the other generating endpoints; embedding: /v1/embeddings only
    mode: Literal["chat", "embedding"] = "chat"
    # an embedding model trained so that a prefix of its vector is an embedding too (Matryoshka): then a
    # request's `dimensions` truncates and renormalises it; otherwise `dimensions` is refused
    matryoshka: bool = False
    deployments: list[Deployment] = Field(min_length=1)

    @model_validator(mode="after")
    def _matryoshka_embeds(self) -> ModelConfig:
        if self.matryoshka and self.mode != "embedding":
            raise ValueError("matryoshka applies to models with mode: embedding")
        return self


class RouterConfig(_Strict):
    strategy: Literal["weighted", "least-busy", "latency", "cost", "priority"] = "weighted"
    retries: int = Field(2, ge=0, le=10)
    cooldown_seconds: float = Field(5.0, ge=0)
    fallbacks: dict[str, list[str]] = {}
    allowed_hosts: list[str] = []
    allowed_fails: int = Field(3, ge=1)  # consecutive failures that put a deployment in cooldown
    backoff_base: float = Field(0.2, ge=0)  # seconds; doubled each retry round, with jitter
    backoff_max: float = Field(5.0, ge=0)
    retry_after_max: float = Field(30.0, ge=0)  # a longer upstream Retry-After ends the retries


class AuthConfig(_Strict):
    master_key: str | None = None
    api_keys: list[str] = []

    @field_validator("api_keys", mode="before")
    @classmethod
    def _drop_empty(cls, value: Any) -> Any:
        return [k for k in value if k] if isinstance(value, list) else value


class StoreConfig(_Strict):
    url: str = "sqlite:///quasar.db"
    log_content: bool = True
    batch_rows: int = Field(500, ge=1)  # request log rows per insert
    flush_seconds: float = Field(0.2, gt=0)  # how long a row may wait before its batch is written
    buffer_rows: int = Field(10000, ge=1)  # rows held in memory while the database is down, then spooled
    spool_dir: str | None = None  # default: beside the SQLite file, else the working directory
    retention_days: float | None = Field(None, gt=0)  # request log rows older than this are deleted
    content_retention_days: float | None = Field(None, gt=0)  # then messages and reply dropped, usage kept


class Quota(_Strict):
    """Limits for one key or one customer; None is no limit."""

    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)
    budget: float | None = Field(None, ge=0)  # USD
    budget_period: Literal["total", "day", "month"] = "total"


class LimitsConfig(_Strict):
    customer: Quota | None = None  # for every customer_identifier without its own entry
    customers: dict[str, Quota] = {}


class CacheConfig(_Strict):
    """Exact-match response cache (non-streamed replies); a request may opt in or out with cache_enabled."""

    enabled: bool = False
    ttl_seconds: int = Field(300, ge=1)
    max_entries: int = Field(10000, ge=1)  # in memory; Redis (with redis_url) keeps entries until their TTL


class ServerConfig(_Strict):
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    max_n: int = Field(8, ge=1, le=128)
    max_embedding_inputs: int = Field(2048, ge=1)  # inputs in one /v1/embeddings request (OpenAI's bound)
    max_tools: int = Field(128, ge=1, le=4096)  # function tools in one chat request
    max_messages: int = Field(2048, ge=1)  # messages in one request (Responses' input items, Anthropic's messages)
    shutdown_grace_seconds: float = Field(10.0, ge=0)  # on SIGTERM/SIGINT, for requests in flight to finish
    header_timeout_seconds: float = Field(10.0, gt=0)  # for a request's head to arrive; else 408, closed
    body_timeout_seconds: float = Field(30.0, gt=0)  # for a request's whole body to arrive; else 408


class Settings(_Strict):
    models: list[ModelConfig] = Field(min_length=1)
    router: RouterConfig = RouterConfig()
    auth: AuthConfig = AuthConfig()
    store: StoreConfig = StoreConfig()
    server: ServerConfig = ServerConfig()
    limits: LimitsConfig = LimitsConfig()
    cache: CacheConfig = CacheConfig()
    redis_url: str | None = None
    redis_namespace: str = Field("quasar", min_length=1)  # prefix of every Redis key and channel Quasar uses

    @model_validator(mode="after")
    def _unique_names(self) -> Settings:
        seen: set[str] = set()
        for m in self.models:
            if m.name in seen:
                raise ValueError(f"model name {m.name!r} appears twice")
            seen.add(m.name)
        names = [deployment_name(m.name, i, d) for m in self.models for i, d in enumerate(m.deployments)]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"deployment names appear twice: {', '.join(twice)}")
        for model, fallbacks in self.router.fallbacks.items():
            unknown = [name for name in [model, *fallbacks] if name not in seen]
            if unknown:
                raise ValueError(f"router.fallbacks names unknown models: {', '.join(unknown)}")
        return self

    def model_names(self) -> list[str]:
        return [m.name for m in self.models]


def default_settings() -> dict[str, Any]:
    """The config used when none is given: the built-in model served as `spark`, and the built-in embedding
    model as `all-minilm-l6-v2`."""
    return {
        "models": [
            {
                "name": "spark",
                "deployments": [{"engine": "llamacpp", "path": BUILTIN_MODEL, "parallel": 4}],
            },
            {
                "name": "all-minilm-l6-v2",
                "mode": "embedding",
                "deployments": [{"engine": "llamacpp", "path": BUILTIN_EMBEDDING_MODEL, "context_length": 512}],
            },
        ]
    }


Secrets = list[tuple[str, str]]
"""(text that came from the environment, what an error message shows instead of it)."""


def _substitute(value: str, found: Secrets) -> str:
    """`${VAR}` and `${VAR:-default}` in one string scalar; records what came from the environment."""
    used = False

    def sub(match: re.Match[str]) -> str:
        nonlocal used
        name, default = match.group(1), match.group(2)
        got = os.environ.get(name)
        if got:
            used = True
            found.append((got, f"${{{name}}}"))
            return got
        return default or ""  # as in the shell: unset or empty takes the default; no default, empty

    out = _ENV_REF.sub(sub, value)
    if used:
        found.append((out, value))  # the whole scalar, shown as the file wrote it
    return out


def _interpolate(data: Any, found: Secrets) -> Any:
    """Replace ${ENV} references inside the parsed config's string values (never its keys).

    Done after parsing, so an environment value is only ever a string scalar: a newline, ` #` or `: ` in it
    cannot add or cut config. Every value taken from the environment is added to `found`, for `redact`.
    """
    if isinstance(data, str):
        return _substitute(data, found) if "${" in data else data
    if isinstance(data, dict):
        return {k: _interpolate(v, found) for k, v in data.items()}
    if isinstance(data, list):
        return [_interpolate(v, found) for v in data]
    return data


def _shown(secrets: Secrets) -> Secrets:
    """Each secret also as repr() and JSON would escape it, longest first, so none survives in a message."""
    out: dict[str, str] = {}
    for value, shown in secrets:
        if not value:
            continue
        for form in (value, repr(value)[1:-1], json.dumps(value)[1:-1]):
            if form and (form not in out or len(shown) < len(out[form])):
                out[form] = shown
    return sorted(out.items(), key=lambda pair: len(pair[0]), reverse=True)


def redact(text: str, secrets: Secrets) -> str:
    """`text` with every value that came from the environment replaced by the `${VAR}` it came from.

    A value shorter than six characters (a port, a count: no secret) is replaced only where it stands alone,
    so that `64` in a message does not become `6${N}`.
    """
    pairs = _shown(secrets)
    if not pairs:
        return text
    shown = dict(pairs)
    pattern = "|".join(
        re.escape(value) if len(value) >= 6 else rf"(?<![A-Za-z0-9]){re.escape(value)}(?![A-Za-z0-9])"
        for value, _ in pairs
    )
    text = re.sub(pattern, lambda match: shown[match.group(0)], text)  # one pass: no replacing a replacement
    return text


def environment_secrets(path: str | os.PathLike[str] | None = None) -> Secrets:
    """What a config (and the QUASAR_* environment) took from the environment, for redacting later errors."""
    found: Secrets = []
    path = path or os.environ.get("QUASAR_CONFIG") or None
    if path:
        with contextlib.suppress(OSError, yaml.YAMLError):
            _interpolate(yaml.safe_load(Path(path).read_text()), found)
    for name in ("QUASAR_API_KEYS", "QUASAR_MASTER_KEY", "QUASAR_DATABASE_URL", "QUASAR_REDIS_URL"):
        value = os.environ.get(name)
        if value:
            found.append((value, f"${{{name}}}"))
            found += [(k.strip(), f"${{{name}}}") for k in value.split(",") if name == "QUASAR_API_KEYS" and k.strip()]
    return found


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """Follow a pydantic error location through the YAML node tree to a 1-based line number."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
            if found is None:
                break
            node = found
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
        line = node.start_mark.line + 1
    return line


def _format_errors(exc: ValidationError, source: str, root: yaml.Node | None, secrets: Secrets) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        where = ".".join(str(p) for p in loc) or "(top level)"
        line = _line_of(root, loc)
        prefix = f"{source}:{line}" if line else source
        lines.append(f"{prefix}: {where}: {redact(str(err['msg']), secrets)}")
    return "\n".join(lines)


def parse_settings(text: str, source: str = "<config>") -> Settings:
    """Parse and validate a config text; ${ENV} references are replaced in its string values after parsing.

    A ConfigError names the line of each problem and never shows a value that came from the environment.
    """
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}:1: the config must be a mapping")
    secrets: Secrets = []
    data = _interpolate(data, secrets)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source, root, secrets)) from None


def beside(url: str, directory: Path) -> str:
    """A relative SQLite path in the config file names a file beside the config."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and url[len(prefix) :] not in ("", ":memory:"):
        path = Path(url[len(prefix) :])
        if not path.is_absolute():
            return prefix + str((directory / path).resolve())
    return url


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Read the config file (or the default one) and apply the QUASAR_* environment on top."""
    path = path or os.environ.get("QUASAR_CONFIG") or None
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{p}: no such config file")
        settings = parse_settings(p.read_text(), str(p))
        settings.store.url = beside(settings.store.url, p.parent)
    else:
        settings = Settings.model_validate(default_settings())
    env_keys = [k.strip() for k in os.environ.get("QUASAR_API_KEYS", "").split(",") if k.strip()]
    if env_keys:
        settings.auth.api_keys = [*settings.auth.api_keys, *env_keys]
    if os.environ.get("QUASAR_MASTER_KEY"):
        settings.auth.master_key = os.environ["QUASAR_MASTER_KEY"]
    if os.environ.get("QUASAR_DATABASE_URL"):
        settings.store.url = os.environ["QUASAR_DATABASE_URL"]
    if os.environ.get("QUASAR_REDIS_URL"):
        settings.redis_url = os.environ["QUASAR_REDIS_URL"]
    return settings
