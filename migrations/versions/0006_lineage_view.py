"""lineage_model_versions: one row per model version with where it came from and where it runs.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 12:30:00.000000

The same SQL on SQLite (3.30+, for window functions with NULLS LAST) and PostgreSQL. A version's
fine-tuning task is the one its ``sourceInfo`` names (``train_task_id``); its latest evaluation is
the report unit of the most recently created evaluation task that evaluated it.
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE VIEW lineage_model_versions AS
        WITH latest_eval AS (
            SELECT r.model_id, r.task_id, t.task_name, t.state,
                   r.headline_metric, r.headline_value,
                   ROW_NUMBER() OVER (
                       PARTITION BY r.model_id
                       ORDER BY t.create_time DESC NULLS LAST, t.task_id DESC, r.unit_id
                   ) AS rn
              FROM eval_task_reports r
              JOIN eval_tasks t ON t.task_id = r.task_id AND t.deleted_at IS NULL
             WHERE r.deleted_at IS NULL AND r.model_id IS NOT NULL
        )
        SELECT v.model_id, v.model_name, v.model_set_id, v.model_set_name, v.status,
               v.source_type,
               v.train_task_id AS fine_tuning_task_id,
               ft.run_status AS fine_tuning_task_status,
               ft.job_id AS fine_tuning_job_id,
               j.name AS fine_tuning_job_name,
               (SELECT MIN(c.task_id) FROM compression_tasks c
                 WHERE c.model_id = v.model_id AND c.deleted_at IS NULL) AS compressed_by_task_id,
               (SELECT MIN(c.source_model_id) FROM compression_tasks c
                 WHERE c.model_id = v.model_id AND c.deleted_at IS NULL)
                   AS compressed_from_model_id,
               (SELECT COUNT(*) FROM compression_tasks c
                 WHERE c.source_model_id = v.model_id AND c.deleted_at IS NULL)
                   AS compression_tasks_as_source,
               e.state AS export_state,
               (SELECT COUNT(*) FROM services s
                 WHERE s.model_id = v.model_id AND s.deleted_at IS NULL) AS services,
               (SELECT COUNT(*) FROM services s
                 WHERE s.model_id = v.model_id AND s.deleted_at IS NULL
                   AND s.run_status = 'Serving') AS services_serving,
               le.task_id AS latest_eval_task_id,
               le.task_name AS latest_eval_task_name,
               le.state AS latest_eval_state,
               le.headline_metric AS latest_eval_metric,
               le.headline_value AS latest_eval_value
          FROM model_versions v
          LEFT JOIN fine_tuning_tasks ft
                 ON ft.task_id = v.train_task_id AND ft.deleted_at IS NULL
          LEFT JOIN fine_tuning_jobs j ON j.job_id = ft.job_id AND j.deleted_at IS NULL
          LEFT JOIN model_exports e ON e.model_id = v.model_id AND e.deleted_at IS NULL
          LEFT JOIN latest_eval le ON le.model_id = v.model_id AND le.rn = 1
         WHERE v.deleted_at IS NULL
        """
    )


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS lineage_model_versions")
