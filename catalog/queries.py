"""Read-only SQL shared by the CLI and the HTML report: each function returns ``(columns, rows)``.

Nothing here writes. Rows are plain tuples whose values are Python objects (timestamps are
timezone-aware UTC ``datetime``s on both SQLite and PostgreSQL, because the report views are
declared below with the project's ``UTCDateTime`` type), so the renderers in ``catalog.output``
and the HTML report format them one way whatever the backend.

The report views themselves are created by migration 0002; the ``Table`` objects here live on
their own ``MetaData`` so Alembic's autogenerate never mistakes them for tables to create.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    Connection,
    Float,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    Text,
    and_,
    literal,
    or_,
    select,
)

from catalog.kinds import KINDS
from catalog.schema import SPECS, changes, sync_runs
from catalog.types import UTCDateTime

#: Column names and rows: a list, or, on a connection that streams (``stream_results``), an
#: iterator read as it is consumed, so that a large CSV or JSON export is never held whole.
Result = tuple[list[str], Iterable[tuple[Any, ...]]]

_views = MetaData()

report_versions_by_model_set = Table(
    "report_versions_by_model_set",
    _views,
    Column("account", String),
    Column("model_set_id", String),
    Column("model_set_name", Text),
    Column("is_system", Boolean),
    Column("versions", Integer),
    Column("model_id", String),
    Column("model_name", Text),
    Column("status", String),
    Column("source_type", String),
    Column("version_create_time", UTCDateTime),
    Column("export_id", String),
    Column("export_state", String),
    Column("export_file_size", BigInteger),
)
report_compression_tasks_by_status = Table(
    "report_compression_tasks_by_status",
    _views,
    Column("account", String),
    Column("status", String),
    Column("strategy", String),
    Column("tasks", Integer),
    Column("finished", Integer),
    Column("avg_duration_seconds", Float),
)
report_exports = Table(
    "report_exports",
    _views,
    Column("account", String),
    Column("model_id", String),
    Column("model_name", Text),
    Column("model_set_id", String),
    Column("model_set_name", Text),
    Column("export_id", String),
    Column("state", String),
    Column("file_name", Text),
    Column("file_type", String),
    Column("file_size", BigInteger),
    Column("md5", String),
    Column("download_url", Text),
)
report_latest_changes = Table(
    "report_latest_changes",
    _views,
    Column("account", String),
    Column("run_id", Integer),
    Column("run_started_at", UTCDateTime),
    Column("run_status", String),
    Column("kind", String),
    Column("entity_id", Text),
    Column("operation", String),
    Column("field", String),
    Column("old_value", Text),
    Column("new_value", Text),
    Column("change_id", BigInteger),
)

lineage_model_versions = Table(
    "lineage_model_versions",
    _views,
    Column("account", String),
    Column("model_id", String),
    Column("model_name", Text),
    Column("model_set_id", String),
    Column("model_set_name", Text),
    Column("status", String),
    Column("source_type", String),
    Column("fine_tuning_task_id", String),
    Column("fine_tuning_task_status", String),
    Column("fine_tuning_job_id", String),
    Column("fine_tuning_job_name", Text),
    Column("compressed_by_task_id", String),
    Column("compressed_from_model_id", String),
    Column("compression_tasks_as_source", Integer),
    Column("export_state", String),
    Column("services", Integer),
    Column("services_serving", Integer),
    Column("latest_eval_task_id", String),
    Column("latest_eval_task_name", Text),
    Column("latest_eval_state", String),
    Column("latest_eval_metric", Text),
    Column("latest_eval_value", Float),
)

#: Report name -> (view, ORDER BY columns). Names are what ``qianfan-catalog report NAME`` takes.
REPORTS: dict[str, tuple[Table, tuple[str, ...]]] = {
    "versions_by_model_set": (report_versions_by_model_set, ("account", "model_set_name",
                                                             "model_set_id", "model_id")),
    "compression_tasks_by_status": (report_compression_tasks_by_status,
                                    ("account", "status", "strategy")),
    "exports": (report_exports, ("account", "model_set_name", "model_name", "model_id")),
    "latest_changes": (report_latest_changes, ("change_id",)),
    "lineage": (lineage_model_versions, ("account", "model_set_name", "model_name", "model_id")),
}
REPORT_NAMES = tuple(REPORTS)
#: One line per report (fits 80 columns), for ``qianfan-catalog report`` without a name.
REPORT_DESCRIPTIONS = {
    "versions_by_model_set": "model sets, their versions and export states",
    "compression_tasks_by_status": "compression tasks per status and strategy",
    "exports": "model exports: state, file, size, MD5",
    "latest_changes": "the last run's changes, and killed runs' before it",
    "lineage": "per version: where it came from, where it runs",
}


class QueryError(ValueError):
    """A bad argument to a query (unknown kind, report or timestamp); the message is one line."""


def whose(table: Any, account: str | None) -> list[ColumnElement[bool]]:
    """The filter on one account's rows of ``table`` (a table or view with an ``account``
    column); none without an account: every read shows all accounts unless told one."""
    return [] if account is None else [table.c.account == account]


def keyed_whose(table: Any, account: str | None) -> list[ColumnElement[bool]]:
    """``whose`` for a lookup through an index that starts with ``account``: without an account,
    each account that ever ran a sync (every row was written by one), so that the index still
    serves it instead of a scan of every account's rows."""
    if account is not None:
        return [table.c.account == account]
    return [table.c.account.in_(select(sync_runs.c.account).distinct())]


def valid_at(history: Any, moment: dt.datetime) -> list[ColumnElement[bool]]:
    """The filter on the versions of a history table valid at ``moment``: a version is valid on
    ``[valid_from, valid_to)``, so a run's own timestamp shows the state that run left behind."""
    return [
        history.c.valid_from <= moment,
        or_(history.c.valid_to.is_(None), history.c.valid_to > moment),
    ]


def _result(conn: Connection, stmt: Select[Any]) -> Result:
    res = conn.execute(stmt)
    columns = list(res.keys())
    if conn.get_execution_options().get("stream_results"):
        return columns, (tuple(row) for row in res)
    return columns, [tuple(row) for row in res]


def check_kind(kind: str) -> str:
    if kind not in SPECS:
        raise QueryError(f"unknown kind {kind!r}; expected one of: {', '.join(KINDS)}")
    return kind


_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_FRACTION = re.compile(r"\d[.,]\d")


def parse_timestamp(text: str, whole_second: bool = False) -> dt.datetime:
    """ISO 8601 to an aware UTC datetime; a time without a zone is taken as UTC, as stored.

    Accepts ``2024-06-01``, ``2024-06-01T12:00:00``, ``2024-06-01 12:00:00+08:00`` and a
    trailing ``Z``. Anything else is a ``QueryError`` naming the accepted forms.

    ``whole_second``: a time of day without a fraction means the last instant of that second.
    Output prints times to the second, so a run's printed ``started_at`` is up to a second
    before the stored one; read this way, it still includes that run.
    """
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise QueryError(
            f"cannot parse timestamp {text!r}: use ISO 8601, e.g. 2024-06-01, "
            "2024-06-01T12:00:00Z or 2024-06-01T20:00:00+08:00"
        ) from None
    date_only = _DATE_ONLY.match(value) is not None
    if date_only or parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    if whole_second and not date_only and not _FRACTION.search(value):
        parsed += dt.timedelta(microseconds=999_999)
    return parsed.astimezone(dt.UTC)


# -- runs and changes -------------------------------------------------------------------------


#: The columns of ``runs`` that fit an 80-column table; CSV and JSON get them all.
RUNS_TABLE_COLUMNS = ("run_id", "started_at", "status", "seconds", "new", "changed", "deleted",
                      "errors")


def recent_runs(conn: Connection, limit: int = 20, account: str | None = None) -> Result:
    """Recent runs (of one account, or all), newest first, with their totals over all entity
    kinds.

    ``new`` counts inserts and restores, ``changed`` updates; ``seconds`` is the run's duration
    (computed here, so it reads the same on both databases).
    """
    r = sync_runs.c

    def total(what: str) -> Any:
        expr: Any = literal(0)
        for kind in KINDS:
            expr = expr + r[f"{kind}_{what}"]
        return expr

    stmt = (
        select(
            r.run_id, r.account, r.started_at, r.finished_at, r.status,
            total("seen").label("seen"), total("inserted").label("new"),
            total("updated").label("changed"), total("deleted").label("deleted"),
            r.errors, r.api_calls, r.api_retries, r.error,
        )
        .order_by(r.run_id.desc())
        .limit(limit)
    )
    stmt = stmt.where(*whose(sync_runs, account))
    res = conn.execute(stmt)
    columns = list(res.keys())
    columns.insert(columns.index("status") + 1, "seconds")
    rows = []
    for row in res.mappings():
        end = row["finished_at"]
        seconds = None if end is None else round((end - row["started_at"]).total_seconds(), 1)
        values = [row[c] for c in columns if c != "seconds"]
        values.insert(columns.index("seconds"), seconds)
        rows.append(tuple(values))
    return columns, rows


def select_columns(result: Result, wanted: Sequence[str]) -> Result:
    """Only ``wanted`` columns of a result, in that order (e.g. what fits a terminal)."""
    columns, rows = result
    index = [columns.index(c) for c in wanted]
    return list(wanted), [tuple(row[i] for i in index) for row in rows]


def changes_query(
    conn: Connection,
    *,
    run_id: int | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    kind: str | None = None,
    account: str | None = None,
) -> Result:
    """Change rows, oldest first; ``since``/``until`` compare with the run timestamp (``since``
    inclusive, ``until`` exclusive), so two dates give exactly the changes between them."""
    c = changes.c
    stmt = select(
        c.run_id, c.account, c.changed_at, c.kind, c.entity_id, c.operation, c.field,
        c.old_value, c.new_value,
    ).order_by(c.change_id)
    # By time or kind through the indexes that start with the account; by run through its own.
    by_account = run_id is None and (since, until, kind) != (None, None, None)
    stmt = stmt.where(*(keyed_whose if by_account else whose)(changes, account))
    if run_id is not None:
        stmt = stmt.where(c.run_id == run_id)
    if since is not None:
        stmt = stmt.where(c.changed_at >= since)
    if until is not None:
        stmt = stmt.where(c.changed_at < until)
    if kind is not None:
        stmt = stmt.where(c.kind == check_kind(kind))
    return _result(conn, stmt)


# -- history ----------------------------------------------------------------------------------


def as_of(
    conn: Connection, kind: str, moment: dt.datetime, account: str | None = None
) -> Result:
    """The entities of ``kind`` (of one account, or all) as they were at ``moment``: the
    history versions valid then.

    A version is valid on ``[valid_from, valid_to)``; ``moment`` equal to a run's timestamp
    therefore shows the state that run left behind.
    """
    spec = SPECS[check_kind(kind)]
    h = spec.history
    stmt = (
        select(h.c.account, h.c[spec.key], *(h.c[name] for name in spec.tracked))
        .where(*valid_at(h, moment))
        .order_by(h.c.account, h.c[spec.key])
    )
    stmt = stmt.where(*whose(h, account))
    return _result(conn, stmt)


def _key_value(kind: str, entity_id: str) -> Any:
    spec = SPECS[kind]
    if isinstance(spec.key_column.type, BigInteger | Integer):
        try:
            return int(entity_id)
        except ValueError:
            raise QueryError(f"{kind} ids are integers, not {entity_id!r}") from None
    return entity_id


def history(
    conn: Connection, kind: str, entity_id: str, account: str | None = None
) -> Result:
    """Every version of one entity (in one account, or in each that has the id), oldest first,
    with the runs that opened and closed it."""
    spec = SPECS[check_kind(kind)]
    h = spec.history
    stmt = (
        select(
            h.c.account, h.c.valid_from, h.c.valid_to, h.c.valid_from_run_id,
            h.c.valid_to_run_id, h.c[spec.key], *(h.c[name] for name in spec.tracked),
        )
        .where(h.c[spec.key] == _key_value(kind, entity_id))
        .order_by(h.c.account, h.c.valid_from, h.c.history_id)
    )
    stmt = stmt.where(*keyed_whose(h, account))
    return _result(conn, stmt)


def entity_changes(
    conn: Connection, kind: str, entity_id: str, account: str | None = None
) -> Result:
    """The change rows of one entity, oldest first (what ``history`` shows as whole versions)."""
    c = changes.c
    stmt = (
        select(c.run_id, c.account, c.changed_at, c.operation, c.field, c.old_value,
               c.new_value)
        .where(and_(c.kind == check_kind(kind), c.entity_id == str(_key_value(kind, entity_id))))
        .order_by(c.change_id)
    )
    stmt = stmt.where(*keyed_whose(changes, account))
    return _result(conn, stmt)


# -- reports ----------------------------------------------------------------------------------


def report_view(name: str) -> Table:
    if name not in REPORTS:
        raise QueryError(f"unknown report {name!r}; expected one of: {', '.join(REPORT_NAMES)}")
    return REPORTS[name][0]


def report(
    conn: Connection,
    name: str,
    columns: Sequence[str] | None = None,
    account: str | None = None,
) -> Result:
    """All rows of one report view (of one account, or all) in a stable order (optionally only
    some columns)."""
    view = report_view(name)
    order = REPORTS[name][1]
    cols = [view.c[c] for c in columns] if columns else list(view.c)
    stmt = select(*cols).order_by(*(view.c[c].asc().nulls_last() for c in order))
    stmt = stmt.where(*whose(view, account))
    return _result(conn, stmt)


def accounts(conn: Connection) -> list[str]:
    """The accounts that have run a sync into this database."""
    stmt = select(sync_runs.c.account).distinct().order_by(sync_runs.c.account)
    return list(conn.execute(stmt).scalars())
