"""The walk engine: runs the kinds' fetch declarations (``catalog/kinds``) as pool tasks.

Every call is a small task handed to ``submit`` (a worker pool in a sync, a plain loop in tests),
and every outcome is an event handed to ``emit`` (``catalog.events``): a record to store, a
scope whose listing completed (only inside such a scope may the run delete what the listing did
not name), an id a listing named but whose answer could not be recorded (``Keep``: it must not
be deleted), or a failure. The walker holds no rows itself, so memory does not grow with the
catalog.

Each kind says how it is fetched: root listings it starts, tasks it submits per recorded parent
entity, a detail call for answers that need one. Only documented calls are made
(``docs/api.md``), and no error answer of any call ever means "deleted": a permission refusal
turns the kind off for the run (one warning, nothing of it deleted); any other error is that
entity's failure. The README gives the calls a walk makes, as a formula.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from catalog.api.paging import iter_pages
from catalog.documented import DriftLog
from catalog.errors import ApiDown, ApiError, ConfigError
from catalog.events import Client, Event, Failure, Record, ScopedSet
from catalog.kinds import DEFAULT_KINDS, REGISTRY, ref_reader
from catalog.kinds import eval_result_exports as _evals
from catalog.kinds import model_sets as _sets
from catalog.kinds.base import Pages
from catalog.normalize import NormalizeError


class Walker:
    def __init__(
        self,
        client: Client,
        submit: Callable[[Callable[[], None], int], None],
        emit: Callable[[Event], None],
        *,
        include_system: bool = False,
        page_size: int = 100,
        kinds: Collection[str] = DEFAULT_KINDS,
        drift: DriftLog | None = None,
        stop: threading.Event | None = None,
        room: Callable[[], None] | None = None,
    ) -> None:
        self.client = client
        self.submit = submit
        self.emit = emit
        self.include_system = include_system
        self.page_size = page_size
        self.kinds = frozenset(kinds)
        self.drift = drift if drift is not None else DriftLog()
        #: Set by a signal: listings fetch no further page (the run ends, deleting nothing).
        self.stop = stop or threading.Event()
        #: Called before a listing hands on each page: holds it while the workers' queue is
        #: long (the detail calls its answers need), so memory stays flat in the listing.
        self.room = room
        self.scoped: Sequence[ScopedSet] | None = None
        self.eval_refs: Sequence[str] = ()
        self.prefetched: Mapping[tuple[str, str], dict[str, Any]] = {}
        self._first: tuple[str, Pages] | None = None
        self._denied: set[str] = set()
        #: Detail calls the key may not make: not asked again in this run (``fail``).
        self._refused: set[str] = set()
        self._lock = threading.Lock()

    # -- what kinds ask of the walk ----------------------------------------------------------

    def enabled(self, kind: str) -> bool:
        return kind in self.kinds

    def reader_of(self, ref: str) -> str | None:
        kind = ref_reader(ref, self.kinds)
        return None if kind is None else kind.name

    def denied(self, kind: str) -> bool:
        with self._lock:
            return kind in self._denied

    def refused(self, call: str) -> bool:
        with self._lock:
            return call in self._refused

    @property
    def denied_kinds(self) -> frozenset[str]:
        """Kinds the key was not allowed to read in this run (nothing of them is deleted)."""
        with self._lock:
            return frozenset(self._denied)

    def pages(
        self,
        action: str,
        body: dict[str, Any],
        *,
        list_key: str | None,
        item_key: str,
        route: str = "/v2/model",
    ) -> Pages:
        """A listing's pages (``iter_pages``); ``list_key``: the documented key of its items,
        None where the documents do not show it."""
        for page in iter_pages(
            self.client,
            action,
            body,
            list_key=list_key,
            item_key=item_key,
            max_keys=self.page_size,
            route=route,
        ):
            if self.room is not None:
                self.room()
            yield page
            if self.stop.is_set():
                return

    def children(self, parent: str, row: dict[str, Any], system: bool) -> None:
        """Let every enabled kind that hangs off ``parent`` submit its tasks for ``row``."""
        for kind in REGISTRY.values():
            hook = kind.on_parent.get(parent)
            if hook is not None and kind.name in self.kinds:
                hook(self, row, system)

    def fail(
        self, kind: str, call: str, entity: str | None, exc: Exception, *, detail: bool = False
    ) -> None:
        """Report one failed answer. A permission refusal turns the kind off for this run; of a
        ``detail`` call (one asked on top of a listed answer), only that call: the answers it
        would have completed are recorded as listed, so the kind's listings still say what
        exists, and what they did not name is deleted as usual."""
        if isinstance(exc, ApiError):
            if exc.is_permission:
                name, refused = (call, self._refused) if detail else (kind, self._denied)
                with self._lock:
                    first = name not in refused
                    refused.add(name)
                if first:
                    self.emit(Failure(kind, call, None, _refusal(kind, call, detail), exc.code))
                return
            # The run's, not the entity's; an outage noticed after a stop leaves the stop's
            # ending (interrupted, exit 9) to the stop.
            down = isinstance(exc, ApiDown) and not self.stop.is_set()
            fatal = exc.is_auth or down
            self.emit(Failure(kind, call, entity, str(exc), exc.code or None, fatal, exc))
        else:
            where = f"{call} {entity}: " if entity else f"{call}: "
            self.emit(Failure(kind, call, entity, f"{where}malformed answer: {exc}", "Malformed"))

    # -- before the run ------------------------------------------------------------

    def resolve_model_sets(self, refs: Sequence[str]) -> list[ScopedSet]:
        return _sets.resolve(self.client, refs)

    def resolve_eval_exports(
        self, refs: Sequence[str], workers: int = 1, what: str = "--eval-export-id"
    ) -> dict[tuple[str, str], dict[str, Any]]:
        """Ask each new ``--eval-export-id`` before the run, by the kind that will read it
        (by the V1 call, which takes any id, when no enabled kind does), so a wrong one is
        refused instead of failing every later run; the walk reuses the answers, by
        (kind, ref).

        Up to ``workers`` calls go side by side, as in the walk (the limiter still paces
        them): one after another, a first sync with many new ids waited each one's latency
        before the walk could start. ``what`` names the refs in an error (the flag, or
        ``eval track``'s argument).
        """

        def ask(ref: str) -> tuple[tuple[str, str], dict[str, Any]]:
            kind = ref_reader(ref, self.kinds) or _evals.KIND
            reader = kind.reads_refs
            assert reader is not None
            try:
                return (kind.name, ref), reader.fetch(self.client, ref)
            except ApiError as exc:
                if not exc.refuses_the_request:
                    raise
                raise ConfigError(
                    f"unknown {what} {ref!r}: the API did not answer it "
                    f"({reader.call}: {exc.message} [{exc.code}])"
                ) from None
            except NormalizeError as exc:
                raise ConfigError(f"unknown {what} {ref!r}: {reader.call}: {exc}") from None

        if not refs:
            return {}
        with ThreadPoolExecutor(max_workers=max(1, min(len(refs), workers))) as pool:
            return dict(pool.map(ask, refs))

    def open_first_listing(self, scoped: bool) -> None:
        """Fetch the first page of the run's first listing now, so a wrong key or a dead
        network shows before anything is written. Nothing to open when the run lists nothing."""
        if scoped:
            return
        for kind in REGISTRY.values():
            if kind.open_listing is not None and kind.name in self.kinds:
                pages = kind.open_listing(self)
                first = next(pages, [])
                self._first = (kind.name, itertools.chain([first], pages))
                return

    # -- the walk ------------------------------------------------------------

    def start(
        self,
        scoped_sets: Sequence[ScopedSet] | None,
        eval_refs: Sequence[str],
        prefetched: Mapping[tuple[str, str], dict[str, Any]] | None = None,
    ) -> None:
        """Submit every enabled kind's first tasks; each submits the ones its answers need."""
        self.scoped = scoped_sets
        self.eval_refs = list(eval_refs)
        self.prefetched = prefetched or {}
        first, self._first = self._first, None
        for kind in REGISTRY.values():
            if kind.start is not None and kind.name in self.kinds:
                pages = first[1] if first is not None and first[0] == kind.name else None
                kind.start(self, pages)

    def detail(self, record: Record) -> None:
        """Submit the detail call of ``record``'s kind (the writer found it new or changed)."""
        describe = REGISTRY[record.kind].detail
        assert describe is not None
        describe(self, record)


def _refusal(kind: str, call: str, detail: bool) -> str:
    """What a permission refusal of ``call`` means for ``kind``, and what to grant."""
    grant = f"the documents name {REGISTRY[kind].policy} for it"
    if detail:
        return (
            f"the access key may not call {call}, so {REGISTRY[kind].label} that need it were "
            f"recorded as listed, without its answer, and are asked again next run; {grant}"
        )
    return (
        f"the access key may not call {call}, so {kind} was not read and nothing of it is "
        f"deleted in this run; {grant} (or leave it out with --kinds)"
    )
