"""Many accounts in one database: every row carries its account, entity keys become (account, id).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 15:00:00.000000

Existing rows become account ``default`` (the column's server default), so a database written
before accounts existed keeps its history and changes and goes on syncing as ``--account
default``. SQLite cannot change a primary key in place: the entity tables and the tracked export
list are copied (Alembic's batch mode). Every view reads the tables, so all of them are dropped
first and created again with the account as a column and in every join: two accounts may hold
the same API ids (the same preset models, a partner's shared sets).

The lineage view also takes a version's set name from its set when the version's answer has
none (a preset version: DescribeSystemModel does not give it).

Downgrading refuses while rows of an account other than ``default`` exist: their keys would
collide.
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Entity table -> its API id column.
ENTITIES = {
    "model_sets": "model_set_id",
    "model_versions": "model_id",
    "compression_tasks": "task_id",
    "model_exports": "model_id",
    "eval_result_exports": "export_id",
    "fine_tuning_jobs": "job_id",
    "fine_tuning_tasks": "task_id",
    "eval_tasks": "task_id",
    "eval_task_reports": "unit_id",
    "services": "service_id",
}
#: Tables that only gain the column.
PLAIN = ("sync_runs", "sync_errors", "changes")
REPORT_VIEWS = (
    "report_versions_by_model_set",
    "report_compression_tasks_by_status",
    "report_exports",
    "report_latest_changes",
    "lineage_model_versions",
)
_COMMENT = "the account (--account) the row belongs to"


def _account() -> sa.Column:
    return sa.Column(
        "account", sa.String(length=64), nullable=False, server_default=sa.text("'default'"),
        comment=_COMMENT,
    )


def _drop_views() -> None:
    for view in REPORT_VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {view}")
    for table in ENTITIES:
        op.execute(f"DROP VIEW IF EXISTS current_{table}")


def _current_views() -> None:
    for table in ENTITIES:
        op.execute(f"CREATE VIEW current_{table} AS SELECT * FROM {table} WHERE deleted_at IS NULL")


def _seconds(start: str, end: str) -> str:
    if op.get_bind().dialect.name == "postgresql":
        return f"CAST(EXTRACT(EPOCH FROM ({end} - {start})) AS DOUBLE PRECISION)"
    return f"((julianday({end}) - julianday({start})) * 86400.0)"


def upgrade() -> None:
    _drop_views()
    for table, key in ENTITIES.items():
        with op.batch_alter_table(table) as batch:
            batch.add_column(_account())
            batch.drop_constraint(f"pk_{table}", type_="primary")
            batch.create_primary_key(f"pk_{table}", ["account", key])
        history = f"{table}_history"
        op.add_column(history, _account())
        op.drop_index(f"ix_{history}_key_valid_to", table_name=history)
        op.create_index(f"ix_{history}_key_valid_to", history, ["account", key, "valid_to"])
    with op.batch_alter_table("tracked_eval_exports") as batch:
        batch.add_column(_account())
        batch.drop_constraint("pk_tracked_eval_exports", type_="primary")
        batch.create_primary_key("pk_tracked_eval_exports", ["account", "export_ref"])
    for table in PLAIN:
        op.add_column(table, _account())
    op.create_index("ix_sync_runs_account_status", "sync_runs", ["account", "status"])
    op.drop_index("ix_changes_kind_entity_id", table_name="changes")
    op.create_index("ix_changes_kind_entity_id", "changes", ["account", "kind", "entity_id"])
    _current_views()
    _report_views()


def _report_views() -> None:
    op.execute(
        """
        CREATE VIEW report_versions_by_model_set AS
        SELECT s.account, s.model_set_id, s.model_set_name, s.is_system,
               (SELECT COUNT(*) FROM model_versions c
                 WHERE c.account = s.account AND c.model_set_id = s.model_set_id
                   AND c.deleted_at IS NULL) AS versions,
               v.model_id, v.model_name, v.status, v.source_type,
               v.create_time AS version_create_time,
               e.export_id, e.state AS export_state, e.file_size AS export_file_size
          FROM model_sets s
          LEFT JOIN model_versions v
            ON v.account = s.account AND v.model_set_id = s.model_set_id
           AND v.deleted_at IS NULL
          LEFT JOIN model_exports e
            ON e.account = v.account AND e.model_id = v.model_id AND e.deleted_at IS NULL
         WHERE s.deleted_at IS NULL
        """
    )
    duration = _seconds("create_time", "finish_time")
    op.execute(
        f"""
        CREATE VIEW report_compression_tasks_by_status AS
        SELECT account, status, strategy,
               COUNT(*) AS tasks,
               COUNT(finish_time) AS finished,
               AVG(CASE WHEN finish_time IS NOT NULL AND create_time IS NOT NULL
                        THEN {duration} END) AS avg_duration_seconds
          FROM compression_tasks
         WHERE deleted_at IS NULL
         GROUP BY account, status, strategy
        """  # noqa: S608 -- {duration} is one of two constant expressions, not input
    )
    op.execute(
        """
        CREATE VIEW report_exports AS
        SELECT e.account, e.model_id, v.model_name, v.model_set_id, v.model_set_name,
               e.export_id, e.state, e.file_name, e.file_type, e.file_size, e.md5,
               e.download_url
          FROM model_exports e
          LEFT JOIN model_versions v ON v.account = e.account AND v.model_id = e.model_id
         WHERE e.deleted_at IS NULL
        """
    )
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
    op.execute(
        """
        CREATE VIEW lineage_model_versions AS
        WITH latest_eval AS (
            SELECT r.account, r.model_id, r.task_id, t.task_name, t.state,
                   r.headline_metric, r.headline_value,
                   ROW_NUMBER() OVER (
                       PARTITION BY r.account, r.model_id
                       ORDER BY t.create_time DESC NULLS LAST, t.task_id DESC, r.unit_id
                   ) AS rn
              FROM eval_task_reports r
              JOIN eval_tasks t
                ON t.account = r.account AND t.task_id = r.task_id AND t.deleted_at IS NULL
             WHERE r.deleted_at IS NULL AND r.model_id IS NOT NULL
        )
        SELECT v.account, v.model_id, v.model_name, v.model_set_id,
               COALESCE(v.model_set_name, ms.model_set_name) AS model_set_name, v.status,
               v.source_type,
               v.train_task_id AS fine_tuning_task_id,
               ft.run_status AS fine_tuning_task_status,
               ft.job_id AS fine_tuning_job_id,
               j.name AS fine_tuning_job_name,
               (SELECT MIN(c.task_id) FROM compression_tasks c
                 WHERE c.account = v.account AND c.model_id = v.model_id
                   AND c.deleted_at IS NULL) AS compressed_by_task_id,
               (SELECT MIN(c.source_model_id) FROM compression_tasks c
                 WHERE c.account = v.account AND c.model_id = v.model_id
                   AND c.deleted_at IS NULL) AS compressed_from_model_id,
               (SELECT COUNT(*) FROM compression_tasks c
                 WHERE c.account = v.account AND c.source_model_id = v.model_id
                   AND c.deleted_at IS NULL) AS compression_tasks_as_source,
               e.state AS export_state,
               (SELECT COUNT(*) FROM services s
                 WHERE s.account = v.account AND s.model_id = v.model_id
                   AND s.deleted_at IS NULL) AS services,
               (SELECT COUNT(*) FROM services s
                 WHERE s.account = v.account AND s.model_id = v.model_id
                   AND s.deleted_at IS NULL AND s.run_status = 'Serving') AS services_serving,
               le.task_id AS latest_eval_task_id,
               le.task_name AS latest_eval_task_name,
               le.state AS latest_eval_state,
               le.headline_metric AS latest_eval_metric,
               le.headline_value AS latest_eval_value
          FROM model_versions v
          LEFT JOIN model_sets ms
                 ON ms.account = v.account AND ms.model_set_id = v.model_set_id
                AND ms.deleted_at IS NULL
          LEFT JOIN fine_tuning_tasks ft
                 ON ft.account = v.account AND ft.task_id = v.train_task_id
                AND ft.deleted_at IS NULL
          LEFT JOIN fine_tuning_jobs j
                 ON j.account = ft.account AND j.job_id = ft.job_id AND j.deleted_at IS NULL
          LEFT JOIN model_exports e
                 ON e.account = v.account AND e.model_id = v.model_id AND e.deleted_at IS NULL
          LEFT JOIN latest_eval le
                 ON le.account = v.account AND le.model_id = v.model_id AND le.rn = 1
         WHERE v.deleted_at IS NULL
        """
    )


def _earlier(revision_file: str) -> object:
    """An earlier revision's module, whose ``upgrade()`` creates the views it defined."""
    path = Path(__file__).with_name(revision_file)
    spec = importlib.util.spec_from_file_location(f"_catalog_migration_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def downgrade() -> None:
    others = op.get_bind().execute(
        sa.text("SELECT COUNT(*) FROM sync_runs WHERE account <> 'default'")
    ).scalar_one()
    if others:
        raise RuntimeError(
            "cannot downgrade below 0007: the database holds runs of accounts other than "
            "'default', whose ids would collide"
        )
    _drop_views()
    op.drop_index("ix_changes_kind_entity_id", table_name="changes")
    op.create_index("ix_changes_kind_entity_id", "changes", ["kind", "entity_id"])
    op.drop_index("ix_sync_runs_account_status", table_name="sync_runs")
    for table in (*PLAIN, "tracked_eval_exports"):
        with op.batch_alter_table(table) as batch:
            if table == "tracked_eval_exports":
                batch.drop_constraint("pk_tracked_eval_exports", type_="primary")
                batch.create_primary_key("pk_tracked_eval_exports", ["export_ref"])
            batch.drop_column("account")
    for table, key in ENTITIES.items():
        history = f"{table}_history"
        op.drop_index(f"ix_{history}_key_valid_to", table_name=history)
        op.create_index(f"ix_{history}_key_valid_to", history, [key, "valid_to"])
        with op.batch_alter_table(history) as batch:
            batch.drop_column("account")
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"pk_{table}", type_="primary")
            batch.create_primary_key(f"pk_{table}", [key])
            batch.drop_column("account")
    _current_views()
    for revision_file in ("0002_report_views.py", "0006_lineage_view.py"):
        _earlier(revision_file).upgrade()  # type: ignore[attr-defined]
