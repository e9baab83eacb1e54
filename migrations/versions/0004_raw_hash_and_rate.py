"""A hash of each entity's last answer (so an unchanged answer is not normalised or diffed again)
and the request rate a run settled on (so a user learns the account's real limit).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 12:00:00.000000

The ``current_*`` views are ``SELECT *``, which PostgreSQL expands when a view is created: they
are created again around the new column.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ENTITY_TABLES = (
    "model_sets",
    "model_versions",
    "compression_tasks",
    "model_exports",
    "eval_result_exports",
)
_HASH = "hash of the answer last stored: equal means unchanged, nothing to parse or compare"
_RATE = "calls per second the client settled on (adaptive pacing under --qps)"


def _view(table: str) -> str:
    return f"CREATE VIEW current_{table} AS SELECT * FROM {table} WHERE deleted_at IS NULL"


def upgrade() -> None:
    for table in ENTITY_TABLES:
        op.execute(f"DROP VIEW current_{table}")
        op.add_column(table, sa.Column('raw_hash', sa.String(length=32), nullable=True, comment=_HASH))
        op.execute(_view(table))
    op.add_column('sync_runs', sa.Column('qps_settled', sa.Float(), nullable=True, comment=_RATE))


def downgrade() -> None:
    # Plain ALTER (SQLite >= 3.35): a batch copy-and-rename would trip over the report views.
    op.execute("ALTER TABLE sync_runs DROP COLUMN qps_settled")
    for table in ENTITY_TABLES:
        op.execute(f"DROP VIEW current_{table}")
        op.execute(f"ALTER TABLE {table} DROP COLUMN raw_hash")
        op.execute(_view(table))
