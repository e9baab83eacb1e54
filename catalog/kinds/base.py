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
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Column, ColumnElement, Table, or_

from catalog.documented import DriftLog, Fields
from catalog.events import Event, Record

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
    #: Tracked evaluation export refs, and the answers fetched for new ones before the run.
    eval_refs: Sequence[str]
    prefetched: Mapping[str, dict[str, Any]]

    def enabled(self, kind: str) -> bool: ...

    def denied(self, kind: str) -> bool: ...

    def submit(self, task: Callable[[], None], depth: int) -> None: ...

    def emit(self, event: Event) -> None: ...

    def fail(self, kind: str, call: str, entity: str | None, exc: Exception) -> None: ...

    def pages(
        self, action: str, body: dict[str, Any], *, item_key: str, route: str = "/v2/model"
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
    #: Tracked columns only a detail call answers (see ``KindSpec.carried``).
    carried: tuple[str, ...] = ()
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
