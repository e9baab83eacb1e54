"""No value in a JSON column is SQL NULL; task durations on SQLite to the millisecond; no stored
answer keeps a download link's signature.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 03:40:00

Written by hand; no table or column changes.

1. Until now a JSON column without a value held the JSON text ``null`` (SQLAlchemy's default),
   which ``IS NULL`` does not find on either database, nor a BI tool's "is empty" filter. The
   code now writes SQL NULL (``none_as_null``); here every stored JSON ``null`` in the entity
   and history tables becomes SQL NULL. A JSON string ``"null"`` is stored with its quotes and
   is left alone. ``raw`` and ``sync_runs.scope`` always hold an object and are not touched.
2. ``report_compression_tasks_by_status.avg_duration_seconds`` on SQLite came from
   ``julianday`` differences, a floating-point day count: 12843.99997740984 s for a task of
   12844 s. SQLite's date functions keep milliseconds, so the difference is now rounded to
   them; PostgreSQL's exact interval is unchanged.

3. A stored answer (``raw``) kept an export's pre-signed ``downloadUrl`` whole, a download
   credential while it lasts; the code now stores it without its query string, as the typed
   column always did. The stored answers of the three kinds that have one are cut here too
   (their hash never counted the query, so no run would rewrite them).

Downgrading puts the view back as it was and leaves the NULLs and the cut links: the code
before this revision reads SQL NULL and JSON ``null`` alike (both are None), and never read a
link's query.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Entity table -> its JSON columns that may hold no value (each also in ``<table>_history``).
JSON_COLUMNS = {
    "compression_tasks": ("config",),
    "eval_result_export_tasks": ("export_content",),
    "eval_task_reports": ("effect_metric",),
    "fine_tuning_tasks": ("metrics",),
    "model_sets": ("labels", "model_ids"),
    "model_versions": ("model_comp_configs",),
}

VIEW = "report_compression_tasks_by_status"
#: Tables whose stored answer may hold a pre-signed ``downloadUrl`` -> their API id column.
SIGNED = {
    "model_exports": "model_id",
    "eval_result_exports": "export_id",
    "eval_result_export_tasks": "task_id",
}


def _cut_signed_links() -> None:
    """Each stored ``downloadUrl`` without its query string; in Python, as SQLite builds
    without JSON functions exist (the exports are one per version: few rows)."""
    conn = op.get_bind()
    json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    for name, key in SIGNED.items():
        t = sa.table(name, sa.column("account"), sa.column(key), sa.column("raw", json))
        for account, ident, raw in conn.execute(sa.select(t.c.account, t.c[key], t.c.raw)):
            url = raw.get("downloadUrl") if isinstance(raw, dict) else None
            if isinstance(url, str) and "?" in url:
                conn.execute(
                    t.update()
                    .where(t.c.account == account, t.c[key] == ident)
                    .values(raw={**raw, "downloadUrl": url.split("?", 1)[0]})
                )


def _view(duration: str) -> str:
    return f"""
        CREATE VIEW {VIEW} AS
        SELECT account, status, strategy,
               COUNT(*) AS tasks,
               COUNT(finish_time) AS finished,
               AVG(CASE WHEN finish_time IS NOT NULL AND create_time IS NOT NULL
                        THEN {duration} END) AS avg_duration_seconds
          FROM compression_tasks
         WHERE deleted_at IS NULL
         GROUP BY account, status, strategy
        """  # noqa: S608 -- {duration} is one of the constant expressions below, not input


def _postgresql() -> bool:
    return bool(op.get_bind().dialect.name == "postgresql")


def upgrade() -> None:
    json_type = sa.func.jsonb_typeof if _postgresql() else sa.func.json_type
    for table, columns in JSON_COLUMNS.items():
        for name in (table, f"{table}_history"):
            for column in columns:
                t = sa.table(name, sa.column(column))
                op.execute(
                    t.update().where(json_type(t.c[column]) == "null").values({column: sa.null()})
                )
    if not _postgresql():
        op.execute(f"DROP VIEW {VIEW}")
        op.execute(
            _view("ROUND((julianday(finish_time) - julianday(create_time)) * 86400.0, 3)")
        )
    _cut_signed_links()


def downgrade() -> None:
    if not _postgresql():
        op.execute(f"DROP VIEW {VIEW}")
        op.execute(_view("((julianday(finish_time) - julianday(create_time)) * 86400.0)"))
