"""Evaluation reports (评估报告): one row per evaluated unit of an ended evaluation task.

DescribeEvalTaskReport answers a list; each unit is keyed by its task and what it evaluated
(a model version, or an inference result set) and the evaluation mode. A task's units are
fetched when the task is new or changed and has ended (see ``eval_tasks``); that answer is the
complete listing of the task's units, so a unit it no longer names is deleted, and the units of
a deleted task go with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from sqlalchemy import Column, ColumnElement, Float, String, Text

from catalog.bulk import answer_hash
from catalog.documented import fields
from catalog.errors import ApiError
from catalog.events import Record, ScopeDone
from catalog.kinds.base import DeleteView, Kind, Walk, within_parents
from catalog.normalize import (
    NormalizeError,
    as_text,
    field_of,
    fits,
    obj_at,
    require_id,
)
from catalog.types import JsonValue

ROUTE = "/v2/eval"
REPORT = "DescribeEvalTaskReport"

KEY = Column(
    "unit_id", String(255), primary_key=True, comment="task_id/what it evaluated/eval_mode"
)
COLUMNS = (
    Column("task_id", String(64), index=True),
    Column("task_name", Text),
    Column("model_id", String(64), index=True, comment="the model version evaluated, if one"),
    Column("infer_dataset_id", String(64), comment="the inference result set, if one"),
    Column("eval_object_type", String(16), comment="model or inferDataset"),
    Column("eval_mode", String(32), comment="rule, model, manual, rule,model"),
    Column("effect_metric", JsonValue, comment="metric name -> score"),
    Column(
        "headline_metric",
        Text,
        comment="the first metric by name (its key names are not documented)",
    ),
    Column("headline_value", Float),
)
#: REFERENCE.md section 7.
CALLS = {
    REPORT: fields(
        "taskId", "taskName modelId inferDatasetId evalObjectType evalMode effectMetric"
    ),
}


def unit_id(obj: Mapping[str, Any]) -> str:
    """The catalog's key of one unit (none is documented): its task, what it evaluated and its
    mode. What it evaluated is the id its ``evalObjectType`` names (REFERENCE §7 lists both ids
    on every unit: an ``inferDataset`` unit naming the model that produced the dataset was keyed
    as that model's own unit), else whichever id it has."""
    task_id = require_id(obj, "taskId")
    if obj.get("evalObjectType") == "inferDataset" and obj.get("inferDatasetId"):
        target = obj["inferDatasetId"]
    else:
        target = obj.get("modelId") or obj.get("inferDatasetId") or "-"
    return f"{task_id}/{target}/{obj.get('evalMode') or '-'}"


def row(obj: Mapping[str, Any]) -> dict[str, Any]:
    metrics = obj_at(obj, "effectMetric")
    numeric = sorted(
        (name, float(v)) for name, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    )
    headline = numeric[0] if numeric else (None, None)
    return fits(
        "eval_task_reports",
        {
            "unit_id": unit_id(obj),
            "task_id": field_of(obj, "taskId", as_text),
            "task_name": field_of(obj, "taskName", as_text),
            "model_id": field_of(obj, "modelId", as_text),
            "infer_dataset_id": field_of(obj, "inferDatasetId", as_text),
            "eval_object_type": field_of(obj, "evalObjectType", as_text),
            "eval_mode": field_of(obj, "evalMode", as_text),
            "effect_metric": metrics or None,
            "headline_metric": headline[0],
            "headline_value": headline[1],
            "raw": dict(obj),
        },
    )


def fetch(walk: Walk, task_id: str) -> bool:
    """Record every unit of one task's report (called from the task's detail task); False if
    the report could not be read."""
    if walk.denied("eval_task_report"):
        return False
    try:
        units = walk.client.call_list(REPORT, {"taskId": task_id}, ROUTE)
        keyed = [(unit_id(u), u) for u in units if isinstance(u, dict)]
        if len(keyed) != len(units):
            raise NormalizeError("result: a unit that is not an object")
        if len({key for key, _ in keyed}) != len(keyed):
            # The key is the catalog's own (no documented field tells units apart): two units
            # it cannot tell apart would be stored as one, the other's metrics lost.
            raise NormalizeError(
                "two units evaluate the same model or dataset in the same mode; the report is "
                "kept as stored"
            )
    except (ApiError, NormalizeError) as exc:
        walk.fail("eval_task_report", REPORT, task_id, exc)
        return False
    for key, unit in keyed:
        walk.drift.check("eval_task_report", REPORT, unit, key)
        walk.emit(Record("eval_task_report", key, unit, answer_hash(unit), partial(row, unit),
                         REPORT))
    walk.emit(ScopeDone("eval_task_report", task_id))
    return True


def _deletes(d: DeleteView) -> ColumnElement[bool] | None:
    """Units a fetched report no longer names, and the units of deleted tasks."""
    return within_parents(d, "eval_task_report", "task_id", "eval_task")


KIND = Kind(
    name="eval_task_report",
    table="eval_task_reports",
    label="evaluation report units",
    short="eval units",
    key=KEY,
    columns=COLUMNS,
    policy="QianfanReadAccessPolicy or QianfanModelTuningReadAccessPolicy",
    calls=CALLS,
    parent="eval_task",
    deletes=_deletes,
)
