"""One model version's chain: where it came from, what was made of it, where it runs, how it
scored; as it is now, or as it was at a moment (from the history tables).

``lineage_model_versions`` (a view) answers the same for every version at once, now; this
module follows the links one entity at a time, so the same code reads current rows or the
history versions valid at a moment.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ColumnElement, Connection, select

from catalog.queries import QueryError, Result, keyed_whose, valid_at
from catalog.schema import SPECS

COLUMNS = ["step", "kind", "id", "name", "state", "detail"]


def _linked(
    conn: Connection,
    kind: str,
    column: str,
    value: Any,
    moment: dt.datetime | None,
    account: str | None,
) -> list[dict[str, Any]]:
    """Entities of ``kind`` whose ``column`` equals ``value``: alive now, or valid at
    ``moment``; of ``account`` (None: of any)."""
    spec = SPECS[kind]
    if moment is None:
        t = spec.table
        where: list[ColumnElement[bool]] = [t.c.deleted_at.is_(None)]
    else:
        t = spec.history
        where = valid_at(t, moment)
    where += keyed_whose(t, account)
    # Sorted here: an ORDER BY in the primary key's order led SQLite (no statistics) to walk
    # the account's rows by that key instead of looking ``column`` up in its index.
    rows = [dict(r) for r in conn.execute(select(t).where(t.c[column] == value, *where)).mappings()]
    return sorted(rows, key=lambda row: (row["account"], row[spec.key]))


def lineage(
    conn: Connection,
    model_id: str,
    moment: dt.datetime | None = None,
    account: str | None = None,
) -> Result:
    """The chain of one version, one row per linked entity, in the order a reader follows it.

    Without ``account`` the version's id must name a version in one account only: two
    accounts may hold the same id, and their chains are not one.
    """
    versions = _linked(conn, "model_version", "model_id", model_id, moment, account)
    when = f" at {moment.isoformat()}" if moment else ""
    if not versions:
        whose = f" in account {account!r}" if account is not None else ""
        raise QueryError(f"no such model_version {model_id}{whose}{when}")
    accounts = sorted({v["account"] for v in versions})
    if len(accounts) > 1:
        raise QueryError(
            f"model_version {model_id} exists in accounts {', '.join(accounts)}{when}: "
            "choose one with --account"
        )
    version = versions[0]

    def linked(kind: str, column: str, value: Any) -> list[dict[str, Any]]:
        return _linked(conn, kind, column, value, moment, version["account"])

    out: list[tuple[Any, ...]] = []

    def add(step: str, kind: str, key: Any, name: Any, state: Any, detail: Any = None) -> None:
        out.append((step, kind, key, name, state, detail))

    for task in linked("fine_tuning_task", "task_id", version["train_task_id"]):
        for job in linked("fine_tuning_job", "job_id", task["job_id"]):
            add("trained by job", "fine_tuning_job", job["job_id"], job["name"], None,
                job["model"])
        add("trained by task", "fine_tuning_task", task["task_id"], task["job_name"],
            task["run_status"], task["parameter_scale"])
    for made in linked("compression_task", "model_id", model_id):
        add("compressed from", "compression_task", made["task_id"], made["name"],
            made["status"], made["source_model_id"])
    for model_set in linked("model_set", "model_set_id", version["model_set_id"]):
        add("in model set", "model_set", model_set["model_set_id"],
            model_set["model_set_name"], None, model_set["source"])
    add("version", "model_version", model_id, version["model_name"], version["status"],
        version["source_type"])
    for task in linked("compression_task", "source_model_id", model_id):
        add("compressed into", "compression_task", task["task_id"], task["name"],
            task["status"], task["model_id"] or task["failed_reason"])
    for export in linked("model_export", "model_id", model_id):
        add("exported", "model_export", export["export_id"], export["file_name"],
            export["state"], export["file_size"])
    for service in linked("service", "model_id", model_id):
        add("runs as", "service", service["service_id"], service["name"],
            service["run_status"], service["endpoint"])
    exported: set[str] = set()
    for unit in linked("eval_task_report", "model_id", model_id):
        tasks = linked("eval_task", "task_id", unit["task_id"])
        state = tasks[0]["state"] if tasks else None
        metric = (f"{unit['headline_metric']}={unit['headline_value']:g}"
                  if unit["headline_metric"] and unit["headline_value"] is not None else None)
        add("evaluated by", "eval_task", unit["task_id"], unit["task_name"], state, metric)
        if unit["task_id"] in exported:  # one task, several units: its exports once
            continue
        exported.add(unit["task_id"])
        # Stored only when eval_result_export_task is on and the task tracked (no listing).
        for task in linked("eval_result_export_task", "eval_id", unit["task_id"]):
            add("results exported", "eval_result_export_task", task["task_id"],
                task["storage_type"], task["state"], task["download_url"] or task["storage_path"])
    return COLUMNS, out
