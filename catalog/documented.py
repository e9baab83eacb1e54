"""What the vendor's documents promise each call answers, and where real answers differ.

The sync was written from documents that are incomplete (long pages were partly unreadable, see
``../shared/api/REFERENCE.md``). Each answer object is held against the fields its call's pages
and seed examples list: a field an answer carries that no document names is *unknown*, a field the
documents list as always present that an answer lacks is *missing*. A run collects both per kind
and call, so a user's first real sync says exactly where the real API differs from the documents.

Only top-level fields of each object are compared: nested objects (``sourceInfo``,
``tokenLimitations``, ``config``) have sub-keys the documents do not show, so every answer would
report them.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Fields:
    """``required``: documented and always present; ``optional``: documented, may be absent."""

    required: frozenset[str]
    optional: frozenset[str] = frozenset()

    @functools.cached_property
    def known(self) -> frozenset[str]:
        # cached: every listed item of every run asks for it
        return self.required | self.optional


def fields(required: str, optional: str = "") -> Fields:
    """``Fields`` from two space-separated lists of names."""
    return Fields(frozenset(required.split()), frozenset(optional.split()))


@functools.cache
def call_fields() -> dict[str, Fields]:
    """Per call, the fields of one answer object (a listing's item, or a describe call's
    ``result``), as each kind declares them (read on first use: the kinds use this module)."""
    from catalog.kinds import REGISTRY

    return {call: f for kind in REGISTRY.values() for call, f in kind.calls.items()}


UNKNOWN, MISSING = "unknown", "missing"


@dataclass
class DriftSeen:
    count: int
    example_id: str | None


class DriftLog:
    """Drift found during one run, by (kind, call, field, unknown|missing). Thread-safe.

    Memory is bounded by the number of distinct drifting fields, not by the catalog.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.found: dict[tuple[str, str, str, str], DriftSeen] = {}

    def check_page(
        self, kind: str, call: str, items: Sequence[Mapping[str, object]], key: str
    ) -> None:
        """``check`` each item of a listing page, the item's ``key`` naming it. A page whose
        items all keep to the documents is passed by two set operations over the whole page,
        with no Python step per item: a no-op re-sync of a long listing spends its time on the
        items, and the walk's thread is the one whose time the run waits for."""
        documented = call_fields().get(call)
        if documented is None:
            return
        if documented.known.issuperset(set().union(*items)) and all(
            map(documented.required.issubset, items)
        ):
            return
        for item in items:
            self.check(kind, call, item, str(item.get(key)))

    def check(self, kind: str, call: str, obj: Mapping[str, object], entity_id: str) -> None:
        """Compare one answer object with its call's documented fields."""
        documented = call_fields().get(call)
        if documented is None:
            return
        keys = obj.keys()
        if documented.known.issuperset(keys) and keys >= documented.required:
            return  # the common case, without building two sets per answer or taking the lock
        unknown = keys - documented.known
        missing = documented.required - keys
        with self._lock:
            for names, drift in ((unknown, UNKNOWN), (missing, MISSING)):
                for name in names:
                    seen = self.found.get((kind, call, name, drift))
                    if seen is None:
                        self.found[(kind, call, name, drift)] = DriftSeen(1, entity_id)
                    else:
                        seen.count += 1
