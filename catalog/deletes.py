"""The delete rules at the end of a walk: what each kind's completed listings did not name.

Each kind declares its condition (``Kind.deletes``); this module gives the kinds what the run
learnt (which whole listings and which scopes completed, which parents this run deletes), asks
the API once more about each entity it would delete (``confirm``), guards against deleting too
much, and marks the rest deleted, children before parents.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import ColumnElement, Table, or_, select

from catalog import killpoints
from catalog.errors import Interrupted, MassDeleteRefused
from catalog.events import KEPT_ONCE, Client
from catalog.kinds import REGISTRY
from catalog.schema import SPECS
from catalog.store import Store


class _View:
    """What the kinds' delete conditions may ask (``catalog.kinds.base.DeleteView``)."""

    def __init__(
        self,
        store: Store,
        whole: Collection[tuple[str, str]],
        scoped: bool,
        tracked: Sequence[str],
        conditions: dict[str, ColumnElement[bool]],
        parents: bool,
    ) -> None:
        self.store = store
        self.scoped = scoped
        self.tracked = tracked
        self._whole = whole
        self._conditions = conditions
        self._parents = parents

    def table(self, kind: str) -> Table:
        return SPECS[kind].table

    def whole(self, kind: str, key: str) -> bool:
        return (kind, key) in self._whole

    def scope_keys(self, kind: str) -> Any:
        return self.store.scope_keys(kind)

    def gone(self, kind: str) -> Any | None:
        condition = self._conditions.get(kind) if self._parents else None
        if condition is None:
            return None
        return select(SPECS[kind].key_column).where(self.store.unseen(kind, condition))


def conditions(
    store: Store,
    whole: Collection[tuple[str, str]],
    *,
    scoped: bool,
    tracked: Sequence[str],
    kinds: Collection[str],
    parents: bool = True,
) -> dict[str, ColumnElement[bool]]:
    """Per kind read in full this run (chosen, allowed), its delete condition; parents first,
    so a child's condition can name the parents this run deletes. ``parents=False``: only
    what the kind's own completed listings did not name, not the children of deleted parents
    (what ``confirm`` asks about: a child goes with its parent, and no later listing of its
    own would name it again)."""
    out: dict[str, ColumnElement[bool]] = {}
    view = _View(store, whole, scoped, tracked, out, parents)
    for kind in REGISTRY.values():
        if kind.deletes is None or kind.name not in kinds:
            continue
        condition = kind.deletes(view)
        if condition is not None:
            out[kind.name] = condition
    return out


#: Per kind: (entities the run would delete, entities alive before it).
Counts = dict[str, tuple[int, int]]


def count(store: Store, where: dict[str, ColumnElement[bool]]) -> Counts:
    """What each condition would delete, children first (as ``apply`` deletes). A child's
    delete does not change what its parents' conditions hold, so the counts stand."""
    return {kind: store.count_unseen(kind, where[kind]) for kind in reversed(REGISTRY)
            if kind in where}


def too_many(counts: Counts, max_share: float) -> list[str]:
    """The kinds that would lose more than ``max_share`` of what was alive, described."""
    return [f"{kind} {doomed} of the {alive} there were before this run"
            for kind, (doomed, alive) in counts.items() if doomed and doomed > max_share * alive]


def confirm(
    store: Store,
    listed: dict[str, ColumnElement[bool]],
    counts: Counts,
    client: Client,
    *,
    workers: int,
    stop: threading.Event,
    notify: Callable[..., None],
    commit: Callable[[], None],
) -> dict[str, int]:
    """Keep, this once, what a complete listing did not name (``listed``: the conditions without
    the children of deleted parents) but its own detail call still answers for
    (``Kind.confirm``); per kind, how many were kept (each counts as seen). ``counts``: what
    ``count`` gave for the whole conditions (a kind with none to delete is not read).

    A listing read page by page is not read at one moment: the documents say neither how a
    listing is ordered nor what its marker is, so an entity that moves to a page already read
    (ordered by modification time, say) or that a deletion shifts past (a marker that is an
    offset) is missing from a listing that completed. Deleted then, it came back next run, with a
    delete and an insert in its history that never happened. The detail call tells the two
    apart unless the service still describes what it deleted: hence once only (``KEPT_ONCE``),
    so nothing deleted is kept for more than a run. An error answer keeps nothing: the delete
    goes on as the listing decided.

    The calls are made with no transaction open (``commit`` ends the one the counts began): on
    SQLite it would hold the file's write lock, and on PostgreSQL it would sit idle in a
    transaction, for as long as the calls and their retries take. (A dry run's stays open:
    everything it wrote is rolled back at its end.)
    """
    asking: list[tuple[str, dict[str, Any]]] = []
    for kind in (name for name in REGISTRY if name in listed):
        if REGISTRY[kind].confirm is None or not counts.get(kind, (0, 0))[0]:
            continue
        spec = SPECS[kind]
        t = spec.table
        mark = t.c.raw_hash
        rows = store.conn.execute(
            select(*(c for c in t.c if c.name != "raw")).where(
                store.unseen(kind, listed[kind]), or_(mark.is_(None), mark != KEPT_ONCE)
            )
        ).mappings()
        asking.extend((kind, dict(row)) for row in rows)
    if not asking:
        return {}
    commit()

    def still_there(item: tuple[str, dict[str, Any]]) -> bool:
        kind, row = item
        ask = REGISTRY[kind].confirm
        assert ask is not None
        return not stop.is_set() and ask(client, str(row[SPECS[kind].key]), row)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        answered = list(pool.map(still_there, asking))
    if stop.is_set():
        raise Interrupted("interrupted before the deletes; nothing was deleted")
    kept: dict[str, list[str]] = {}
    for (kind, row), yes in zip(asking, answered, strict=True):
        if yes:
            kept.setdefault(kind, []).append(str(row[SPECS[kind].key]))
    for kind, keys in kept.items():
        for key in keys:
            notify("kept", kind=kind, key=key)
        store.keep(kind, keys, once=True)
    return {kind: len(keys) for kind, keys in kept.items()}


def apply(
    store: Store,
    where: dict[str, ColumnElement[bool]],
    *,
    max_share: float,
    allow_mass_delete: bool,
    counts: Counts | None = None,
) -> dict[str, int]:
    """Mark deleted what each condition holds and the run did not see; per kind, how many.

    Refuses (nothing deleted) when a kind would lose more than ``max_share`` of what was
    alive before the run. Children go first: a child's condition reads its parents as alive.
    ``counts``: what ``count`` gave, when nothing was marked seen since.
    """
    #: A kind with none to delete is not scanned a second time (on a no-op re-sync that second
    #: scan of the whole kind is all a delete would cost).
    doomed_of = counts if counts is not None else count(store, where)
    refused = too_many(doomed_of, max_share)
    if refused and not allow_mass_delete:
        raise MassDeleteRefused(
            f"refusing to delete more than {max_share:.0%} of an entity kind "
            f"({', '.join(refused)}); "
            "nothing was deleted. If this is intended, run again with --allow-mass-delete"
        )
    deleted = {}
    for kind in doomed_of:  # children first
        deleted[kind] = store.delete_unseen(kind, where[kind]) if doomed_of[kind][0] else 0
        if deleted[kind]:
            killpoints.reached("mid_delete")
    return deleted
