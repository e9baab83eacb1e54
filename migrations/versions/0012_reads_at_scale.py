"""Reads that stay fast as history grows: the latest-changes view, changes by time, lineage.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 15:10:00

Written by hand; no table or column changes. A year of daily runs (about a million ``changes``
rows, half a million compression-task history rows) made three reads scan whole tables:

1. ``report_latest_changes`` compared each ``changes`` row with a correlated ``MAX(run_id)`` of
   its account's finished runs: evaluated per row, a scan of all of ``changes`` (a minute on
   SQLite). It now joins the latest finished run of each account, found once, to ``changes``
   by ``run_id`` (its index): the same rows.
2. ``changes --since/--until`` had no index on ``changed_at``: ``(account, changed_at)``.
3. ``lineage`` looks compression tasks up by ``model_id`` (the task that made a version): not
   indexed (``source_model_id``, the tasks made from it, was). Alone, not after the account:
   without statistics PostgreSQL took an ``(account, ...)`` index's prefix for the writer's
   lookups by key (a scan of the account per key). The history tables get none: every change
   writes to them, and their lookups are ``lineage --as-of``'s alone.

Downgrading puts back the view of revision 0011 and drops the indexes.
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VIEW = "report_latest_changes"
#: The lookup indexes this revision adds (the one on source_model_id was there).
INDEXES = (("compression_tasks", "model_id"),)


def upgrade() -> None:
    op.execute(f"DROP VIEW {VIEW}")
    op.execute(
        """
        CREATE VIEW report_latest_changes AS
        SELECT c.account, c.run_id, r.started_at AS run_started_at, r.status AS run_status,
               c.kind, c.entity_id, c.operation, c.field, c.old_value, c.new_value,
               c.change_id
          FROM (SELECT account, MAX(run_id) AS run_id
                  FROM sync_runs
                 WHERE status <> 'running'
                 GROUP BY account) l
          JOIN changes c ON c.run_id = l.run_id AND c.account = l.account
          JOIN sync_runs r ON r.run_id = c.run_id
        """
    )
    op.create_index("ix_changes_account_changed_at", "changes", ["account", "changed_at"])
    for table, column in INDEXES:
        op.create_index(f"ix_{table}_{column}", table, [column])


def downgrade() -> None:
    for table, column in INDEXES:
        op.drop_index(f"ix_{table}_{column}", table_name=table)
    op.drop_index("ix_changes_account_changed_at", table_name="changes")
    op.execute(f"DROP VIEW {VIEW}")
    op.execute(
        """
        CREATE VIEW report_latest_changes AS
        SELECT c.account, c.run_id, r.started_at AS run_started_at, r.status AS run_status,
               c.kind, c.entity_id, c.operation, c.field, c.old_value, c.new_value,
               c.change_id
          FROM changes c
          JOIN sync_runs r ON r.run_id = c.run_id
         WHERE c.run_id = (SELECT MAX(l.run_id) FROM sync_runs l
                            WHERE l.account = c.account AND l.status <> 'running')
        """
    )
