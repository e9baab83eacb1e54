"""Compression tasks (压缩任务): one paged listing (or one per version, scoped).

The listing lacks ``failedReason``; DescribeModelCompTask answers it, and is asked once per
failed task that is new or changed since it was stored (the writer decides, by the answer's
hash). The reason is a carried column: a row from the listing alone keeps the stored reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from sqlalchemy import Column, ColumnElement, Float, String, Text, true

from catalog.documented import fields
from catalog.events import LISTING, VERSION, Record, back_from_detail
from catalog.kinds.base import (
    DeleteView,
    Kind,
    Pages,
    Walk,
    answered_by,
    ask_detail,
    incomplete_after,
    list_records,
)
from catalog.normalize import (
    NormalizeError,
    as_float,
    as_text,
    field_of,
    fits,
    obj_at,
    parse_time,
    require_id,
    state_of,
)
from catalog.types import JsonValue, UTCDateTime

LIST, DETAIL = "DescribeModelCompTasks", "DescribeModelCompTask"
#: The listing's items (REFERENCE §4, seed 002).
LIST_KEY = "modelCompTaskList"
#: Scope key of the whole listing (a scoped walk's scopes are version ids).
ALL = "*"

KEY = Column("task_id", String(64), primary_key=True)
COLUMNS = (
    Column("name", Text),
    Column("description", Text),
    Column("status", String(32), comment="creating running succeeded failed stopping stopped"),
    # Indexed for lineage (the tasks made from a version, the task that made it). Alone, not
    # after the account: without statistics (a table a first sync has just filled) PostgreSQL
    # took such an index's account prefix for the writer's lookups by key, a scan of the account
    # per key. History copies the column without the index: every change writes there.
    Column("source_model_id", String(64), index=True),
    Column("model_id", String(64), index=True, comment="the compressed version; NULL when failed"),
    Column("strategy", String(32), comment="config.strategy: Quantization or Sparsity"),
    Column("quant_conf", String(64)),
    Column("sparsity_ratio", Float),
    Column("config", JsonValue),
    Column(
        "failed_reason",
        Text,
        comment="DescribeModelCompTask's failedReason; fetched once per failed task",
    ),
    Column("create_time", UTCDateTime),
    Column("finish_time", UTCDateTime),
)
#: REFERENCE.md section 4 and seed 002, whose item table names the listing's source and output
#: versions and times (``sourceModelId``, ``modelId``, ``createTime``, ``finishTime``).
CALLS = {
    LIST: fields(
        "id name status", "description sourceModelId modelId createTime finishTime config"
    ),
    DETAIL: fields(
        "id name status",
        "description failedReason sourceModelId modelId config createTime finishTime",
    ),
}


def row(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A task from a listing item, or from a listing item merged with DescribeModelCompTask.

    Only the detail call answers ``failedReason``; a failed task's row from the listing alone
    has no ``failed_reason`` key at all, so the store keeps the reason it has (``None`` would
    erase it). An empty reason is kept as ``''``: NULL means "not asked yet", or not failed.
    """
    config = obj_at(obj, "config")
    out = fits(
        "compression_tasks",
        {
            "task_id": require_id(obj, "id"),
            "name": field_of(obj, "name", as_text),
            "description": field_of(obj, "description", as_text),
            "status": state_of(obj),
            "source_model_id": field_of(obj, "sourceModelId", as_text),
            "model_id": field_of(obj, "modelId", as_text),
            "strategy": field_of(config, "strategy", as_text),
            "quant_conf": field_of(config, "quantConf", as_text),
            "sparsity_ratio": field_of(config, "sparsityRatio", as_float),
            "config": obj.get("config"),
            "create_time": parse_time(obj.get("createTime"), "createTime"),
            "finish_time": parse_time(obj.get("finishTime"), "finishTime"),
            "raw": dict(obj),
        },
    )
    if out["status"] != "failed":
        out["failed_reason"] = None  # a reason belongs to a failed task only
    elif "failedReason" in obj:
        reason = obj["failedReason"]
        if reason is not None and not isinstance(reason, str):
            raise NormalizeError(f"failedReason: expected text, got {type(reason).__name__}")
        out["failed_reason"] = reason or ""
    return out



def _pages(walk: Walk, source_model_id: str | None) -> Pages:
    body = {"sourceModelId": source_model_id} if source_model_id else {}
    return walk.pages(LIST, body, list_key=LIST_KEY, item_key="id")


def _start(walk: Walk, pages: Pages | None) -> None:
    if walk.scoped is None:  # scoped: one listing per version of the sets (see _of_set)
        walk.submit(partial(_list, walk, None, pages), LISTING)


def _of_set(walk: Walk, model_set: dict[str, Any], system: bool) -> None:
    if walk.scoped is not None:
        for model_id in model_set["model_ids"]:
            walk.submit(partial(_list, walk, model_id, None), VERSION)


def _list(walk: Walk, source_model_id: str | None, pages: Pages | None) -> None:
    """The account's whole listing, or (scoped) one version's: a scope of its own, inside which
    ``_deletes`` deletes what the listing did not name."""
    if pages is None:
        pages = _pages(walk, source_model_id)
    scope = source_model_id or ALL
    list_records(walk, "compression_task", LIST, pages, "id", row, scope,
                 whole=source_model_id is None, listing=source_model_id)


def _wants_detail(obj: Mapping[str, Any]) -> bool:
    return state_of(obj) == "failed"


def _detail(walk: Walk, listed: Record) -> None:
    walk.submit(partial(_describe, walk, listed), VERSION)


def _describe(walk: Walk, listed: Record) -> None:
    """Fetch a failed task's reason (the listing lacks it), then record the task.

    If the detail fails, a new task is recorded as listed, its reason unknown (NULL), and a
    stored one is left as it was (``Record.incomplete``); the next run asks again. The record
    keeps the listing item's hash, answered or not: the next run compares the listing's answer
    with it, and a reason still NULL (``Kind.unanswered``) is asked again whatever the hash."""
    built = ask_detail(
        walk, listed, DETAIL, {"modelCompTaskId": listed.key}, row, id_field="id"
    )
    missing = incomplete_after(walk, listed, DETAIL, built)
    walk.emit(back_from_detail(listed, built, missing, keep_hash=True))


def _deletes(d: DeleteView) -> ColumnElement[bool] | None:
    """Everything the whole listing did not name; scoped, what a version's listing did not."""
    if d.whole("compression_task", ALL):
        return true()
    return d.table("compression_task").c.source_model_id.in_(d.scope_keys("compression_task"))


KIND = Kind(
    name="compression_task",
    table="compression_tasks",
    label="compression tasks",
    short="tasks",
    key=KEY,
    columns=COLUMNS,
    policy="QianfanReadAccessPolicy or QianfanModelTuningReadAccessPolicy",
    calls=CALLS,
    carried=("failed_reason",),
    unanswered=("failed_reason",),
    parent="model_version",
    open_listing=lambda walk: _pages(walk, None),
    start=_start,
    on_parent={"model_set": _of_set},
    wants_detail=_wants_detail,
    detail=_detail,
    deletes=_deletes,
    confirm=answered_by(DETAIL, "modelCompTaskId", "id"),
)
