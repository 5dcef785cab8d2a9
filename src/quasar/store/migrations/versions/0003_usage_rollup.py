"""Usage rollups (store/rollup.py): the usage_rollup table, quasar_hist_add on PostgreSQL, and the rollups
of the rows already in the request log.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from quasar.store import rollup, rollup_bulk, rollup_sql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BACKFILL_ROWS = 100_000
# store/rollup_sql.py's upsert as this revision's table takes it: `id` was its primary key (0004 changed that)
_SET = [f"{c} = usage_rollup.{c} + excluded.{c}" for c in rollup.SCALARS] + [
    f"{c} = quasar_hist_add(usage_rollup.{c}, excluded.{c})" for c in ("latency_bins", "ttft_bins")
]
_VALUES = ", ".join(":" + c for c in rollup_sql.COLUMNS)
UPSERT = sa.text(
    f"INSERT INTO usage_rollup ({', '.join(rollup_sql.COLUMNS)}) VALUES ({_VALUES})"
    f" ON CONFLICT (id) DO UPDATE SET {', '.join(_SET)}"
)


def upgrade() -> None:
    op.create_table(
        "usage_rollup",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("grouping", sa.String(16), nullable=False),
        sa.Column("span", sa.Integer, nullable=False),
        sa.Column("bucket", sa.BigInteger, nullable=False),
        sa.Column("model", sa.String(256)),
        sa.Column("key_id", sa.String(64)),
        sa.Column("customer_identifier", sa.String(256)),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
        sa.Column("cached_tokens", sa.BigInteger, nullable=False),
        sa.Column("completion_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost", sa.Float, nullable=False),
        sa.Column("errors", sa.BigInteger, nullable=False),
        sa.Column("latency_bins", sa.LargeBinary, nullable=False),
        sa.Column("ttft_bins", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_usage_rollup_bucket", "usage_rollup", ["grouping", "span", "bucket"])
    op.create_index("ix_usage_rollup_key", "usage_rollup", ["key_id", "grouping", "span", "bucket"])
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(rollup_sql.PG_HIST_ADD)
    backfill(conn)


def backfill(conn: sa.Connection) -> None:
    """Roll up every row already logged, BACKFILL_ROWS at a time in id (time) order (store/rollup_bulk.py)."""
    columns = ", ".join(rollup_bulk.COLUMNS)
    select = f"SELECT id, {columns} FROM request_log WHERE id > :after ORDER BY id LIMIT {BACKFILL_ROWS}"
    after = ""
    while True:
        rows = conn.execute(sa.text(select), {"after": after}).all()
        if not rows:
            return
        conn.execute(UPSERT, rollup_bulk.rollups([row[1:] for row in rows]))
        after = rows[-1][0]


def downgrade() -> None:
    raise NotImplementedError("Quasar's migrations never drop data; restore a backup to go back")
