"""Evaluation tasks (评估任务): a paged listing per ``evalType``, the detail when needed,
and, for a task that reached a final state, its report (``eval_task_reports``).

DescribeEvalTasks' item fields are not visible in the documents, so a task new or changed since
stored is described (DescribeEvalTask); when it has ended, DescribeEvalTaskReport gives one row
per evaluated unit. ``state`` keeps the vendor's spelling (``Successed``).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from sqlalchemy import Column, ColumnElement, String, Text

from catalog.documented import fields
from catalog.events import LISTING, VERSION, Record, back_from_detail
from catalog.kinds import eval_task_reports as reports
from catalog.kinds.base import (
    DeleteView,
    Kind,
    Walk,
    answered_by,
    ask_detail,
    incomplete_after,
    list_records,
)
from catalog.normalize import (
    as_text,
    field_of,
    fits,
    parse_time,
    require_id,
)
from catalog.types import UTCDateTime

ROUTE = "/v2/eval"
LIST, DETAIL = "DescribeEvalTasks", "DescribeEvalTask"
#: The listing's items (REFERENCE §7).
LIST_KEY = "evalTaskList"
EVAL_TYPES = ("manual", "auto")
#: States after which a task's report no longer changes (REFERENCE.md section 7).
FINAL = ("Successed", "Failed", "Stopped")

KEY = Column("task_id", String(64), primary_key=True)
COLUMNS = (
    Column("task_name", Text),
    Column("description", Text),
    Column("eval_type", String(16), comment="manual or auto"),
    Column(
        "state",
        String(40),
        comment="Queued, Running, RunningWithManualBegin, RunningWithMetricsCalculating, "
        "Successed (sic), Stopping, Failed, Stopped",
    ),
    Column("create_time", UTCDateTime),
)
#: REFERENCE.md section 7: the listing's item fields are not visible (a field the detail
#: documents counts as known there too); the detail's visible part lists five. No create time
#: is documented at all: the column is read if an answer carries ``createTime``.
CALLS = {
    LIST: fields("taskId", "taskName description evalType state"),
    DETAIL: fields("taskId state", "taskName description evalType"),
}


def row(obj: Mapping[str, Any], eval_type: str | None = None) -> dict[str, Any]:
    return fits(
        "eval_tasks",
        {
            "task_id": require_id(obj, "taskId"),
            "task_name": field_of(obj, "taskName", as_text),
            "description": field_of(obj, "description", as_text),
            "eval_type": field_of(obj, "evalType", as_text) or eval_type,
            "state": field_of(obj, "state", as_text),
            "create_time": parse_time(obj.get("createTime"), "createTime"),
            "raw": dict(obj),
        },
    )


def _start(walk: Walk, pages: Any) -> None:
    # Scoped too: the listings are the account's, complete whatever sets are scoped.
    for eval_type in EVAL_TYPES:
        walk.submit(partial(_list, walk, eval_type), LISTING)


def _list(walk: Walk, eval_type: str) -> None:
    pages = walk.pages(
        LIST, {"evalType": eval_type}, list_key=LIST_KEY, item_key="taskId", route=ROUTE
    )
    build = partial(row, eval_type=eval_type)
    list_records(
        walk, "eval_task", LIST, pages, "taskId", build, eval_type, whole=True, listing=eval_type
    )


def _detail(walk: Walk, listed: Record) -> None:
    walk.submit(partial(_describe, walk, listed), VERSION)


def _describe(walk: Walk, listed: Record) -> None:
    """The task's detail, then its report if it has ended."""
    task_id = str(listed.key)
    built = ask_detail(walk, listed, DETAIL, {"taskId": task_id}, row, ROUTE, id_field="taskId")
    state = built()["state"] if built is not None else listed.obj.get("state")
    # Ended: its report is final. Was ended and no longer is (re-run): its report is asked
    # again too, and that answer (maybe empty) is the complete list of its units now.
    was = (listed.previous or {}).get("state")
    reported = True
    if (state in FINAL or was in FINAL) and walk.enabled("eval_task_report"):
        reported = reports.fetch(walk, task_id)
    # A detail or report that failed: stored without a hash, so the next run asks again.
    missing = incomplete_after(walk, listed, DETAIL, built)
    walk.emit(back_from_detail(listed, built, missing, keep_hash=built is not None and reported))


def _deletes(d: DeleteView) -> ColumnElement[bool] | None:
    """Tasks of an ``evalType`` whose listing completed without them."""
    listed = [t for t in EVAL_TYPES if d.whole("eval_task", t)]
    return d.table("eval_task").c.eval_type.in_(listed) if listed else None


KIND = Kind(
    name="eval_task",
    table="eval_tasks",
    label="evaluation tasks",
    short="eval tasks",
    key=KEY,
    columns=COLUMNS,
    policy="QianfanReadAccessPolicy or QianfanModelTuningReadAccessPolicy",
    calls=CALLS,
    start=_start,
    wants_detail=lambda obj: True,
    detail=_detail,
    detail_context=("state",),
    deletes=_deletes,
    confirm=answered_by(DETAIL, "taskId", "taskId", ROUTE),
)
