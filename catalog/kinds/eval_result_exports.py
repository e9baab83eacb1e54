"""Evaluation-result export states (评估结果导出), by tracked id.

No call lists them, so the tracked list (``tracked_eval_exports``: ``--eval-export-id`` and
``eval track``) is their listing: every tracked export is asked for each run, and one leaves the
catalog only when it is untracked, never because its status call failed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from sqlalchemy import BigInteger, Column, ColumnElement, String, Text, cast, or_

from catalog.documented import fields
from catalog.errors import ApiError, ConfigError
from catalog.events import VERSION, Client, Record
from catalog.kinds.base import DeleteView, Kind, Pages, Walk
from catalog.normalize import (
    NormalizeError,
    as_int,
    as_text,
    eval_ref_body,
    field_of,
    fits,
    stable_url,
)

PATH = "/wenxinworkshop/modelrepo/eval/result/export/info"
CALL = "EvalResultExportInfo"
#: Threads that resolve new tracked ids before a run; the limiter, not this, sets the pace.
_RESOLVERS = 8

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
            "state": field_of(obj, "state", as_text) or field_of(obj, "status", as_text),
            "export_type": field_of(obj, "exportType", as_text),
            "volume_id": field_of(obj, "volumeId", as_text),
            "export_path": field_of(obj, "exportPath", as_text),
            "download_url": stable_url(obj.get("downloadUrl")),
            "raw": dict(obj),
        },
    )



def resolve(client: Client, refs: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Fetch each new ``--eval-export-id`` before the run, so a wrong one is refused instead
    of being tracked forever; the walk reuses the answers (no second call).

    The calls go side by side (the client's limiter still paces them): one after another, a
    first sync with many new ids waited their latency in turn before the walk could start.
    """

    def fetch(ref: str) -> dict[str, Any]:
        try:
            return client.call_v1(PATH, eval_ref_body(ref))
        except ApiError as exc:
            if exc.is_auth or exc.retryable:
                raise
            raise ConfigError(
                f"unknown --eval-export-id {ref!r}: the API did not answer it "
                f"({exc.message} [{exc.code}])"
            ) from None

    if not refs:
        return {}
    with ThreadPoolExecutor(max_workers=min(len(refs), _RESOLVERS)) as pool:
        return dict(zip(refs, pool.map(fetch, refs), strict=True))


def _start(walk: Walk, pages: Pages | None) -> None:
    for ref in walk.eval_refs:
        answer = walk.prefetched.get(ref)
        if answer is not None:  # fetched before the run: recorded now, not by a late task
            _describe(walk, ref, answer)
        else:  # few calls: among the first the pool runs, so a signal rarely finds them undone
            walk.submit(partial(_describe, walk, ref, None), VERSION)


def _describe(walk: Walk, ref: str, obj: dict[str, Any] | None) -> None:
    if walk.denied("eval_result_export"):
        return
    try:
        if obj is None:
            obj = walk.client.call_v1(PATH, eval_ref_body(ref))
        walk.drift.check("eval_result_export", CALL, obj, ref)
        built = row(obj)
        walk.emit(Record.of("eval_result_export", built["export_id"], obj, built, CALL))
    except (ApiError, NormalizeError) as exc:
        walk.fail("eval_result_export", CALL, ref, exc)


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
    start=_start,
    deletes=_deletes,
)
