"""The store's tables, as SQLAlchemy Core. Migrations in store/migrations create them; this is their shape."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

metadata = MetaData()

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("models", JSON, nullable=False),
    Column("rpm", Integer),
    Column("tpm", Integer),
    Column("budget", Float),
    Column("budget_period", String(8), nullable=False),
    Column("created", Float, nullable=False),
    Column("expires", Float),
    Column("revoked", Float),
)

request_log = Table(
    "request_log",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("request_id", String(128), nullable=False),
    Column("created", Float, nullable=False),
    Column("key_id", String(64)),
    Column("customer_identifier", String(256)),
    Column("metadata", JSON),
    Column("model", String(256)),
    Column("deployment", String(256)),
    Column("provider", String(128)),
    Column("status", String(16), nullable=False),
    Column("http_status", Integer, nullable=False),
    Column("error", Text),
    Column("prompt_tokens", Integer, nullable=False),
    Column("cached_tokens", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False),
    Column("cost", Float, nullable=False),
    Column("price_version", String(32)),
    Column("latency_ms", Float, nullable=False),
    Column("ttft_ms", Float),
    Column("routing_ms", Float),
    Column("attempts", Integer, nullable=False),
    Column("cache_hit", Boolean, nullable=False),
    Column("stream", Boolean, nullable=False),
    Column("messages", JSON),
    Column("reply", JSON),
    Column("trace", JSON),
    Index("ix_request_log_request_id", "request_id"),
    Index("ix_request_log_created", "created"),
    Index("ix_request_log_key_id", "key_id", "created"),
    Index("ix_request_log_customer", "customer_identifier", "created"),
    Index("ix_request_log_model", "model", "created"),
)

# Usage rolled up as log rows are written (store/rollup.py): one row per grouping, span, bucket and group.
# Stored in primary-key order, the order a range of buckets is read in (migration 0004; WITHOUT ROWID on
# SQLite); `id` is a hash of the rest of the key, kept for the rows' identity across replicas.
usage_rollup = Table(
    "usage_rollup",
    metadata,
    Column("id", String(32), nullable=False),
    Column("grouping", String(16), nullable=False),
    Column("span", Integer, nullable=False),
    Column("bucket", BigInteger, nullable=False),
    Column("model", String(256)),
    Column("key_id", String(64)),
    Column("customer_identifier", String(256)),
    Column("requests", BigInteger, nullable=False),
    Column("prompt_tokens", BigInteger, nullable=False),
    Column("cached_tokens", BigInteger, nullable=False),
    Column("completion_tokens", BigInteger, nullable=False),
    Column("cost", Float, nullable=False),
    Column("errors", BigInteger, nullable=False),
    Column("latency_bins", LargeBinary, nullable=False),
    Column("ttft_bins", LargeBinary, nullable=False),
    PrimaryKeyConstraint("grouping", "span", "bucket", "id", name="pk_usage_rollup"),
    Index("ix_usage_rollup_key", "key_id", "grouping", "span", "bucket"),
    Index("ix_usage_rollup_id", "id"),
    sqlite_with_rowid=False,
)

# Responses API conversations (store/responses.py): `input` is the conversation up to this answer,
# `response` the Response object as it was returned.
responses = Table(
    "responses",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("key_id", String(64)),
    Column("created", Float, nullable=False),
    Column("model", String(256), nullable=False),
    Column("input", JSON, nullable=False),
    Column("response", JSON, nullable=False),
)


def plain(row: Any) -> dict[str, Any]:
    """A result row as a dict with plain str keys (SQLAlchemy's column names are a str subclass)."""
    return {str(k): v for k, v in row.items()}
