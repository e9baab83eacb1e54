"""Fine-tuning jobs (精调作业): one paged listing, DescribeFineTuningJobs.

The listing's create-time field is cut off in the documents; the SDK's mock calls it
``createDate``, and both names are read.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from sqlalchemy import Column, ColumnElement, String, Text, true

from catalog.documented import fields
from catalog.events import LISTING, Keep, Record
from catalog.kinds.base import DeleteView, Kind, Pages, Walk, list_items
from catalog.normalize import (
    NormalizeError,
    as_text,
    field_of,
    fits,
    parse_time,
    require_id,
)
from catalog.types import UTCDateTime

ROUTE = "/v2/finetuning"
LIST = "DescribeFineTuningJobs"
#: The listing's items (REFERENCE §9).
LIST_KEY = "jobList"
ALL = "*"

KEY = Column("job_id", String(64), primary_key=True)
COLUMNS = (
    Column("name", Text),
    Column("description", Text),
    Column("model", Text, comment="base model"),
    Column("train_mode", String(32), comment="SFT, PostPretrain, DPO, KTO (SDK's list)"),
    Column("create_time", UTCDateTime),
)
#: REFERENCE.md section 9: six fields, the last one's name cut off ("creat...").
CALLS = {LIST: fields("jobId", "name description model trainMode createDate createTime")}


def row(obj: Mapping[str, Any]) -> dict[str, Any]:
    created = obj.get("createDate") if obj.get("createDate") is not None else obj.get("createTime")
    return fits(
        "fine_tuning_jobs",
        {
            "job_id": require_id(obj, "jobId"),
            "name": field_of(obj, "name", as_text),
            "description": field_of(obj, "description", as_text),
            "model": field_of(obj, "model", as_text),
            "train_mode": field_of(obj, "trainMode", as_text),
            "create_time": parse_time(created, "createDate"),
            "raw": dict(obj),
        },
    )


def _start(walk: Walk, pages: Pages | None) -> None:
    # Scoped too: the listing is the account's, complete whatever sets are scoped.
    walk.submit(partial(_list, walk), LISTING)


def _list(walk: Walk) -> None:
    pages = walk.pages(LIST, {}, list_key=LIST_KEY, item_key="jobId", route=ROUTE)
    list_items(walk, "fine_tuning_job", LIST, pages, partial(_record, walk), ALL)


def _record(walk: Walk, item: dict[str, Any]) -> None:
    """Record a listed job at once, then let its tasks submit their listing."""
    job_id = str(item.get("jobId"))
    walk.drift.check("fine_tuning_job", LIST, item, job_id)
    try:
        built = row(item)
    except NormalizeError as exc:
        # Listed, so not deleted; its tasks are neither walked nor deleted.
        walk.fail("fine_tuning_job", LIST, job_id, exc)
        walk.emit(Keep("fine_tuning_job", job_id))
        return
    walk.emit(Record.of("fine_tuning_job", built["job_id"], item, built, LIST))
    walk.children("fine_tuning_job", built, False)


def _deletes(d: DeleteView) -> ColumnElement[bool] | None:
    return true() if d.whole("fine_tuning_job", ALL) else None


KIND = Kind(
    name="fine_tuning_job",
    table="fine_tuning_jobs",
    label="fine-tuning jobs",
    short="ft jobs",
    key=KEY,
    columns=COLUMNS,
    policy="QianfanReadAccessPolicy or QianfanModelTuningReadAccessPolicy",
    calls=CALLS,
    start=_start,
    deletes=_deletes,
)
