"""Usage rollups kept in the order they are read: primary key (grouping, span, bucket, id).

A dashboard query reads the rollup rows of one grouping and span over a range of buckets. Under 0003 those
rows lay wherever they were first written (SQLite: rowid order; the primary key a random hash), one page per
row. Now the primary key starts with (grouping, span, bucket). On SQLite the table is a WITHOUT ROWID one,
so the rows of a range are consecutive in the file (rebuilt by Alembic's batch "recreate": the table is
copied whole, then the old copy dropped). On PostgreSQL keys and indexes change in place and the table is
clustered on the new key once (rows written later arrive in bucket order anyway). `id` is a hash of the
rest of the row's key, so the new key is unique where `id` was; the writers' upsert (store/rollup_sql.py)
names the whole key as its conflict target, the table's only unique index (PostgreSQL's ON CONFLICT
arbitrates only the index it names: two replicas inserting the same new row at once could fail on any
other unique index); a plain index on `id` keeps looking a row up by its id cheap. The (grouping, span,
bucket) index of 0003 is the primary key's prefix now and is gone.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _shape() -> sa.Table:
    return sa.Table(
        "usage_rollup",
        sa.MetaData(),
        sa.Column("id", sa.String(32), nullable=False),
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
        sa.PrimaryKeyConstraint("grouping", "span", "bucket", "id", name="pk_usage_rollup"),
        sa.Index("ix_usage_rollup_key", "key_id", "grouping", "span", "bucket"),
        sa.Index("ix_usage_rollup_id", "id"),
        sqlite_with_rowid=False,
    )


# PostgreSQL changes keys and indexes in place; its heap has no order but the one CLUSTER gives it.
POSTGRES = (
    "ALTER TABLE usage_rollup DROP CONSTRAINT usage_rollup_pkey,"
    " ADD CONSTRAINT pk_usage_rollup PRIMARY KEY (grouping, span, bucket, id)",
    "DROP INDEX ix_usage_rollup_bucket",
    "CREATE INDEX ix_usage_rollup_id ON usage_rollup (id)",
    "CLUSTER usage_rollup USING pk_usage_rollup",
    "ANALYZE usage_rollup",
)


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        for statement in POSTGRES:
            conn.exec_driver_sql(statement)
        return
    with op.batch_alter_table("usage_rollup", copy_from=_shape(), recreate="always"):
        pass


def downgrade() -> None:
    raise NotImplementedError("Quasar's migrations never drop data; restore a backup to go back")
