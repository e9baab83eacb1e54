"""The delete rules at the end of a walk: what each kind's completed listings did not name.

Each kind declares its condition (``Kind.deletes``); this module gives the kinds what the run
learnt (which whole listings and which scopes completed, which parents this run deletes), guards
against deleting too much, and marks the rest deleted, children before parents.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Table, select

from catalog import killpoints
from catalog.errors import CatalogError, ExitCode
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
