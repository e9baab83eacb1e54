"""Model sets (模型): custom ones from their listing, presets from theirs.

A custom listing item carries every field its describe call answers but ``source``, which the
listing itself implies, and ``description``, which that call answers for presets only
(REFERENCE §2). A preset listing item lacks ``createTime``: DescribeSystemModelSet answers it,
and is asked for a preset set new or changed since the last run, or whose last describe call
failed; an unchanged set costs no call. A set's ``modelIds`` are the complete listing of its
versions (see ``model_versions`` and ``model_exports``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

from sqlalchemy import Boolean, Column, ColumnElement, String, Text

from catalog.documented import fields
from catalog.errors import ApiError, ConfigError
from catalog.events import (
    LISTING,
    SET,
    Client,
    Keep,
    Record,
    ScopedSet,
    back_from_detail,
)
from catalog.kinds.base import DeleteView, Kind, Pages, Walk, answered_by, ask_detail, list_items
from catalog.normalize import (
    NormalizeError,
    as_text,
    field_of,
    fits,
    is_id,
    parse_time,
    require_id,
)
from catalog.types import JsonValue, UTCDateTime

LIST_ACTIONS = {False: "DescribeCustomModelSets", True: "DescribeSystemModelSets"}
#: Each listing's items (REFERENCE §1).
LIST_KEYS = {False: "customModelSetList", True: "systemModelSetList"}
SET_ACTIONS = {False: "DescribeModelSet", True: "DescribeSystemModelSet"}
#: Scope keys of the two whole listings.
CUSTOM_SETS, SYSTEM_SETS = "custom", "system"

#: Tracked columns some answers for a set lack (by the field that answers them): REFERENCE.md
#: sections 1-2; kept as stored when an answer lacks them.
CARRIED = {"description": "description", "create_time": "createTime"}

KEY = Column("model_set_id", String(64), primary_key=True)
COLUMNS = (
    Column("model_set_name", Text),
    Column("source", String(32), comment="UserCreate or System"),
    Column("model_type", String(64)),
    Column("is_system", Boolean, comment="listed by DescribeSystemModelSets"),
    Column("labels", JsonValue),
    Column("description", Text),
    Column("model_ids", JsonValue, comment="its versions' ids"),
    Column("create_time", UTCDateTime),
    Column("modify_time", UTCDateTime),
)
#: REFERENCE.md sections 1-2 and seed 003.
CALLS = {
    "DescribeCustomModelSets": fields(
        "modelSetId modelSetName modelType modelIds",
        "labels createTime modifyTime modelCount modelNames",
    ),
    "DescribeSystemModelSets": fields(
        "modelSetId modelSetName modelType modelIds",
        "description modifyTime time modelCount modelNames",
    ),
    "DescribeModelSet": fields(
        "modelSetId modelSetName modelType",
        "source labels createTime modifyTime description modelIds modelNames modelCount",
    ),
    "DescribeSystemModelSet": fields(
        "modelSetId modelSetName modelType modelIds",
        "createTime modifyTime description modelNames",
    ),
}


def row(obj: Mapping[str, Any], is_system: bool) -> dict[str, Any]:
    """A set from a listing item or a describe answer.

    A listing item has no ``source``: which listing it came from says it (``UserCreate`` for my
    models, ``System`` for presets, the two values DescribeModelSet documents). The preset
    listing's page in one of the vendor's two sites calls the modification time ``time``.
    """
    model_ids = _model_ids(obj)
    source = field_of(obj, "source", as_text) or ("System" if is_system else "UserCreate")
    modified = obj.get("modifyTime") if obj.get("modifyTime") is not None else obj.get("time")
    out = fits(
        "model_sets",
        {
            "model_set_id": require_id(obj, "modelSetId"),
            "model_set_name": field_of(obj, "modelSetName", as_text),
            "source": source,
            "model_type": field_of(obj, "modelType", as_text),
            "is_system": is_system,
            "labels": obj.get("labels"),
            "description": field_of(obj, "description", as_text),
            "model_ids": [str(m) for m in model_ids],
            "create_time": parse_time(obj.get("createTime"), "createTime"),
            "modify_time": parse_time(modified, "modifyTime"),
            "raw": dict(obj),
        },
    )
    # What this answer does not carry is kept as stored (CARRIED), not erased: the custom
    # listing has no description and the preset listing no creation time, which the describe
    # calls of a scoped run answer.
    for column, name in CARRIED.items():
        if name not in obj:
            del out[column]
    return out



def _model_ids(obj: Mapping[str, Any]) -> list[Any]:
    """The set's ``modelIds``: the complete listing of its versions, which deletes those it no
    longer names. So an answer without them (absent, null, not a list of ids) is the set's
    failure, never an empty set; nor are they trusted when the answer's own ``modelCount``
    (documented: the number of versions) says otherwise."""
    model_ids = obj.get("modelIds")
    if not isinstance(model_ids, list) or not all(
        isinstance(m, str) and is_id(m) for m in model_ids
    ):
        raise NormalizeError(
            "modelIds: missing or not a list of version ids; the set and its versions are "
            "kept as stored"
        )
    count = obj.get("modelCount")
    if isinstance(count, int) and not isinstance(count, bool) and count != len(model_ids):
        raise NormalizeError(
            f"modelCount is {count} but modelIds names {len(model_ids)} versions; the set and "
            "its versions are kept as stored"
        )
    return model_ids


def resolve(client: Client, refs: Sequence[str]) -> list[ScopedSet]:
    """Describe each ``--model-set`` (an ``am-`` id or a name) before the run.

    The custom call first, then the preset one; a ref neither answers is a ``ConfigError``,
    so a typo does not start a run that then deletes nothing and says nothing. Credentials
    refused or a network down are raised as they are.
    """
    found = []
    for ref in refs:
        body = {"modelSetId": ref} if ref.startswith("am-") else {"modelSetName": ref}
        answers = []
        for system in (False, True):
            try:
                obj = client.call(SET_ACTIONS[system], body)
            except ApiError as exc:
                if not exc.refuses_the_request:
                    raise
                answers.append(f"{SET_ACTIONS[system]}: {exc.message} [{exc.code}]")
                continue
            found.append(ScopedSet(obj, system or obj.get("source") == "System"))
            break
        else:
            raise ConfigError(
                f"unknown --model-set {ref!r}: no custom or preset model set has that id or "
                f"name ({'; '.join(answers)})"
            )
    return found


def _pages(walk: Walk, system: bool) -> Pages:
    return walk.pages(LIST_ACTIONS[system], {}, list_key=LIST_KEYS[system], item_key="modelSetId")


def _start(walk: Walk, pages: Pages | None) -> None:
    if walk.scoped is not None:
        for scoped in walk.scoped:
            call = SET_ACTIONS[scoped.system]
            _record(walk, scoped.obj, call, scoped.system)  # fetched before the run
        return
    walk.submit(partial(_list, walk, False, pages), LISTING)
    if walk.include_system:
        walk.submit(partial(_list, walk, True, None), LISTING)


def _list(walk: Walk, system: bool, pages: Pages | None) -> None:
    if pages is None:
        pages = _pages(walk, system)
    action, scope = LIST_ACTIONS[system], SYSTEM_SETS if system else CUSTOM_SETS
    each = partial(_record, walk, call=action, system=system, from_listing=True)
    list_items(walk, "model_set", action, pages, each, scope)


def _record(
    walk: Walk, obj: dict[str, Any], call: str, system: bool, from_listing: bool = False
) -> None:
    """Record one set at once (a signal must not lose what was fetched), then let its versions,
    exports... submit their calls; for a set ``from_listing``, through a task per set, so that
    the pool, which runs versions first, holds sets waiting, not every version of the page."""
    set_id = str(obj.get("modelSetId"))
    walk.drift.check("model_set", call, obj, set_id)
    try:
        built = row(obj, is_system=system)
    except NormalizeError as exc:
        walk.fail("model_set", call, set_id, exc)
        if is_id(obj.get("modelSetId")):  # as the listing checks it: 0 is an id too
            walk.emit(Keep("model_set", set_id))
        return  # its versions are neither walked nor deleted: their scope stays open
    walk.emit(Record.of("model_set", built["model_set_id"], obj, built, call))
    if from_listing:
        walk.submit(partial(walk.children, "model_set", built, system), SET)
    else:
        walk.children("model_set", built, system)


def _wants_detail(obj: Mapping[str, Any]) -> bool:
    """An answer without the set's creation time: a preset listing item (a custom one too,
    should the service leave it out there)."""
    return "createTime" not in obj


def _detail(walk: Walk, listed: Record) -> None:
    walk.submit(partial(_describe, walk, listed), SET)


def _describe(walk: Walk, listed: Record) -> None:
    """Ask a listed set's describe call for its creation time, then record the set.

    The record keeps the listing item's hash, which the next run compares its listing's answer
    with: an answer the call gave without a time (or with the zero time) is not asked again
    every run. If the call fails, the listing's answer is recorded without a hash: the creation
    time stays as stored (NULL for a new set), and the next run, finding the set changed, asks
    again. The listing is written as it stands (``Kind.partial_listing`` False): the creation
    time is all the call adds, and it never changes."""
    if listed.call not in LIST_ACTIONS.values():  # a describe call's own answer (scoped)
        walk.emit(replace(listed, detailed=True))
        return
    system = listed.call == LIST_ACTIONS[True]
    call, build = SET_ACTIONS[system], partial(row, is_system=system)
    body = {"modelSetId": listed.key}
    built = ask_detail(walk, listed, call, body, build, id_field="modelSetId")
    walk.emit(back_from_detail(listed, built))


def _deletes(d: DeleteView) -> ColumnElement[bool] | None:
    """Sets of a listing (custom, preset) that completed without them; none when scoped."""
    if d.scoped:
        return None
    listed = [flag for flag, key in ((False, CUSTOM_SETS), (True, SYSTEM_SETS))
              if d.whole("model_set", key)]
    return d.table("model_set").c.is_system.in_(listed) if listed else None


KIND = Kind(
    name="model_set",
    table="model_sets",
    label="model sets",
    short="sets",
    key=KEY,
    columns=COLUMNS,
    policy="QianfanReadAccessPolicy or QianfanModelTuningReadAccessPolicy",
    calls=CALLS,
    carried=tuple(CARRIED),
    partial_listing=False,
    open_listing=lambda walk: _pages(walk, False),
    start=_start,
    wants_detail=_wants_detail,
    detail=_detail,
    deletes=_deletes,
    confirm=answered_by(lambda stored: SET_ACTIONS[bool(stored["is_system"])], "modelSetId",
                        "modelSetId"),
)
