"""Evaluation-result export tasks through the V2 call (DescribeEvalResultExportTask), by
tracked ``amemt-`` id. Off unless named in ``--kinds``.

REFERENCE.md section 6 documents the call as the V1 status route's replacement, but the
vendor's SDK says of its method "Not available currently": read by default, a call the service
does not answer would make every run partial. So a user turns it on (``--kinds ...,
eval_result_export_task``) after trying it.

No call lists these tasks either: the tracked refs that are ``amemt-`` ids are the listing
(``--eval-export-id``, ``eval track``). Every one is asked each run, and a task leaves the catalog
only when it is untracked, never because its call failed. Whether a V1 export's ``exportIDStr``
names the same task as this call's ``taskId`` is not documented, so each ref is read by one call
only: with this kind on, its ``amemt-`` refs are read here instead of by the V1 route
(``RefReader.instead_of``), and each answer is its own kind's row.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Column, ColumnElement, String, Text

from catalog.documented import fields
from catalog.events import Client
from catalog.kinds.base import DeleteView, Kind, RefReader, answers_for, read_tracked
from catalog.normalize import (
    NormalizeError,
    as_text,
    download_unsigned,
    field_of,
    fits,
    require_id,
    stable_url,
)
from catalog.types import JsonValue

ROUTE = "/v2/eval"
CALL = "DescribeEvalResultExportTask"
PREFIX = "amemt-"

KEY = Column("task_id", String(64), primary_key=True, comment="amemt-...")
COLUMNS = (
    Column("eval_id", String(64), index=True, comment="the evaluation task (eval_tasks.task_id)"),
    Column("state", String(16), comment="Queued, Running, Failed, Succeeded"),
    Column("storage_type", String(16), comment="BOS or sysStorage"),
    Column(
        "storage_path",
        Text,
        comment="the answer's field named ...Path (the documents name a storage path, not its key)",
    ),
    Column("download_url", Text, comment="without its rotating query string"),
    Column(
        "export_content",
        JsonValue,
        comment="what was exported: prompt, prediction, completion, metrics, system",
    ),
)
#: REFERENCE.md section 6, "V2 replacement". The storage path's key is not documented, so no
#: name is declared for it: drift shows the real one as "unknown". V1's page gives a link only
#: for system storage, so ``downloadUrl`` may be absent.
CALLS = {CALL: fields("taskId evalId exportContent state storageType", "downloadUrl")}


def _storage_path(obj: Mapping[str, Any]) -> str | None:
    """The text field whose name ends in "path" (any case; V1 calls it ``exportPath``), the
    first by name if several. **Assumption**: the documents say there is one, not its key."""
    names = sorted(k for k, v in obj.items() if k.lower().endswith("path") and isinstance(v, str))
    return as_text(obj[names[0]]) if names else None


def _content(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise NormalizeError("expected a list of strings")
    return list(value)


def row(obj: Mapping[str, Any]) -> dict[str, Any]:
    return fits(
        "eval_result_export_tasks",
        {
            "task_id": require_id(obj, "taskId"),
            "eval_id": field_of(obj, "evalId", as_text),
            "state": field_of(obj, "state", as_text),
            "storage_type": field_of(obj, "storageType", as_text),
            "storage_path": _storage_path(obj),
            "download_url": stable_url(obj.get("downloadUrl")),
            "export_content": field_of(obj, "exportContent", _content),
            "raw": dict(download_unsigned(obj)),  # no live signature stored
        },
    )


def _fetch(client: Client, ref: str) -> dict[str, Any]:
    obj = client.call(CALL, {"taskId": ref}, ROUTE)
    answers_for(obj, "taskId", ref)
    return obj


READER = RefReader(
    CALL, lambda ref: ref.startswith(PREFIX), _fetch, instead_of="eval_result_export"
)


def _deletes(d: DeleteView) -> ColumnElement[bool] | None:
    """The tasks no longer tracked (``eval untrack``)."""
    return ~d.table("eval_result_export_task").c.task_id.in_(d.tracked)


KIND = Kind(
    name="eval_result_export_task",
    table="eval_result_export_tasks",
    label="eval export tasks (V2)",
    short="eval export tasks",
    key=KEY,
    columns=COLUMNS,
    policy="QianfanReadAccessPolicy or QianfanModelTuningReadAccessPolicy",
    calls=CALLS,
    parent="eval_task",
    start=read_tracked("eval_result_export_task", READER, row, "task_id"),
    deletes=_deletes,
    reads_refs=READER,
    opt_in="DescribeEvalResultExportTask is documented, but the vendor's SDK says of it "
    '"Not available currently"',
)
