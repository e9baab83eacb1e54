"""Fine-tuning tasks (精调任务): one paged listing per job, a detail call when needed.

DescribeFineTuningTask answers the metrics, the visualisation link and (while running) the
progress; it is asked for a task that is new or changed since stored, and every run while the
task is still running. A version whose ``sourceInfo`` names a train task links to it (lineage).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from sqlalchemy import Column, ColumnElement, String, Text

from catalog.documented import fields
from catalog.events import VERSION, Record, back_from_detail
from catalog.kinds.base import (
    DeleteView,
    Kind,
    Walk,
    answered_by,
    ask_detail,
    incomplete_after,
    list_records,
    within_parents,
)
from catalog.normalize import (
    as_text,
    field_of,
    fits,
    parse_time,
    require_id,
)
from catalog.types import JsonValue, UTCDateTime

ROUTE = "/v2/finetuning"
LIST, DETAIL = "DescribeFineTuningTasks", "DescribeFineTuningTask"
#: The listing's items (REFERENCE §9).
LIST_KEY = "taskList"
RUNNING = "Running"

KEY = Column("task_id", String(64), primary_key=True)
COLUMNS = (
    Column("job_id", String(64), index=True),
    Column("job_name", Text),
    Column("job_description", Text),
    Column("model", Text, comment="base model"),
    Column("train_mode", String(32)),
    Column("parameter_scale", String(32), comment="FullFineTuning, PromptTuning, LoRA"),
    Column("run_status", String(16), comment="Running, Done, Stopped, Failed, Waiting"),
    Column("run_progress", String(16), comment="only while Running"),
    Column("vdl_link", Text, comment="training visualisation link"),
    Column("metrics", JsonValue, comment="metric name -> value, once done"),
    Column("create_time", UTCDateTime),
    Column("finish_time", UTCDateTime, comment="NULL while not finished"),
)
#: Only the detail call answers these: a listing item alone keeps the stored values.
CARRIED = ("run_progress", "vdl_link", "metrics")
#: REFERENCE.md section 9; the listing's items past the first six are not visible (the SDK's
#: mock adds parameterScale, runStatus, createDate, finishDate).
CALLS = {
    LIST: fields(
        "taskId jobId",
        "jobName jobDescription model trainMode parameterScale runStatus createDate finishDate",
    ),
    DETAIL: fields(
        "taskId jobId",
        "jobName jobDescription model trainMode parameterScale runStatus runProgress vdlLink "
        "metrics createDate finishDate",
    ),
}


def row(obj: Mapping[str, Any], detailed: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "task_id": require_id(obj, "taskId"),
        "job_id": field_of(obj, "jobId", as_text),
        "job_name": field_of(obj, "jobName", as_text),
        "job_description": field_of(obj, "jobDescription", as_text),
        "model": field_of(obj, "model", as_text),
        "train_mode": field_of(obj, "trainMode", as_text),
        "parameter_scale": field_of(obj, "parameterScale", as_text),
        "run_status": field_of(obj, "runStatus", as_text),
        "create_time": parse_time(obj.get("createDate"), "createDate"),
        # The SDK's mock writes "0000-00-00T00:00:00Z" for a task not finished yet.
        "finish_time": _finish(obj.get("finishDate")),
        "raw": dict(obj),
    }
    if detailed:
        # Stored as answered: the field's name is cut off in the documents ("metr..."), and
        # only the SDK's mock shows it as an object (REFERENCE §9).
        out.update(
            run_progress=field_of(obj, "runProgress", as_text),
            vdl_link=field_of(obj, "vdlLink", as_text),
            metrics=obj.get("metrics"),
        )
    return fits("fine_tuning_tasks", out)


def _finish(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("0000-00-00"):
        return None
    return parse_time(value, "finishDate")


def _of_job(walk: Walk, job: dict[str, Any], system: bool) -> None:
    walk.submit(partial(_list, walk, job["job_id"]), VERSION)


def _list(walk: Walk, job_id: str) -> None:
    pages = walk.pages(LIST, {"jobId": job_id}, list_key=LIST_KEY, item_key="taskId", route=ROUTE)
    list_records(
        walk, "fine_tuning_task", LIST, pages, "taskId", row, job_id, whole=False, listing=job_id
    )


def _detail(walk: Walk, listed: Record) -> None:
    walk.submit(partial(_describe, walk, listed), VERSION)


def _describe(walk: Walk, listed: Record) -> None:
    """The detail; if it fails, the listing's row with no hash, so the next run asks again."""
    built = ask_detail(
        walk, listed, DETAIL, {"taskId": listed.key}, partial(row, detailed=True), ROUTE,
        id_field="taskId",
    )
    walk.emit(back_from_detail(listed, built, incomplete_after(walk, listed, DETAIL, built)))


def _deletes(d: DeleteView) -> ColumnElement[bool] | None:
    """Tasks a completed job listing did not name, and the tasks of deleted jobs."""
    return within_parents(d, "fine_tuning_task", "job_id", "fine_tuning_job")


KIND = Kind(
    name="fine_tuning_task",
    table="fine_tuning_tasks",
    label="fine-tuning tasks",
    short="ft tasks",
    key=KEY,
    columns=COLUMNS,
    policy="QianfanReadAccessPolicy or QianfanModelTuningReadAccessPolicy",
    calls=CALLS,
    carried=CARRIED,
    parent="fine_tuning_job",
    on_parent={"fine_tuning_job": _of_job},
    wants_detail=lambda obj: True,
    always_detail=lambda obj: obj.get("runStatus") == RUNNING,
    detail=_detail,
    deletes=_deletes,
    confirm=answered_by(DETAIL, "taskId", "taskId", ROUTE),
)
