"""The initial schema: api_keys and request_log.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("models", sa.JSON, nullable=False),
        sa.Column("rpm", sa.Integer),
        sa.Column("tpm", sa.Integer),
        sa.Column("budget", sa.Float),
        sa.Column("budget_period", sa.String(8), nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("expires", sa.Float),
        sa.Column("revoked", sa.Float),
    )
    op.create_table(
        "request_log",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("key_id", sa.String(64)),
        sa.Column("customer_identifier", sa.String(256)),
        sa.Column("metadata", sa.JSON),
        sa.Column("model", sa.String(256)),
        sa.Column("deployment", sa.String(256)),
        sa.Column("provider", sa.String(128)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("http_status", sa.Integer, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("cached_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("cost", sa.Float, nullable=False),
        sa.Column("price_version", sa.String(32)),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("ttft_ms", sa.Float),
        sa.Column("routing_ms", sa.Float),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("cache_hit", sa.Boolean, nullable=False),
        sa.Column("stream", sa.Boolean, nullable=False),
        sa.Column("messages", sa.JSON),
        sa.Column("reply", sa.JSON),
        sa.Column("trace", sa.JSON),
    )
    op.create_index("ix_request_log_request_id", "request_log", ["request_id"])
    op.create_index("ix_request_log_created", "request_log", ["created"])
    op.create_index("ix_request_log_key_id", "request_log", ["key_id", "created"])
    op.create_index("ix_request_log_customer", "request_log", ["customer_identifier", "created"])
    op.create_index("ix_request_log_model", "request_log", ["model", "created"])


def downgrade() -> None:
    raise NotImplementedError("Quasar's migrations never drop data; restore a backup to go back")
