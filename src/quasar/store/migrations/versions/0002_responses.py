"""The responses table: conversations of the Responses API kept for previous_response_id.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "responses",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("key_id", sa.String(64)),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("input", sa.JSON, nullable=False),
        sa.Column("response", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    raise NotImplementedError("Quasar's migrations never drop data; restore a backup to go back")
