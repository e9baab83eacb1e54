"""Preset sets without a creation time are described on the next run: their stored answer
hash is cleared.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 09:40:00

Written by hand; no table or column changes. A full run now asks DescribeSystemModelSet for
the ``createTime`` the preset listing lacks, for a preset set that is new, changed, or whose
last describe call failed (its row stored with the empty hash). Runs of the code before this
revision never asked, so the preset sets they stored have no creation time and a hash equal to
their listing's answer: that hash is cleared here, so the next run finds each of them changed,
asks the call once, and records the time learnt (a change from NULL; every other column it
finds equal). Downgrading leaves the hashes as they are: an empty hash only makes one run
compare the set again.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

model_sets = sa.table(
    'model_sets',
    sa.column('is_system', sa.Boolean()),
    sa.column('create_time', sa.DateTime(timezone=True)),
    sa.column('deleted_at', sa.DateTime(timezone=True)),
    sa.column('raw_hash', sa.String(32)),
)


def upgrade() -> None:
    op.execute(
        model_sets.update()
        .where(
            model_sets.c.is_system == sa.true(),
            model_sets.c.create_time.is_(None),
            model_sets.c.deleted_at.is_(None),
        )
        .values(raw_hash='')
    )


def downgrade() -> None:
    pass
