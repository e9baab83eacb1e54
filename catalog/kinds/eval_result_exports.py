"""Evaluation-result export states (评估结果导出), by tracked id.

No call lists them, so the tracked list (``tracked_eval_exports``: ``--eval-export-id`` and
``eval track``) is their listing: every tracked export is asked for each run, and one leaves the
catalog only when it is untracked, never because its status call failed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import BigInteger, Column, ColumnElement, String, Text, cast, or_

from catalog.documented import fields
from catalog.events import Client
from catalog.kinds.base import DeleteView, Kind, RefReader, read_tracked
from catalog.normalize import (
    NormalizeError,
    as_int,
    as_text,
    download_unsigned,
    eval_ref_body,
    field_of,
    fits,
    stable_url,
    state_of,
)

PATH = "/wenxinworkshop/modelrepo/eval/result/export/info"
CALL = "EvalResultExportInfo"

KEY = Column("export_id", BigInteger, primary_key=True, autoincrement=False)
COLUMNS = (
    Column("export_id_str", String(64), index=True),
    Column("record_id", BigInteger, comment="result.id"),
    Column("record_id_str", String(64), comment="result.idStr"),
    Column("state", String(16), comment="Pending, Uploading, Fail, Done"),
    Column("export_type", String(16), comment="local or storage"),
    Column("volume_id", Text),
    Column("export_path", Text),
    Column("download_url", Text, comment="without its rotating query string"),
)
#: REFERENCE.md section 6 and seed 001.
CALLS = {
    CALL: fields(
        "exportID state", "exportIDStr exportType volumeId exportPath downloadUrl id idStr"
    ),
}


def row(obj: Mapping[str, Any]) -> dict[str, Any]:
    export_id = field_of(obj, "exportID", as_int)
    if export_id is None:
        raise NormalizeError("exportID: missing")
    return fits(
        "eval_result_exports",
        {
            "export_id": export_id,
            "export_id_str": field_of(obj, "exportIDStr", as_text),
            "record_id": field_of(obj, "id", as_int),
            "record_id_str": field_of(obj, "idStr", as_text),
            "state": state_of(obj, first="state"),
            "export_type": field_of(obj, "exportType", as_text),
            "volume_id": field_of(obj, "volumeId", as_text),
            "export_path": field_of(obj, "exportPath", as_text),
            "download_url": stable_url(obj.get("downloadUrl")),
            "raw": dict(download_unsigned(obj)),  # no live signature stored
        },
    )



def _fetch(client: Client, ref: str) -> dict[str, Any]:
    """The export's state; an answer for another export (neither its ``exportID`` nor its
    ``exportIDStr`` the ref) is this ref's failure, not a row written over that export's."""
    body = eval_ref_body(ref)
    obj = client.call_v1(PATH, body)
    asked = str(body["exportID"])  # "096" asks for 96
    if asked not in (str(obj.get("exportID")), str(obj.get("exportIDStr"))):
        raise NormalizeError(
            f"the answer is not for {ref}: its exportID is {obj.get('exportID')!r}"
        )
    return obj


READER = RefReader(CALL, lambda ref: True, _fetch)


def _deletes(d: DeleteView) -> ColumnElement[bool] | None:
    """The exports no longer tracked (``eval untrack``)."""
    t = d.table("eval_result_export")
    return ~or_(cast(t.c.export_id, String).in_(d.tracked), t.c.export_id_str.in_(d.tracked))


KIND = Kind(
    name="eval_result_export",
    table="eval_result_exports",
    label="eval exports",
    short="eval exports",
    key=KEY,
    columns=COLUMNS,
    policy="a policy the documents do not name for this call",
    calls=CALLS,
    start=read_tracked("eval_result_export", READER, row, "export_id"),
    deletes=_deletes,
    reads_refs=READER,
)
