"""Services (服务): custom services from their listing and detail, preset services from theirs.

DescribeServices' list key and item fields are not visible in the documents, so every listed
custom service is described (DescribeService, which the documents detail): a service's resource
and charging state change without its listing item changing. That call is asked by hand, not
through ``base.ask_detail``, because it fails differently: a refusal turns the whole kind off,
not only the call; a failed call still records the listing's answer (``detailed``, never
``incomplete``); an answer that cannot be built is kept as stored (``Keep``) instead of falling
back to the listing's row. DescribePresetServices has no documented paging and answers all
presets at once. Both listings need a FullControl or Data policy (REFERENCE.md section 0): a
read-only key gets one warning and no service is deleted.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from sqlalchemy import Boolean, Column, ColumnElement, Integer, String, Text

from catalog.api.paging import is_truncated
from catalog.bulk import answer_hash
from catalog.documented import fields
from catalog.errors import ApiError
from catalog.events import LISTING, VERSION, Client, Keep, Record, ScopeDone
from catalog.kinds.base import DeleteView, Kind, Pages, Walk, answered_by, answers_for, list_items
from catalog.normalize import (
    NormalizeError,
    as_int,
    as_text,
    field_of,
    fits,
    obj_at,
    parse_time,
    require_id,
)
from catalog.types import UTCDateTime

ROUTE = "/v2/service"
LIST, DETAIL, PRESETS = "DescribeServices", "DescribeService", "DescribePresetServices"
CUSTOM, PRESET = "custom", "preset"

KEY = Column("service_id", String(64), primary_key=True)
COLUMNS = (
    Column("is_preset", Boolean, comment="listed by DescribePresetServices (a platform service)"),
    Column("name", Text),
    Column("description", Text),
    Column("base_model", Text),
    Column("model_set_id", String(64), index=True, comment="the model set it runs (custom)"),
    Column("model_id", String(64), index=True, comment="the model version it runs (custom)"),
    Column("url", Text),
    Column("endpoint", Text),
    Column("service_type", String(32), comment="chat, completions, text2image, image2text"),
    Column("run_status", String(16), comment="New, Deploying, Serving, Failed, Stopped"),
    Column("update_status", String(32), comment="None = no pending update"),
    Column("charge_type", String(32), comment="ComputingUnit, Tokens (presets: TPM, Calls...)"),
    Column("pay_type", String(32), comment="Prepay, Postpay"),
    Column("charge_status", String(16), comment="NotOpen, Opened, Free (presets: Stopped)"),
    Column("resource_type", String(32), comment="resourceConfig.type, e.g. GPU-I-4"),
    Column("replicas", Integer, comment="resourceConfig.replicasCount"),
    Column("replica_qps", Integer, comment="resourceConfig.qps"),
    Column("create_time", UTCDateTime),
)
#: Fields only DescribeService answers: a listing item alone keeps the stored values.
CARRIED = (
    "description",
    "base_model",
    "url",
    "endpoint",
    "update_status",
    "charge_type",
    "pay_type",
    "charge_status",
    "resource_type",
    "replicas",
    "replica_qps",
)
#: REFERENCE.md section 8. DescribeServices' items are not visible: a field DescribeService
#: documents for the same service counts as known there too (none as required). The presets'
#: items past their first five fields are not visible either.
_DETAIL_FIELDS = (
    "baseModel modelSetId modelId name description url endpoint serviceType runStatus "
    "updateStatus chargeType payType chargeStatus resourceConfig createTime"
)
CALLS = {
    LIST: fields("serviceId", _DETAIL_FIELDS),
    DETAIL: fields("serviceId", _DETAIL_FIELDS),
    PRESETS: fields("serviceId", "name url endpoint serviceType"),
}


def row(obj: Mapping[str, Any], is_preset: bool, detailed: bool) -> dict[str, Any]:
    """A service; the detail-only columns only from a detail answer (else carried)."""
    out: dict[str, Any] = {
        "service_id": require_id(obj, "serviceId"),
        "is_preset": is_preset,
        "name": field_of(obj, "name", as_text),
        "model_set_id": field_of(obj, "modelSetId", as_text),
        "model_id": field_of(obj, "modelId", as_text),
        "service_type": field_of(obj, "serviceType", as_text),
        "run_status": field_of(obj, "runStatus", as_text),
        "create_time": parse_time(obj.get("createTime"), "createTime"),
        "raw": dict(obj),
    }
    if detailed or is_preset:
        resource = obj_at(obj, "resourceConfig")
        out.update(
            description=field_of(obj, "description", as_text),
            base_model=field_of(obj, "baseModel", as_text),
            url=field_of(obj, "url", as_text),
            endpoint=field_of(obj, "endpoint", as_text),
            update_status=field_of(obj, "updateStatus", as_text),
            charge_type=field_of(obj, "chargeType", as_text),
            pay_type=field_of(obj, "payType", as_text),
            charge_status=field_of(obj, "chargeStatus", as_text),
            resource_type=field_of(resource, "type", as_text),
            replicas=field_of(resource, "replicasCount", as_int),
            replica_qps=field_of(resource, "qps", as_int),
        )
    return fits("services", out)


def _start(walk: Walk, pages: Pages | None) -> None:
    # Scoped too: both listings are the account's, complete whatever sets are scoped.
    walk.submit(partial(_list, walk), LISTING)
    walk.submit(partial(_presets, walk), LISTING)


def _list(walk: Walk) -> None:
    # The items' key is not documented (REFERENCE §8): the one ``...List`` there is.
    pages = walk.pages(LIST, {}, list_key=None, item_key="serviceId", route=ROUTE)
    list_items(walk, "service", LIST, pages, partial(_listed, walk), CUSTOM)


def _listed(walk: Walk, item: dict[str, Any]) -> None:
    walk.drift.check("service", LIST, item, str(item.get("serviceId")))
    walk.submit(partial(_describe, walk, item), VERSION)


def _describe(walk: Walk, item: dict[str, Any]) -> None:
    service_id = str(item.get("serviceId"))
    obj, detailed = item, False
    if not walk.denied("service"):
        try:
            answer = walk.client.call(DETAIL, {"serviceId": service_id}, ROUTE)
            answers_for(answer, "serviceId", service_id)
            walk.drift.check("service", DETAIL, answer, service_id)
            obj, detailed = {**item, **answer}, True
        except (ApiError, NormalizeError) as exc:
            walk.fail("service", DETAIL, service_id, exc)  # the listing's answer still counts
    try:
        built = row(obj, is_preset=False, detailed=detailed)
    except NormalizeError as exc:
        walk.fail("service", DETAIL, service_id, exc)
        walk.emit(Keep("service", service_id))
        return
    # The listing item's hash: an unchanged item with a described answer is compared anyway
    # (``detailed``), since the detail-only columns may have moved.
    walk.emit(Record("service", service_id, obj, answer_hash(item), lambda: built, DETAIL,
                     detailed=True))


def _presets(walk: Walk) -> None:
    """All presets in one answer (documented: without ``serviceIds`` the call answers every
    preset), which then deletes the presets it does not name, unless something in the answer
    says it holds only part of them."""
    try:
        answer = walk.client.call(PRESETS, {}, ROUTE)
        items = answer.get("serviceList")
        if not isinstance(items, list):
            raise NormalizeError("serviceList: expected a list")
    except (ApiError, NormalizeError) as exc:
        walk.fail("service", PRESETS, None, exc)
        return
    partial_answer = _part_of_the_presets(answer, items)
    for item in items:
        ident = item.get("serviceId") if isinstance(item, dict) else None
        if not isinstance(ident, str) or not ident.strip():
            partial_answer = partial_answer or f"an item without a usable serviceId ({ident!r})"
            continue
        walk.drift.check("service", PRESETS, item, ident)
        walk.emit(Record("service", ident, item, answer_hash(item),
                         partial(row, item, True, True), PRESETS))
    if partial_answer is not None:
        walk.fail("service", PRESETS, None, NormalizeError(
            f"{partial_answer}: the answer may not name every preset, so none is deleted"
        ))
        return
    walk.emit(ScopeDone("service", PRESET, len(items)))


def _part_of_the_presets(answer: Mapping[str, Any], items: list[Any]) -> str | None:
    """Why an answer of DescribePresetServices may hold only part of the presets, or None.

    No paging is documented for this call (REFERENCE §8); if the service pages it anyway, the
    marks every paged listing of this API carries (§0), or a total above what was listed, are
    what would show it.
    """
    info = answer.get("pageInfo")
    if isinstance(info, dict) and (is_truncated(info) is not False or info.get("nextMarker")):
        return f"pageInfo {info!r} says more pages follow or does not say that none does"
    for name in ("isTruncated", "nextMarker", "marker"):
        if answer.get(name) not in (None, False, "", "false"):
            return f"{name} {answer.get(name)!r} says more pages follow"
    for name in ("totalCount", "total", "count"):
        total = answer.get(name)
        if isinstance(total, int) and not isinstance(total, bool) and total > len(items):
            return f"{name} is {total} but the answer lists {len(items)}"
    return None


def _deletes(d: DeleteView) -> ColumnElement[bool] | None:
    """Custom or preset services their completed listing did not name."""
    listed = [flag for flag, key in ((False, CUSTOM), (True, PRESET)) if d.whole("service", key)]
    return d.table("service").c.is_preset.in_(listed) if listed else None


_described = answered_by(DETAIL, "serviceId", "serviceId", ROUTE)


def _confirm(client: Client, key: str, stored: Mapping[str, Any]) -> bool:
    """A custom service by its detail call; a preset one by the preset call asked for it alone
    (its documented ``serviceIds``): an answer that lists some presets only, with nothing to
    say so (no paging is documented), would otherwise delete the others."""
    if not stored["is_preset"]:
        return _described(client, key, stored)
    try:
        items = client.call(PRESETS, {"serviceIds": [key]}, ROUTE).get("serviceList")
    except ApiError:
        return False
    return isinstance(items, list) and any(
        isinstance(i, dict) and str(i.get("serviceId")) == key for i in items
    )


KIND = Kind(
    name="service",
    table="services",
    label="services",
    short="services",
    key=KEY,
    columns=COLUMNS,
    policy="a FullControl, QianfanDataFullControlAccessPolicy or QianfanDataOperateAccessPolicy "
    "policy (no read-only policy may list services)",
    calls=CALLS,
    carried=CARRIED,
    parent="model_version",
    start=_start,
    deletes=_deletes,
    confirm=_confirm,
)
