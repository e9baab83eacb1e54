"""Model export states (打包导出): one DescribeModelExportTask per custom version.

``hasRecord: false`` is the listing's answer "none exists now" and deletes a stored state; an
error answer deletes nothing. No export call is documented for preset versions. Only
FullControl policies may make this call (REFERENCE.md section 0): a read-only key gets one
warning per run, or leaves the kind out with ``--kinds``.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from sqlalchemy import BigInteger, Column, ColumnElement, String, Text

from catalog.documented import fields
from catalog.errors import ApiError
from catalog.events import VERSION, Record, ScopeDone
from catalog.kinds.base import DeleteView, Kind, Walk, within_parents
from catalog.normalize import (
    NormalizeError,
    as_bool,
    as_int,
    as_text,
    download_unsigned,
    field_of,
    fits,
    stable_url,
    state_of,
)

EXPORT = "DescribeModelExportTask"

KEY = Column("model_id", String(64), primary_key=True, comment="the exported version")
COLUMNS = (
    Column("export_id", String(64)),
    Column("state", String(16), comment="Doing, Done (failed exports are not returned)"),
    Column("file_name", Text),
    Column("file_type", String(32)),
    Column("md5", String(64)),
    Column("file_size", BigInteger),
    Column("download_url", Text, comment="without its rotating query string"),
)
#: REFERENCE.md section 5 and seed 000.
CALLS = {
    EXPORT: fields(
        "hasRecord", "exportId status state fileName fileType md5 fileSize downloadUrl modelId"
    ),
}


def row(model_id: str, obj: Mapping[str, Any]) -> dict[str, Any] | None:
    """``None`` when the version has no export (``hasRecord: false``).

    ``hasRecord`` decides between an export's state and none (which deletes the stored one), so
    an answer without it, or with null, is malformed: read as "has one", ``{}`` stored an
    export of NULLs over the real one's state."""
    has_record = field_of(obj, "hasRecord", as_bool)
    if has_record is None:
        raise NormalizeError("hasRecord: missing or null; the version's export is kept as stored")
    if has_record is False:
        return None
    return fits(
        "model_exports",
        {
            "model_id": model_id,
            "export_id": field_of(obj, "exportId", as_text),
            # The documents say ``status``; their examples and the service say ``state``.
            "state": state_of(obj, first="state"),
            "file_name": field_of(obj, "fileName", as_text),
            "file_type": field_of(obj, "fileType", as_text),
            "md5": field_of(obj, "md5", as_text),
            "file_size": field_of(obj, "fileSize", as_int),
            "download_url": stable_url(obj.get("downloadUrl")),
            "raw": dict(download_unsigned(obj)),  # no live signature stored
        },
    )



def _of_set(walk: Walk, model_set: dict[str, Any], system: bool) -> None:
    if system:
        return  # no export call is documented for preset versions
    for model_id in model_set["model_ids"]:
        walk.submit(partial(_describe, walk, model_id), VERSION)


def _describe(walk: Walk, model_id: str) -> None:
    if walk.denied("model_export"):
        return
    try:
        obj = walk.client.call(EXPORT, {"modelId": model_id})
        walk.drift.check("model_export", EXPORT, obj, model_id)
        built = row(model_id, obj)
    except (ApiError, NormalizeError) as exc:
        walk.fail("model_export", EXPORT, model_id, exc)
        return
    if built is not None:
        walk.emit(Record.of("model_export", model_id, obj, built, EXPORT))
    walk.emit(ScopeDone("model_export", model_id))  # hasRecord false: none exists now


def _deletes(d: DeleteView) -> ColumnElement[bool] | None:
    """States answered ``hasRecord: false``, and those of deleted versions."""
    return within_parents(d, "model_export", "model_id", "model_version")


KIND = Kind(
    name="model_export",
    table="model_exports",
    label="model exports",
    short="exports",
    key=KEY,
    columns=COLUMNS,
    policy="a FullControl policy (the documents give DescribeModelExportTask to no read-only "
    "policy)",
    calls=CALLS,
    parent="model_version",
    on_parent={"model_set": _of_set},
    deletes=_deletes,
)
