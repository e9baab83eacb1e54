"""What the walk tells the writer: records (one by one or a page at a time) to store, completed
listings, kept ids, failures, and that every task has finished.

Shared by the walk engine (``walk.py``), the kinds that describe how each entity is fetched
(``catalog/kinds``), the run (``sync.py``) and the writer (``writer.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from catalog.bulk import answer_hash


class Client(Protocol):
    def call(
        self, action: str, body: dict[str, Any], route: str = "/v2/model"
    ) -> dict[str, Any]: ...

    def call_list(
        self, action: str, body: dict[str, Any], route: str = "/v2/model"
    ) -> list[Any]: ...

    def call_v1(self, path: str, body: dict[str, Any]) -> dict[str, Any]: ...


@dataclass(slots=True)
class Record:
    """One answer for the store, keyed as stored, with the hash of the answer.

    ``build`` turns the answer into a row. The writer calls it only when the hash differs from
    the stored one: on a run where little changed, normalising every answer again was most of
    the work. Kinds whose walk needs the row (a set's version ids) build it at once.

    Not frozen, though nothing changes a record once made (``dataclasses.replace`` makes a new
    one): a frozen dataclass sets each field through ``object.__setattr__``, which costs far
    more than setting a plain slot, and a record is made for every listed item of every run.
    """

    kind: str
    key: Any
    obj: Mapping[str, Any]
    raw_hash: str
    build: Callable[[], dict[str, Any]]
    call: str
    #: The answer already went through the one detail call its kind may need (a failed task's):
    #: written as it is, never skipped for an equal hash.
    detailed: bool = False
    #: For a detail call: what was stored for it before (the kind's ``detail_context``
    #: columns), None when it is new.
    previous: Mapping[str, Any] | None = None
    #: Why the listing's answer stands in for its detail call's: the call ``FAILED``, or a stop
    #: came first (``STOPPED``); None when it was answered (or refused for the run: the listing
    #: is then all there is). An incomplete answer never changes a stored row: a row mixing
    #: a new listing with the stored detail fields, or without them, would be a state the
    #: entity never had, in history and ``changes`` (the next run asks again and writes the
    #: whole answer). A new entity is stored as listed after a failure (it exists, and its
    #: call may keep failing), and not at all after a stop (the next run stores it whole).
    incomplete: str | None = None

    @classmethod
    def of(cls, kind: str, key: Any, obj: Mapping[str, Any], row: dict[str, Any],
           call: str) -> Record:
        """A record whose row is already built."""
        return cls(kind, key, obj, answer_hash(obj), lambda: row, call)


@dataclass(frozen=True)
class Page:
    """The records of one listing page (one kind's, straight from the listing: none has been
    through a detail call yet), handed to the writer at once.

    A no-op re-sync of a long listing does little per item besides this hand-off; one queue
    round trip (two locks, a condition notified) per page instead of per item. The writer's
    queue counts a page as the records it holds, so its bound on memory is unchanged.
    """

    records: list[Record]


#: The hash a record is stored with when its detail call failed: it equals no answer, so the
#: next run finds the answer "changed" and asks for the detail again.
UNANSWERED = ""
#: The hash of an entity a complete listing did not name while its own detail call still
#: answered for it (``catalog.deletes.confirm``): kept that run, and not asked again. Any
#: answer of a later run replaces it (a listing that names it, even with its detail call
#: failing: ``Store.keep``); missed again by a complete listing, the entity is deleted.
KEPT_ONCE = "kept-once"
#: ``Record.incomplete``: the detail call failed; a stop came before it.
FAILED, STOPPED = "failed", "stopped"


def back_from_detail(
    listed: Record,
    build: Callable[[], dict[str, Any]] | None,
    incomplete: str | None = None,
    *,
    keep_hash: bool | None = None,
) -> Record:
    """``listed`` as it comes back from its detail call: with the row the call's answer built,
    or (``build`` None: the call was refused, failed or never ran: ``incomplete`` says which)
    as listed.

    It keeps the listing's hash when the call answered, else it goes without one
    (``UNANSWERED``), so that the next run finds it changed and asks again. ``keep_hash`` says
    otherwise where something else decides that: False when a further call for the entity
    failed (an evaluation task's report), True when a NULL ``Kind.unanswered`` column already
    makes the next run ask (a compression task's reason)."""
    if keep_hash is None:
        keep_hash = build is not None
    return replace(
        listed,
        build=build or listed.build,
        raw_hash=listed.raw_hash if keep_hash else UNANSWERED,
        detailed=True,
        incomplete=incomplete,
    )


@dataclass(frozen=True)
class ScopeDone:
    """The listing of ``key`` for ``kind`` completed: what it did not name may be deleted."""

    kind: str
    key: str
    #: How many items the listing named, when the scope is a whole listing (for progress).
    count: int | None = None


@dataclass(frozen=True)
class Keep:
    """A complete listing named ``key`` but its answer could not be recorded: keep it as is."""

    kind: str
    key: str


@dataclass(frozen=True)
class Failure:
    kind: str | None
    call: str
    entity_id: str | None
    message: str
    code: str | None = None
    fatal: bool = False
    #: The error behind it, so a fatal one can be raised from it (the CLI reads its cause).
    error: Exception | None = field(default=None, compare=False, repr=False)


Event = Record | Page | ScopeDone | Keep | Failure


@dataclass
class ScopedSet:
    """A ``--model-set`` as resolved before the run: its describe answer and which call gave it."""

    obj: dict[str, Any]
    system: bool

#: A task's place in the worker pool's order (``catalog.pool`` runs the greatest first). Deeper
#: walk tasks go first, which finishes a set's versions before the next page of sets and keeps
#: the queue short. The root listings go before them all: they are a handful of long tasks (one
#: pages through a whole listing), and one left for last (the 200-page compression-task listing,
#: behind the set tasks of a re-sync's first page) would page alone at the end of the run.
SET, VERSION, LISTING = 1, 2, 3


@dataclass(frozen=True)
class Done:
    """Every task submitted to the walk's pool has finished (the run's last event, unless the
    writer submitted more since). ``epoch``: how many times the writer had submitted
    tasks of its own by then; a ``Done`` older than the writer's last submission is stale
    (the records of the tasks it submitted since are still to come)."""

    epoch: int
