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

from sqlalchemy import ColumnElement, Table, select

from catalog import killpoints
from catalog.errors import CatalogError, ExitCode, Interrupted
from catalog.events import Client
from catalog.kinds import REGISTRY
from catalog.schema import SPECS
from catalog.store import Store


class MassDeleteRefused(CatalogError):
    exit_code = ExitCode.MASS_DELETE


class _View:
    """What the kinds' delete conditions may ask (``catalog.kinds.base.DeleteView``)."""

    def __init__(
        self,
        store: Store,
        whole: Collection[tuple[str, str]],
        scoped: bool,
        tracked: Sequence[str],
        conditions: dict[str, ColumnElement[bool]],
    ) -> None:
        self.store = store
        self.scoped = scoped
        self.tracked = tracked
        self._whole = whole
        self._conditions = conditions

    def table(self, kind: str) -> Table:
        return SPECS[kind].table

    def whole(self, kind: str, key: str) -> bool:
        return (kind, key) in self._whole

    def scope_keys(self, kind: str) -> Any:
        return self.store.scope_keys(kind)

    def gone(self, kind: str) -> Any | None:
        condition = self._conditions.get(kind)
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
) -> dict[str, ColumnElement[bool]]:
    """Per kind read in full this run (chosen, allowed), its delete condition; parents first,
    so a child's condition can name the parents this run deletes."""
    out: dict[str, ColumnElement[bool]] = {}
    view = _View(store, whole, scoped, tracked, out)
    for kind in REGISTRY.values():
        if kind.deletes is None or kind.name not in kinds:
            continue
        condition = kind.deletes(view)
        if condition is not None:
            out[kind.name] = condition
    return out


#: The stored answer hash of an entity a complete listing did not name while its own detail call
#: still answered for it (``confirm``): kept that run, and not asked again. Any answer of a
#: later run replaces it; missed again by a complete listing, the entity is deleted.
KEPT_ONCE = "kept-once"


def confirm(
    store: Store,
    where: dict[str, ColumnElement[bool]],
    client: Client,
    *,
    max_share: float,
    allow_mass_delete: bool,
    workers: int,
    stop: threading.Event,
    notify: Callable[..., None],
) -> dict[str, int]:
    """Keep, this once, what a complete listing did not name but its own detail call still
    answers for (``Kind.confirm``); per kind, how many were kept (each counts as seen).

    A listing read page by page is not read at one moment: the documents say neither how a
    listing is ordered nor what its marker is, so an entity that moves to a page already read
    (ordered by modification time, say) or that a deletion shifts past (a marker that is an
    offset) is missing from a listing that completed. Deleted then, it came back next run, with a
    delete and an insert in its history that never happened. The detail call tells the two
    apart unless the service still describes what it deleted: hence once only (``KEPT_ONCE``),
    so nothing deleted is kept for more than a run. An error answer keeps nothing: the delete
    goes on as the listing decided. Nothing is asked for deletes the guard will refuse.
    """
    kept: dict[str, int] = {}
    for kind in (name for name in REGISTRY if name in where):  # parents first
        ask = REGISTRY[kind].confirm
        if ask is None:
            continue
        doomed, alive = store.count_unseen(kind, where[kind])
        if not doomed or (doomed > max_share * alive and not allow_mass_delete):
            continue
        spec = SPECS[kind]
        rows = [
            dict(r) for r in store.conn.execute(
                select(spec.table).where(store.unseen(kind, where[kind]))
            ).mappings()
            if r["raw_hash"] != KEPT_ONCE
        ]

        def still_there(row: dict[str, Any], ask: Any = ask, key_name: str = spec.key) -> bool:
            if stop.is_set():
                return False
            return bool(ask(client, str(row[key_name]), row))

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            answered = list(pool.map(still_there, rows))
        if stop.is_set():
            raise Interrupted("interrupted before the deletes; nothing was deleted")
        keys = [str(row[spec.key]) for row, yes in zip(rows, answered, strict=True) if yes]
        for key in keys:
            notify("kept", kind=kind, key=key)
        if keys:
            store.keep(kind, keys)
            store.set_hash(kind, keys, KEPT_ONCE)
            kept[kind] = len(keys)
    return kept


def apply(
    store: Store,
    where: dict[str, ColumnElement[bool]],
    *,
    max_share: float,
    allow_mass_delete: bool,
) -> dict[str, int]:
    """Mark deleted what each condition holds and the run did not see; per kind, how many.

    Refuses (nothing deleted) when a kind would lose more than ``max_share`` of what was
    alive before the run. Children go first: a child's condition reads its parents as alive.
    """
    order = [name for name in reversed(REGISTRY) if name in where]
    too_many = []
    #: Per kind, how many it would delete. A child's delete does not change what its parents'
    #: conditions hold, so the counts stand, and a kind with none is not scanned a second time
    #: (on a no-op re-sync that second scan of the whole kind is all a delete would cost).
    doomed_of: dict[str, int] = {}
    for kind in order:
        doomed, alive = store.count_unseen(kind, where[kind])
        doomed_of[kind] = doomed
        if doomed and doomed > max_share * alive:
            too_many.append(f"{kind} {doomed} of the {alive} there were before this run")
    if too_many and not allow_mass_delete:
        raise MassDeleteRefused(
            f"refusing to delete more than {max_share:.0%} of an entity kind "
            f"({', '.join(too_many)}); "
            "nothing was deleted. If this is intended, run again with --allow-mass-delete"
        )
    deleted = {}
    for kind in order:
        deleted[kind] = store.delete_unseen(kind, where[kind]) if doomed_of[kind] else 0
        if deleted[kind]:
            killpoints.reached("mid_delete")
    return deleted
