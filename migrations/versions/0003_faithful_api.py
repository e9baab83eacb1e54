"""What the faithful-API work records: a failed compression task's reason, the drift between the
API's answers and its documents, and the source a database's catalog came from.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 11:00:00.000000

``current_compression_tasks`` is ``SELECT *``; PostgreSQL expands the star when a view is
created, so the view is created again around the new column (SQLite would not need it).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_REASON = "DescribeModelCompTask's failedReason; fetched once per failed task"
_VIEW = "CREATE VIEW current_compression_tasks AS SELECT * FROM compression_tasks WHERE deleted_at IS NULL"


def upgrade() -> None:
    op.execute("DROP VIEW current_compression_tasks")
    op.add_column('compression_tasks', sa.Column('failed_reason', sa.Text(), nullable=True, comment=_REASON))
    op.add_column('compression_tasks_history', sa.Column('failed_reason', sa.Text(), nullable=True, comment=_REASON))
    op.execute(_VIEW)
    op.create_table('api_drift',
    sa.Column('drift_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('call', sa.String(length=128), nullable=False, comment='the action whose answers drifted'),
    sa.Column('field', sa.String(length=255), nullable=False, comment='dotted path inside the answer object'),
    sa.Column('drift', sa.String(length=8), nullable=False, comment='unknown: answers carried it, the documents do not list it; missing: documented, answers lacked it'),
    sa.Column('example_id', sa.Text(), nullable=True, comment='one entity whose answer showed it'),
    sa.Column('count', sa.Integer(), nullable=False, comment='answers of this run that showed it'),
    sa.ForeignKeyConstraint(['run_id'], ['sync_runs.run_id'], name=op.f('fk_api_drift_run_id_sync_runs')),
    sa.PrimaryKeyConstraint('drift_id', name=op.f('pk_api_drift'))
    )
    with op.batch_alter_table('api_drift', schema=None) as batch_op:
        batch_op.create_index('ix_api_drift_kind_field', ['kind', 'call', 'field'], unique=False)
        batch_op.create_index(batch_op.f('ix_api_drift_run_id'), ['run_id'], unique=False)
    op.create_table('catalog_source',
    sa.Column('account', sa.String(length=64), nullable=False, comment="the catalog's name; 'default' until several accounts share a database"),
    sa.Column('base_url', sa.Text(), nullable=False),
    sa.Column('key_fingerprint', sa.String(length=64), nullable=False, comment='a salted hash of the access key id: tells keys apart, never shows one'),
    sa.Column('bound_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('account', name=op.f('pk_catalog_source'))
    )


def downgrade() -> None:
    op.drop_table('catalog_source')
    with op.batch_alter_table('api_drift', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_drift_run_id'))
        batch_op.drop_index('ix_api_drift_kind_field')
    op.drop_table('api_drift')
    op.execute("DROP VIEW current_compression_tasks")
    # Plain ALTER (SQLite >= 3.35): a batch copy-and-rename would trip over the report views.
    op.execute("ALTER TABLE compression_tasks_history DROP COLUMN failed_reason")
    op.execute("ALTER TABLE compression_tasks DROP COLUMN failed_reason")
    op.execute(_VIEW)
