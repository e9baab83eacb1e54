"""Report views for SQL and BI users: versions per set, tasks by status, exports, latest changes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 09:00:00.000000

The view names and columns are a contract documented in docs/schema.md. Each view's SQL is the
same on SQLite and PostgreSQL except for the one expression that turns two timestamps into
seconds, which the two dialects spell differently.
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VIEWS = (
    "report_versions_by_model_set",
    "report_compression_tasks_by_status",
    "report_exports",
    "report_latest_changes",
)


def _seconds(start: str, end: str) -> str:
    """SQL for ``end - start`` in seconds (a float), on the current dialect."""
    if op.get_bind().dialect.name == "postgresql":
        return f"CAST(EXTRACT(EPOCH FROM ({end} - {start})) AS DOUBLE PRECISION)"
    # SQLite keeps UTC timestamps as ISO text; julianday() parses them.
    return f"((julianday({end}) - julianday({start})) * 86400.0)"


def upgrade() -> None:
    op.execute(
        """
        CREATE VIEW report_versions_by_model_set AS
        SELECT s.model_set_id, s.model_set_name, s.is_system,
               (SELECT COUNT(*) FROM model_versions c
                 WHERE c.model_set_id = s.model_set_id AND c.deleted_at IS NULL) AS versions,
               v.model_id, v.model_name, v.status, v.source_type,
               v.create_time AS version_create_time,
               e.export_id, e.state AS export_state, e.file_size AS export_file_size
          FROM model_sets s
          LEFT JOIN model_versions v
            ON v.model_set_id = s.model_set_id AND v.deleted_at IS NULL
          LEFT JOIN model_exports e
            ON e.model_id = v.model_id AND e.deleted_at IS NULL
         WHERE s.deleted_at IS NULL
        """
    )
    duration = _seconds("create_time", "finish_time")
    op.execute(
        f"""
        CREATE VIEW report_compression_tasks_by_status AS
        SELECT status, strategy,
               COUNT(*) AS tasks,
               COUNT(finish_time) AS finished,
               AVG(CASE WHEN finish_time IS NOT NULL AND create_time IS NOT NULL
                        THEN {duration} END) AS avg_duration_seconds
          FROM compression_tasks
         WHERE deleted_at IS NULL
         GROUP BY status, strategy
        """  # noqa: S608 -- {duration} is one of two constant expressions, not input
    )
    op.execute(
        """
        CREATE VIEW report_exports AS
        SELECT e.model_id, v.model_name, v.model_set_id, v.model_set_name,
               e.export_id, e.state, e.file_name, e.file_type, e.file_size, e.md5,
               e.download_url
          FROM model_exports e
          LEFT JOIN model_versions v ON v.model_id = e.model_id
         WHERE e.deleted_at IS NULL
        """
    )
    op.execute(
        """
        CREATE VIEW report_latest_changes AS
        SELECT c.run_id, r.started_at AS run_started_at, r.status AS run_status,
               c.kind, c.entity_id, c.operation, c.field, c.old_value, c.new_value,
               c.change_id
          FROM changes c
          JOIN sync_runs r ON r.run_id = c.run_id
         WHERE c.run_id = (SELECT MAX(l.run_id) FROM sync_runs l
                            WHERE l.status <> 'running')
        """
    )


def downgrade() -> None:
    for view in reversed(VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {view}")
