"""lineage_model_versions reads each compression task once, not once per version.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 07:20:00

Written by hand; no table or column changes. The view's three compression-task columns were
correlated subqueries run for every version. Without statistics (SQLite has none unless someone
runs ANALYZE) both databases took the subqueries' ``account = ?`` to the primary key and read
every task of the account for every version: the time grew as versions times tasks (the
README's benchmark section has the figures). An index on ``model_id`` did not help: SQLite's
MIN() then walked the index of the column it takes the minimum of. They are now two aggregates
of the tasks, each read once and joined by ``(account, model_id)``: the same rows and values
(tested against the old view). Downgrading puts back the view of revision 0007, read from that
file.
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VIEW = "lineage_model_versions"


def upgrade() -> None:
    op.execute(f"DROP VIEW {VIEW}")
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
               cb.task_id AS compressed_by_task_id,
               cb.source_model_id AS compressed_from_model_id,
               COALESCE(cs.tasks, 0) AS compression_tasks_as_source,
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
          LEFT JOIN (SELECT account, model_id, MIN(task_id) AS task_id,
                            MIN(source_model_id) AS source_model_id
                       FROM compression_tasks
                      WHERE deleted_at IS NULL AND model_id IS NOT NULL
                      GROUP BY account, model_id) cb
                 ON cb.account = v.account AND cb.model_id = v.model_id
          LEFT JOIN (SELECT account, source_model_id, COUNT(*) AS tasks
                       FROM compression_tasks
                      WHERE deleted_at IS NULL AND source_model_id IS NOT NULL
                      GROUP BY account, source_model_id) cs
                 ON cs.account = v.account AND cs.source_model_id = v.model_id
          LEFT JOIN latest_eval le
                 ON le.account = v.account AND le.model_id = v.model_id AND le.rn = 1
         WHERE v.deleted_at IS NULL
        """
    )


def _view_of_0007() -> str:
    """The view as revision 0007 created it: its ``_report_views`` run with an ``op`` that
    keeps the statements instead of executing them."""
    path = Path(__file__).with_name("0007_accounts.py")
    spec = importlib.util.spec_from_file_location("_catalog_migration_0007_for_0011", path)
    assert spec is not None and spec.loader is not None
    module: Any = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    statements: list[str] = []
    module.op = SimpleNamespace(execute=statements.append, get_bind=op.get_bind)
    module._report_views()
    (statement,) = [s for s in statements if f"CREATE VIEW {VIEW} " in s]
    return statement


def downgrade() -> None:
    op.execute(f"DROP VIEW {VIEW}")
    op.execute(_view_of_0007())
