"""What a kind of entity declares, and what the walk and the delete rules offer it.

A kind is one module under ``catalog/kinds``: its table and key, its columns and how an answer
maps to them, the calls that list and describe it (with the fields their documents promise),
how a walk fetches it and from which parent, inside which completed listing it may be deleted,
and its labels. The schema, the walk, the writer, the delete rules, progress, reports and the
fake server read these declarations; none of them lists the kinds itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Column, ColumnElement, Table, or_

from catalog.bulk import answer_hash
from catalog.documented import DriftLog, Fields
from catalog.errors import ApiError
from catalog.events import FAILED, VERSION, Event, Page, Record, ScopeDone
from catalog.normalize import NormalizeError

if TYPE_CHECKING:
    from catalog.events import Client

Pages = Iterator[list[dict[str, Any]]]


class Walk(Protocol):
    """The walk engine as a kind sees it (``catalog.walk.Walker``)."""

    client: Client
    include_system: bool
    page_size: int
    drift: DriftLog
    #: ``--model-set`` scope (resolved sets), or None for a full walk.
    scoped: Sequence[Any] | None
    #: Tracked evaluation export refs, and the answers fetched for new ones before the run,
    #: by (kind, ref).
    eval_refs: Sequence[str]
    prefetched: Mapping[tuple[str, str], dict[str, Any]]

    def enabled(self, kind: str) -> bool: ...

    def reader_of(self, ref: str) -> str | None:
        """The one enabled kind that reads the tracked ref ``ref`` (``RefReader``)."""
        ...

    def denied(self, kind: str) -> bool: ...

    def refused(self, call: str) -> bool:
        """Whether the key was refused the detail call ``call`` in this run."""
        ...

    def submit(self, task: Callable[[], None], depth: int) -> None: ...

    def emit(self, event: Event) -> None: ...

    def fail(
        self, kind: str, call: str, entity: str | None, exc: Exception, *, detail: bool = False
    ) -> None: ...

    def pages(
        self,
        action: str,
        body: dict[str, Any],
        *,
        list_key: str | None,
        item_key: str,
        route: str = "/v2/model",
    ) -> Pages: ...

    def children(self, parent: str, row: dict[str, Any], system: bool) -> None: ...


class DeleteView(Protocol):
    """What the delete rules know at the end of a walk (``catalog.deletes``)."""

    scoped: bool
    #: The tracked evaluation export refs (their listing).
    tracked: Sequence[str]

    def table(self, kind: str) -> Table: ...

    def whole(self, kind: str, key: str) -> bool:
        """Whether the whole listing ``key`` of ``kind`` completed in this run."""
        ...

    def scope_keys(self, kind: str) -> Any:
        """A subquery of the scopes of ``kind`` whose listings completed (e.g. set ids)."""
        ...

    def gone(self, kind: str) -> Any | None:
        """A subquery of the keys of ``kind`` this run deletes; None if it deletes none."""
        ...


ParentHook = Callable[[Walk, dict[str, Any], bool], None]


def within_parents(
    d: DeleteView, kind: str, column: str, parent: str
) -> ColumnElement[bool]:
    """The delete scope of a kind listed per parent: rows whose parent's listing of them
    completed this run (its scope key is the parent's id, in ``column``), and rows whose
    parent this run deletes."""
    fk = d.table(kind).c[column]
    condition: ColumnElement[bool] = fk.in_(d.scope_keys(kind))
    gone = d.gone(parent)
    return condition if gone is None else or_(condition, fk.in_(gone))


def list_records(
    walk: Walk,
    kind: str,
    call: str,
    pages: Pages,
    key: str,
    build: Callable[[dict[str, Any]], dict[str, Any]],
    scope: str,
    *,
    whole: bool,
    listing: str | None,
) -> None:
    """Hand one listing of ``kind`` to the writer: each page as one ``Page`` of records, the
    ``ScopeDone`` of ``scope`` after the last, so that a delete inside that scope can follow.

    The row is built by the writer from ``build(item)``, and only for an answer whose hash
    differs from the stored one (a no-op re-sync normalises nothing). Every item has a usable
    ``key`` (``Walk.pages`` refuses a page with one that has not: such an item could not be told
    from the entity the listing's end would delete). A failed page is the listing's, which then
    sends no ``ScopeDone``, so nothing is deleted inside it. ``whole``: the listing names every
    entity of ``scope`` on its own (its count is the total the progress display shows);
    otherwise ``scope`` is a parent's. ``listing``: how ``sync_errors`` names the listing when
    it fails (None: the account's whole listing).
    """

    def hand_on(page: list[dict[str, Any]]) -> None:
        walk.drift.check_page(kind, call, page, key)
        records = [
            Record(kind, str(item[key]), item, answer_hash(item), partial(build, item), call)
            for item in page
        ]
        if records:
            walk.emit(Page(records))  # one hand-off per page, not per item

    _read_listing(walk, kind, call, pages, hand_on, scope, whole=whole, listing=listing)


def list_items(
    walk: Walk,
    kind: str,
    call: str,
    pages: Pages,
    each: Callable[[dict[str, Any]], None],
    scope: str,
) -> None:
    """Read one whole listing of ``kind`` item by item, where the walk needs each item as it
    comes rather than the writer a page at a time (``list_records``): ``each(item)`` records a
    set or a job at once, since its children's calls need its row, or submits a service's
    detail call. Then the ``ScopeDone`` of ``scope``, with the count. A failed page is the
    listing's, which then sends no ``ScopeDone``, so nothing of ``scope`` is deleted."""

    def hand_on(page: list[dict[str, Any]]) -> None:
        for item in page:
            each(item)

    _read_listing(walk, kind, call, pages, hand_on, scope, whole=True, listing=None)


def _read_listing(
    walk: Walk,
    kind: str,
    call: str,
    pages: Pages,
    hand_on: Callable[[list[dict[str, Any]]], None],
    scope: str,
    *,
    whole: bool,
    listing: str | None,
) -> None:
    """What every listing does with its pages, in one place because deletes hang on it: each
    page to ``hand_on``, then the ``ScopeDone`` of ``scope`` (the count when ``whole``), and
    after a failed page the failure instead, with no ``ScopeDone``."""
    count = 0
    try:
        for page in pages:
            count += len(page)
            hand_on(page)
    except ApiError as exc:
        walk.fail(kind, call, listing, exc)
        return
    walk.emit(ScopeDone(kind, scope, count if whole else None))


def ask_detail(
    walk: Walk,
    listed: Record,
    call: str,
    body: dict[str, Any],
    build: Callable[[dict[str, Any]], dict[str, Any]],
    route: str = "/v2/model",
    *,
    id_field: str,
) -> Callable[[], dict[str, Any]] | None:
    """A kind's detail call for one listed answer: the row ``build`` makes of the listing item
    with the answer's fields over it (both answer for the same entity, the detail call more
    fully), ready for ``Record.build``. None when the kind was refused in this run, or when the
    call or its answer failed, which is reported as the entity's failure: the caller then
    records the listing's answer so that the next run asks again. A refused call is not asked
    again in the run; the kind's listing still stands, deletes included.

    The answer must name the entity asked for in its documented ``id_field``: one that names
    another (or none: ``{}``) would otherwise be written over the asked entity's stored row,
    its detail-only columns erased (:func:`answers_for`)."""
    kind, key = listed.kind, str(listed.key)
    if walk.denied(kind) or walk.refused(call):
        return None
    try:
        obj = walk.client.call(call, body, route)
        answers_for(obj, id_field, key)
        walk.drift.check(kind, call, obj, key)
        built = build({**listed.obj, **obj})
    except (ApiError, NormalizeError) as exc:
        walk.fail(kind, call, key, exc, detail=True)
        return None
    return lambda: built


def answers_for(obj: Mapping[str, Any], id_field: str, key: str) -> None:
    """Raise ``NormalizeError`` unless a detail call's answer names ``key`` in ``id_field``.

    Every detail call the catalog makes documents the entity's id in its answer (REFERENCE
    sections 2-4, 7-9), so an answer without it, or for another entity, is not this entity's.
    """
    found = obj.get(id_field)
    if found is None or str(found) != key:
        raise NormalizeError(
            f"the answer is not for {key}: its {id_field} is {found!r}"
        )


#: ``Kind.confirm``: given the client, the entity's key and its stored row.
Confirm = Callable[["Client", str, Mapping[str, Any]], bool]


def answered_by(
    call: str | Callable[[Mapping[str, Any]], str],
    body_key: str,
    id_field: str,
    route: str = "/v2/model",
) -> Confirm:
    """A ``Kind.confirm`` asking the kind's detail ``call`` (or the one its stored row picks)
    for the entity: True when the answer names it, False on any error or other answer."""

    def confirm(client: Client, key: str, stored: Mapping[str, Any]) -> bool:
        action = call if isinstance(call, str) else call(stored)
        try:
            answers_for(client.call(action, {body_key: key}, route), id_field, key)
        except (ApiError, NormalizeError):
            return False
        return True

    return confirm


def incomplete_after(walk: Walk, listed: Record, call: str, built: object) -> str | None:
    """``Record.incomplete`` for ``listed`` once its detail call gave ``built``: ``FAILED`` when
    it gave nothing and was not refused for the run (a refusal leaves the listing as all
    there is: it is written as it stands)."""
    if built is not None or walk.denied(listed.kind) or walk.refused(call):
        return None
    return FAILED


@dataclass(frozen=True)
class RefReader:
    """How a kind whose listing is the tracked evaluation export refs reads one ref. Each ref
    is read by one enabled kind (``catalog.kinds.ref_reader``), which also asks a new ref
    before it is tracked, so a wrong one is refused instead of failing every later run."""

    #: The call, as errors and sync_errors name it.
    call: str
    #: Whether the kind can read this ref (a V2 export task: an ``amemt-`` id only).
    takes: Callable[[str], bool]
    fetch: Callable[[Client, str], dict[str, Any]]
    #: When this kind is enabled, the refs it takes are read by it instead of by that kind
    #: (the documented replacement of that kind's call).
    instead_of: str | None = None


def read_tracked(
    kind: str, reader: RefReader, row: Callable[[Mapping[str, Any]], dict[str, Any]], key: str
) -> Callable[[Walk, Pages | None], None]:
    """The ``start`` of a kind read from the tracked refs: each ref it takes is asked once a
    run (a new ref's answer, fetched before the run, is recorded at once). A failed answer is
    that ref's failure; its row stays, since only untracking deletes it."""

    def describe(walk: Walk, ref: str, obj: dict[str, Any] | None) -> None:
        if walk.denied(kind):
            return
        try:
            if obj is None:
                obj = reader.fetch(walk.client, ref)
            walk.drift.check(kind, reader.call, obj, ref)
            built = row(obj)
            walk.emit(Record.of(kind, built[key], obj, built, reader.call))
        except (ApiError, NormalizeError) as exc:
            walk.fail(kind, reader.call, ref, exc)

    def start(walk: Walk, pages: Pages | None) -> None:
        for ref in walk.eval_refs:
            if walk.reader_of(ref) != kind:
                continue
            answer = walk.prefetched.get((kind, ref))
            if answer is not None:  # fetched before the run: recorded now, not by a late task
                describe(walk, ref, answer)
            else:  # few calls: among the first the pool runs, so a signal rarely finds them undone
                walk.submit(partial(describe, walk, ref, None), VERSION)

    return start


@dataclass(frozen=True)
class Kind:
    name: str
    table: str
    #: Plural label for reports ("compression tasks") and the progress line's short one.
    label: str
    short: str
    key: Column[Any]
    columns: tuple[Column[Any], ...]
    #: The IAM policies the vendor's pages name for its calls (said when a key lacks them).
    policy: str
    #: Per call, the fields its answers' objects are documented to carry (drift is measured
    #: against these).
    calls: Mapping[str, Fields] = field(default_factory=dict)
    #: Tracked columns some of the kind's answers lack (a listing item, where a detail or
    #: describe call has them): kept as stored when an answer lacks them (``KindSpec.carried``).
    carried: tuple[str, ...] = ()
    #: Whether its listing's answer, without the detail call's, may hold a state the entity
    #: never had (a failed task's new status with its old reason): then such an answer never
    #: changes a stored entity (``Record.incomplete``). False where the detail call adds only
    #: what never changes (a set's creation time): a stored entity's listing is written as it
    #: stands, as its ``modelIds`` must be, since they decide which versions are deleted. (A
    #: new entity a stop came before is not stored, whatever its kind: the next run's.)
    partial_listing: bool = True
    #: The kind whose listing names this one's entities (lineage, reports).
    parent: str | None = None
    #: The first page of this kind's root listing, fetched before anything is written.
    open_listing: Callable[[Walk], Pages] | None = None
    #: Submit the root tasks of a walk (``pages``: the listing opened before the run, if any).
    start: Callable[[Walk, Pages | None], None] | None = None
    #: Per parent kind: the tasks to submit for one recorded parent entity.
    on_parent: Mapping[str, ParentHook] = field(default_factory=dict)
    #: Whether an answer may need the kind's detail call (asked only if new or changed).
    wants_detail: Callable[[Mapping[str, Any]], bool] | None = None
    #: Stored columns a detail call is told (``Record.previous``), e.g. a task's last state.
    detail_context: tuple[str, ...] = ()
    #: Carried columns whose NULL means "the detail call never answered": asked again.
    unanswered: tuple[str, ...] = ()
    #: Whether an answer needs the detail call every run (e.g. a task still running).
    always_detail: Callable[[Mapping[str, Any]], bool] | None = None
    #: Submit the detail call for one record; it emits the record back, ``detailed``.
    detail: Callable[[Walk, Record], None] | None = None
    #: The SQL condition inside which unseen entities are deleted; None: none this run.
    deletes: Callable[[DeleteView], ColumnElement[bool] | None] | None = None
    #: Whether the API still answers for a stored entity (its row) that a complete listing did
    #: not name: its own detail call, asked before the delete (``catalog.deletes.confirm``).
    #: None: the listing alone decides (a call that lists, not describes, or none).
    confirm: Confirm | None = None
    #: A kind read from the tracked evaluation export refs (see ``RefReader``).
    reads_refs: RefReader | None = None
    #: Why the kind is not read unless named in ``--kinds`` (None: read by default). For a
    #: call the vendor documents but says may not be served: a guess that fails would make
    #: every run partial.
    opt_in: str | None = None
