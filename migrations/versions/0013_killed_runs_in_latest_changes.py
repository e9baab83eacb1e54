"""The latest changes include what killed runs wrote since the run before.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 17:00:00

Written by hand; only the view changes. ``report_latest_changes`` showed the changes of each
account's latest run that is not ``running``. A run killed mid-walk (SIGKILL, the machine
restarted) has committed batches of inserts and updates; it reads ``running`` until the account's
next sync marks it ``aborted``, and that sync's own end then makes it the latest. So its changes
were the latest only while the next run ran, and that run does not record them again (they are
stored): a daily "what changed" report never showed them. Now the view also shows the changes of
the ``aborted`` runs after the account's last other finished run before the latest one: each
killed run's changes are reported once, with the run that follows it. Runs that ended by
themselves (``failed``, ``interrupted``, ``partial``) were the latest when they ended, as before.

Downgrading puts back revision 0012's view.
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VIEW = "report_latest_changes"


def upgrade() -> None:
    op.execute(f"DROP VIEW {VIEW}")
    # w: per account, the latest finished run and the last run before it that ended by itself;
    # the runs reported are the latest and the aborted ones between the two. Derived tables,
    # not correlated subqueries: sync_runs is read once, and changes by run_id alone (its
    # index; a run id is one account's). Joined on the account as well, SQLite without
    # statistics read every change of the account by the (account, changed_at) index instead.
    op.execute(
        """
        CREATE VIEW report_latest_changes AS
        SELECT c.account, c.run_id, r.started_at AS run_started_at, r.status AS run_status,
               c.kind, c.entity_id, c.operation, c.field, c.old_value, c.new_value,
               c.change_id
          FROM (SELECT l.account, l.run_id AS latest, COALESCE(MAX(p.run_id), 0) AS since
                  FROM (SELECT account, MAX(run_id) AS run_id
                          FROM sync_runs
                         WHERE status <> 'running'
                         GROUP BY account) l
                  LEFT JOIN sync_runs p
                    ON p.account = l.account AND p.run_id < l.run_id
                   AND p.status NOT IN ('running', 'aborted')
                 GROUP BY l.account, l.run_id) w
          JOIN sync_runs r
            ON r.account = w.account AND r.run_id > w.since AND r.run_id <= w.latest
           AND (r.run_id = w.latest OR r.status = 'aborted')
          JOIN changes c ON c.run_id = r.run_id
        """
    )


def downgrade() -> None:
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
