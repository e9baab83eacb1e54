"""One sync run: the walk's workers feed a bounded queue, one writer drains it in batches
(``writer.py``).

Fetching is concurrent because the API's latency and rate limit set the pace; writing is not,
because SQLite has one writer and history is simplest when one thread decides what changed.
The writer commits whole batches, at most once per ``commit_interval`` (a commit costs a WAL
write and checkpoints, too much to pay for every batch of a database-bound run), so a run
killed at any point leaves whole batches behind, and deletions happen only at the end, in one
transaction, inside scopes whose walk completed.
"""

from __future__ import annotations

import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from catalog import collector, db, deletes, killpoints, locks, runs, source, tracking
from catalog.api.auth import key_problem
from catalog.api.client import ConsoleClient
from catalog.api.pacing import RateLimiter
from catalog.api.record import Recorder, unwritable
from catalog.api.retry import RetryPolicy
from catalog.documented import DriftLog
from catalog.errors import (
    ApiError,
    CatalogError,
    ConfigError,
    DatabaseError,
    ExitCode,
    Interrupted,
)
from catalog.events import (
    Done,
    Failure,
    Page,
    Record,
    ScopedSet,
)
from catalog.kinds import DEFAULT_KINDS, KINDS, REGISTRY
from catalog.logs import unexpected
from catalog.pool import DeepestFirstPool
from catalog.schema import DEFAULT_ACCOUNT, RUN_COUNTS
from catalog.store import LedgerLoader, Store
from catalog.walk import Walker
from catalog.writer import Writer

DEFAULT_BASE_URL = "https://qianfan.baidubce.com"

__all__ = ["RunSummary", "SyncOptions", "run_sync"]


@dataclass
class SyncOptions:
    database_url: str
    access_key: str
    secret_key: str = field(repr=False)  # never in a repr, a log line or a traceback
    base_url: str = DEFAULT_BASE_URL
    #: Whose catalog this is: part of every row's key, so several accounts share a database.
    account: str = DEFAULT_ACCOUNT
    model_sets: Sequence[str] = ()
    include_system: bool = False
    eval_export_ids: Sequence[str] = ()
    migrate: bool = True
    lock_timeout: float = 0.0
    workers: int = 8
    qps: float = 10.0
    batch_size: int = 500
    commit_interval: float = 1.0
    max_delete_share: float = 0.5
    allow_mass_delete: bool = False
    dry_run: bool = False
    timeout: tuple[float, float] = (5.0, 30.0)
    max_attempts: int = 6
    verify_tls: bool = True
    page_size: int = 100
    #: The kinds to read; the others are left as they are (not read, not deleted, not partial).
    #: The opt-in kinds (``Kind.opt_in``) only when named.
    kinds: Sequence[str] = DEFAULT_KINDS
    #: Accept a database bound to another base URL or access key, and bind it to this one.
    rebind_source: bool = False
    #: Write every request and answer (credentials, signatures, dates, request ids removed)
    #: to ``record_dir/calls.jsonl``, for ``fake-server --replay``.
    record_dir: str | None = None
    #: The setting that named the database, for a fix to name (the config file's, or a flag).
    url_setting: str = db.URL_SETTING


@dataclass
class KindCounts:
    """What one run did to one kind: seen, new or back, changed, marked deleted."""

    seen: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0


def flat_counts(kinds: Mapping[str, KindCounts]) -> dict[str, int]:
    """``{kind}_{what}`` columns, as ``sync_runs`` and the JSON logs hold them."""
    return {
        f"{kind}_{what}": getattr(c, what)
        for kind, c in kinds.items()
        for what in RUN_COUNTS
    }


@dataclass
class RunSummary:
    run_id: int | None
    status: str
    kinds: dict[str, KindCounts] = field(default_factory=dict)
    api_calls: int = 0
    api_retries: int = 0
    errors: int = 0
    seconds: float = 0.0
    dry_run: bool = False
    message: str | None = None
    #: Kinds the access key may not read (one warning each; nothing of them deleted).
    denied: tuple[str, ...] = ()
    #: Kinds left out with --kinds.
    skipped: tuple[str, ...] = ()
    #: The request rate the client settled on (None: not paced and never throttled), and how
    #: many throttling answers taught it.
    qps_settled: float | None = None
    throttles: int = 0
    #: Fields where this run's answers differ from the documents for the first time.
    new_drift: list[tuple[str, str, str, str]] = field(default_factory=list)
    account: str = DEFAULT_ACCOUNT

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.PARTIAL if self.status == "partial" else ExitCode.OK

    @property
    def counts(self) -> dict[str, int]:
        """The per-kind counts flattened, as ``sync_runs`` columns are named."""
        return flat_counts(self.kinds)

    def line(self) -> str:
        """The one summary line a cron mail or a log shipper gets per run."""
        parts = []
        for kind in KINDS:
            c = self.kinds.get(kind, KindCounts())
            if kind in self.skipped:
                parts.append(f"{kind} skipped")
                continue
            denied = " (not allowed)" if kind in self.denied else ""
            parts.append(
                f"{kind} {c.seen} seen/{c.inserted} new/{c.updated} changed/{c.deleted} deleted"
                + denied
            )
        head = "dry run (nothing written)" if self.dry_run else f"run {self.run_id} {self.status}"
        if self.account != DEFAULT_ACCOUNT:  # several accounts' lines in one log or mailbox
            head += f" (account {self.account})"
        tail = f"; {self.errors} errors" if self.errors else ""
        rate = ""
        if self.throttles and self.qps_settled is not None:
            rate = f", {self.throttles} throttled, settled at {self.qps_settled:.1f} calls/s"
        return (
            f"{head}: "
            + ", ".join(parts)
            + f"; {self.api_calls} API calls ({self.api_retries} retries{rate})"
            + f"; {self.seconds:.1f}s{tail}"
        )


#: Told of the run's events by name. One whose ``counts_records`` attribute is False (the command
#: line's without a progress display) is not told of each answer recorded ("record").
Observer = Callable[[str, dict[str, Any]], None]


#: Kinds found only through another kind's answers (no listing of their own): a set's modelIds
#: for versions and exports, a job for its fine-tuning tasks, an ended eval task for its report.
NEEDS = {
    kind.name: next(iter(kind.on_parent), kind.parent)
    for kind in REGISTRY.values()
    if kind.start is None and (kind.on_parent or kind.parent)
}


def validate(options: SyncOptions) -> list[str]:
    """Check what can be checked before touching anything; returns the eval refs, normalised."""
    if not options.access_key or not options.secret_key:
        raise ConfigError(
            "missing credentials: set QIANFAN_ACCESS_KEY and QIANFAN_SECRET_KEY "
            "(or --access-key / --secret-key)"
        )
    unusable = key_problem(options.access_key, options.secret_key)
    if unusable is not None:
        raise ConfigError(unusable)
    if not 0 <= options.max_delete_share <= 1:
        raise ConfigError("--max-delete-share must be between 0 and 1")
    if not options.dry_run and db.is_memory_url(options.database_url):
        raise ConfigError(
            f"{options.database_url!r} is an in-memory database, gone when the sync ends: give "
            "a file, e.g. --database-url sqlite:///catalog.db"
        )
    unknown = [k for k in options.kinds if k not in KINDS]
    if unknown or not options.kinds:
        raise ConfigError(
            f"--kinds: unknown kind {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(KINDS)}"
        )
    for kind, needed in NEEDS.items():
        if kind in options.kinds and needed not in options.kinds:
            raise ConfigError(
                f"--kinds: {kind} needs {needed} (its entities are found through {needed}'s "
                f"answers): add {needed}"
            )
    return [tracking.check_ref(ref, "--eval-export-id") for ref in options.eval_export_ids]


def build_client(
    options: SyncOptions, observer: Observer | None = None, stop: threading.Event | None = None
) -> ConsoleClient:
    """The run's client; ``stop`` set (a signal), a failed call is not tried again.

    ``--record``'s folder is checked here, and created by :func:`open_recorder` once the
    database URL has passed its checks.
    """
    if options.record_dir is not None:
        why = unwritable(options.record_dir)
        if why is not None:
            raise ConfigError(f"--record {options.record_dir}: {why}")
    try:
        return ConsoleClient(
            options.base_url,
            options.access_key,
            options.secret_key,
            timeout=options.timeout,
            retry=RetryPolicy(max_attempts=options.max_attempts, stop=stop),
            # --qps is the ceiling; under it the server's throttling sets the pace (0: no
            # client-side pacing at all).
            limiter=RateLimiter(options.qps) if options.qps > 0 else None,
            pool_size=max(options.workers, 1),
            verify=options.verify_tls,
            on_event=observer,
        )
    except ValueError as exc:
        raise ConfigError(f"--base-url: {exc}") from None


def open_recorder(options: SyncOptions, client: ConsoleClient) -> None:
    """Start recording the client's exchanges into ``--record``'s folder, if one was given
    (once: a first sync into a new SQLite file starts it before its first calls)."""
    if options.record_dir is not None and client.recorder is None:
        try:
            client.recorder = Recorder(options.record_dir)
        except OSError as exc:
            raise ConfigError(f"--record {options.record_dir}: {exc.strerror}") from None


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT/SIGTERM ask the writer to stop after its current batch instead of dying mid-way."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, _frame: Any) -> None:
        stop.set()

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def _stopping_first(stop: threading.Event) -> Iterator[None]:
    """The calls before the run: a signal during them is what ends the sync (exit 9), not the
    call it cut short, and nothing after them starts."""
    try:
        yield
    except ApiError:
        if not stop.is_set():
            raise
    if stop.is_set():
        raise Interrupted("interrupted before the run started; nothing was written") from None


def _weight(event: object) -> int:
    """What an event counts for in the writer's queue: a page, its records (at least one)."""
    return max(len(event.records), 1) if isinstance(event, Page) else 1


class _Inbox(queue.Queue[object]):
    """The writer's queue, bounded by records, not events: a ``Page`` counts as the records it
    holds, so pages cut the hand-offs without letting the queue hold more answers in memory.

    ``Queue`` admits an event while its size is under the bound, so the records held stay
    under the bound plus one page.
    """

    def _init(self, maxsize: int) -> None:
        super()._init(maxsize)
        self.records = 0

    def _qsize(self) -> int:
        return self.records

    def _put(self, item: object) -> None:
        super()._put(item)
        self.records += _weight(item)

    def _get(self) -> object:
        item = super()._get()
        self.records -= _weight(item)
        return item


class _Run:
    """The state of one run while it lasts: the inbox, the worker pool and walker, counters (its
    writer, ``writer.Writer``, holds the batches)."""

    #: The writer's connection: set once the database is open, which for a new SQLite file
    #: comes after the first calls.
    conn: Connection

    def __init__(
        self,
        options: SyncOptions,
        client: ConsoleClient,
        observer: Observer | None,
        stop: threading.Event,
    ) -> None:
        self.options = options
        self.client = client
        self.observer = observer
        #: Whether the observer counts each answer recorded (a progress display): the writer
        #: then routes a page's records one by one and tells it of each.
        self.counts_records = observer is not None and getattr(observer, "counts_records", True)
        self.stop = stop
        self.events = _Inbox(maxsize=max(options.batch_size * 4, 1000))
        self.pool = DeepestFirstPool(options.workers)
        self.pending = 0
        self.writer_epoch = 0
        self.pending_lock = threading.Lock()
        self.aborting = False
        self.walking = False
        self.counts = {kind: KindCounts() for kind in KINDS}
        #: Whether ``counts``' seen figures are the store's (the walk ended).
        self.seen_counted = False
        self.failures = 0
        self.whole_listings: set[tuple[str, str]] = set()
        self.drift = DriftLog()
        #: Set by the writer: a listing page, less what the walk's thread settled itself.
        self.settle_page: Callable[[list[Record]], list[Record]] | None = None
        self.walker = Walker(
            client,
            self.submit,
            self.emit,
            include_system=options.include_system,
            page_size=options.page_size,
            kinds=options.kinds,
            drift=self.drift,
            stop=stop,
            # Twice what the writer submits at once (a batch's detail calls).
            room=partial(self.pool.wait_for_room, 2 * options.batch_size),
        )

    # -- worker side ------------------------------------------------------------

    def submit(self, task: Callable[[], None], depth: int = 0) -> None:
        with self.pending_lock:
            self.pending += 1
        self.pool.submit(partial(self._run_task, task), depth)

    def _run_task(self, task: Callable[[], None]) -> None:
        try:
            if not self.aborting and not self.stop.is_set():  # a signal: start nothing new
                task()
        except Exception as exc:  # a bug in a task must end the run visibly, not hang it
            self.emit(Failure(None, "internal", None, f"{type(exc).__name__}: {exc}", fatal=True))
        finally:
            self.release()

    def release(self) -> None:
        with self.pending_lock:
            self.pending -= 1
            done = self.pending == 0
            epoch = self.writer_epoch
        if done:
            self.emit(Done(epoch))

    def emit(self, event: object) -> None:
        settle = self.settle_page
        if settle is not None and isinstance(event, Page) and event.records:
            records = settle(event.records)
            if not records:
                return  # every answer unchanged and marked seen: nothing for the writer
            if len(records) < len(event.records):
                event = Page(records)
        while not self.aborting:
            try:
                self.events.put(event, timeout=0.2)
                return
            except queue.Full:
                continue

    # -- writer side ------------------------------------------------------------

    def commit(self) -> None:
        if not self.options.dry_run:
            self.conn.commit()

    def notify(self, name: str, **data: Any) -> None:
        if self.observer is not None:
            self.observer(name, data)

    def start_walk(
        self,
        scoped: Sequence[ScopedSet] | None,
        eval_refs: Sequence[str],
        prefetched: Mapping[tuple[str, str], dict[str, Any]] | None = None,
    ) -> None:
        """Submit the walk's root tasks. The walk only calls the API and hands events to the
        inbox, so it may start before the writer can write (see ``run_sync``)."""
        if self.walking:
            return
        self.walking = True
        with self.pending_lock:
            self.pending += 1  # held until start() has submitted everything
        try:
            self.walker.start(scoped, eval_refs, prefetched)
        finally:
            self.release()

    def drive(
        self,
        store: Store,
        scoped: Sequence[ScopedSet] | None,
        eval_refs: Sequence[str],
        prefetched: Mapping[tuple[str, str], dict[str, Any]] | None = None,
    ) -> None:
        """Run the walk to its end (starting it unless started), writing batches; returns when
        every task has finished (``writer.Writer``)."""
        Writer(self, store, scoped).drive(scoped, eval_refs, prefetched)

    def shutdown(self) -> None:
        self.aborting = True
        self.pool.shutdown()

    # -- deletes ------------------------------------------------------------

    def apply_deletes(self, store: Store, scoped: bool, tracked: Sequence[str]) -> None:
        """Delete what completed listings did not name, in the kinds read in full this run."""
        kinds = set(self.options.kinds) - self.walker.denied_kinds
        where = deletes.conditions(
            store, self.whole_listings, scoped=scoped, tracked=tracked, kinds=kinds
        )
        counts = deletes.count(store, where)
        kept: dict[str, int] = {}
        if any(doomed for doomed, _ in counts.values()) and (
            self.options.allow_mass_delete
            or not deletes.too_many(counts, self.options.max_delete_share)
        ):  # a delete the guard refuses asks nothing
            listed = deletes.conditions(
                store, self.whole_listings, scoped=scoped, tracked=tracked, kinds=kinds,
                parents=False,
            )
            kept = deletes.confirm(
                store, listed, counts, self.client, workers=self.options.workers, stop=self.stop,
                notify=self.notify, commit=self.commit,
            )
            for kind, n in kept.items():
                self.counts[kind].seen += n
        deleted = deletes.apply(
            store,
            where,
            max_share=self.options.max_delete_share,
            allow_mass_delete=self.options.allow_mass_delete,
            # what was kept is no longer to delete, nor its children: counted again
            counts=None if kept else counts,
        )
        for kind, n in deleted.items():
            self.counts[kind].deleted += n


#: What the first calls learnt: the ``--model-set`` refs resolved (``None``: whole kinds),
#: and the answers of the ``--eval-export-id`` refs checked.
_FirstCalls = tuple[list[ScopedSet] | None, dict[tuple[str, str], dict[str, Any]]]


def _first_calls(run: _Run, new_refs: Sequence[str], known: Sequence[str]) -> _FirstCalls:
    """Resolve ``--model-set``, ask the first listing's first page, check the eval refs not
    tracked yet (``known`` are: a tracked one's failure is that entity's, not a reason to
    refuse the run, and cron lines repeat ``--eval-export-id``). A signal during them ends
    the sync (:func:`_stopping_first`)."""
    options = run.options
    with _stopping_first(run.stop):
        scoped = run.walker.resolve_model_sets(options.model_sets) if options.model_sets else None
        run.walker.open_first_listing(scoped=scoped is not None)
        prefetched = run.walker.resolve_eval_exports(
            [r for r in new_refs if r not in known], options.workers
        )
    return scoped, prefetched


def _new_file(url: str) -> bool:
    """An SQLite database file that does not exist yet (the sync would create it)."""
    path = db.sqlite_file(url)
    return path is not None and not path.exists()


def _plan_engine(options: SyncOptions) -> Engine | None:
    """For a dry run on a database that does not exist yet or has no schema: an empty catalog
    in memory to plan against (everything is an insert), so the plan creates no file and no
    table (migrating the empty database would write the schema a dry run promises not to)."""
    if not options.dry_run:
        return None
    if db.is_memory_url(options.database_url):
        return db.create_engine_for("sqlite://")
    path = db.sqlite_file(options.database_url)
    if path is not None and not path.exists():
        return db.create_engine_for("sqlite://")
    if db.holds_no_catalog(options.database_url):
        return db.create_engine_for("sqlite://")
    return None


def run_sync(
    options: SyncOptions, observer: Observer | None = None, stop: threading.Event | None = None
) -> RunSummary:
    """Run one sync; raise a ``CatalogError`` for anything that is not a success or partial run."""
    started = time.monotonic()
    new_refs = validate(options)
    stop = stop or threading.Event()
    # The client first: a bad --base-url or --record is refused before the database is opened
    # (opening a new SQLite file creates it); --record's folder is created once the database
    # URL has passed its checks.
    client = build_client(options, observer, stop)
    planned = _plan_engine(options)
    run = _Run(options, client, observer, stop)
    # The first calls double as the check of credentials and reachability, made before anything
    # is written (migrations included): a wrong key or a dead network leaves the database as it
    # was. Into an SQLite file that does not exist yet, they come before the file is created
    # (opening it would), so a refused first sync leaves no empty file behind.
    # The account's lock still comes first: a second sync of the account waits for it, or
    # exits 7, before it makes any call.
    first: _FirstCalls | None = None
    fresh = planned is None and _new_file(options.database_url)
    locked = ExitStack()
    try:
        engine = planned or db.writer_engine(  # checked; nothing created
            options.database_url, options.commit_interval
        )
        if fresh and not options.migrate:
            path = db.sqlite_file(options.database_url)
            assert path is not None  # a new file is an SQLite one
            raise DatabaseError(str(db.missing_file(path, "--no-migrate", options.url_setting)))
        if fresh:
            locked.enter_context(locks.writer_lock(engine, options.lock_timeout, options.account))
            if _new_file(options.database_url):  # still, now that the lock is this run's
                open_recorder(options, client)
                with _stop_on_signals(stop):
                    first = _first_calls(run, new_refs, known=[])
        conn = db.connect(engine)
    except BaseException:
        locked.close()
        run.shutdown()
        client.close()
        if client.recorder is not None:
            client.recorder.close()
        raise
    run.conn = conn
    store: Store | None = None
    reader: Engine | None = None
    loader: LedgerLoader | None = None
    try:
        db.stop_waits(conn, stop)
        open_recorder(options, client)
        lock_deadline = time.monotonic() + options.lock_timeout
        if not fresh:
            locked.enter_context(locks.writer_lock(conn, options.lock_timeout, options.account))
        with locked, _stop_on_signals(stop), collector.steady_collector():
            if options.dry_run:
                state = db.schema_state(conn)
                if state == "behind" and db.current_revision(conn) is None:
                    db.upgrade(conn)  # an empty database: plan against an empty catalog
                elif state != "current":
                    problem = db.schema_problem(state, db.current_revision(conn), "--dry-run")
                    raise DatabaseError(str(problem))
            revision = db.current_revision(conn)
            # What is left of --lock-timeout after the account's lock.
            locked.enter_context(locks.legacy_lock(conn, revision, lock_deadline, stop))
            current = revision == db.SCHEMA_HEAD
            known = tracking.tracked_refs(conn, options.account) if current else []
            if first is None:  # an existing database: the calls come under the account's lock
                # ... but not inside a transaction: on SQLite the writer's holds the file's
                # write lock, which other accounts' syncs would wait on for as long as the calls
                # and their retries last.
                conn.rollback()
                first = _first_calls(run, new_refs, known)
            scoped, prefetched = first
            if revision is None and options.migrate:
                # An empty database tracks, binds and leaves to repair nothing, so the walk can
                # start now: its calls go on while the schema is created (all the migrations, a
                # pause the length of many calls), and its events wait in the inbox. Anything
                # that fails before the writer starts stops the walk (``finally`` below).
                run.start_walk(scoped, list(dict.fromkeys(new_refs)), prefetched)
            elif revision == db.SCHEMA_HEAD:
                # A current schema: what the walk needs is known (the tracked refs, read above
                # under the writer lock), so it starts while the run is opened (the source
                # checked, the run recorded, the alive counts taken: on PostgreSQL a pause the
                # length of many calls of an unpaced re-sync).
                run.start_walk(scoped, list(dict.fromkeys([*known, *new_refs])), prefetched)
            db.ensure_schema(conn, options.migrate)
            # A run of whole kinds reads the stored hashes ahead, on a connection of its own,
            # from now (the schema current, the account's rows this run's alone), so that they
            # are ready for the walk's first pages, which wait for them.
            if scoped is None and planned is None and not db.is_memory_url(options.database_url):
                reader = db.reader_engine(options.database_url, options.commit_interval)
                loader = LedgerLoader(reader, options.account)
                loader.start()
            source.bind(
                conn, options.base_url, options.access_key, rebind=options.rebind_source,
                account=options.account,
            )
            if runs.repair_aborted(conn, options.account):
                run.commit()
            tracked = tracking.tracked_refs(conn, options.account)
            refs = list(dict.fromkeys([*tracked, *new_refs]))
            scope = {
                "model_sets": list(options.model_sets),
                "include_system": options.include_system,
                "eval_export_ids": refs,
                "kinds": list(options.kinds),
                "dry_run": options.dry_run,
            }
            run_id, run_ts = runs.start_run(conn, scope, options.account)
            run.commit()
            run.notify("run_start", run_id=run_id, dry_run=options.dry_run,
                       account=options.account, kinds=list(options.kinds))
            summary = RunSummary(
                run_id,
                "running",
                dry_run=options.dry_run,
                account=options.account,
                skipped=tuple(k for k in KINDS if k not in options.kinds),
            )
            try:
                store = Store(conn, run_id, run_ts, options.account, preload=loader)
                for ref in dict.fromkeys(new_refs):
                    if ref not in tracked:
                        tracking.add(conn, ref, options.account, run_ts)
                run.drive(store, scoped, refs, prefetched)
                run.shutdown()
                _count_seen(run, store)
                run.apply_deletes(store, scoped=scoped is not None, tracked=refs)
                killpoints.reached("before_finish")
                summary.denied = tuple(k for k in KINDS if k in run.walker.denied_kinds)
                summary.new_drift = runs.record_drift(conn, run_id, run.drift)
                for kind, call, name, what in summary.new_drift:
                    run.notify("drift", kind=kind, call=call, field=name, drift=what)
                summary.status = "partial" if run.failures else "success"
                error = f"{run.failures} entities failed; see sync_errors" if run.failures else None
                _finish(run, summary, error)
                _analyse_grown(run)
            except CatalogError as exc:
                run.shutdown()
                conn.rollback()
                stopped = isinstance(exc, Interrupted)
                summary.status = "interrupted" if stopped else "failed"
                _finish_failed(run, summary, str(exc), store if stopped else None)
                raise
            except BaseException as exc:
                run.shutdown()
                conn.rollback()
                summary.status = "failed"
                why = db.failure(exc) if isinstance(exc, SQLAlchemyError) else unexpected(exc)
                _finish_failed(run, summary, why, None)
                raise
            summary.seconds = time.monotonic() - started
            run.notify("summary", line=summary.line(), status=summary.status)
            return summary
    finally:
        locked.close()  # idempotent, as the rest
        run.shutdown()  # stops a walk started before a failure in the prelude
        if store is not None:
            store.close()
        if loader is not None:
            loader.close()
        if reader is not None:
            reader.dispose()
        client.close()
        if client.recorder is not None:
            client.recorder.close()
        with suppress(SQLAlchemyError):  # an invalidated connection would reconnect here
            db.stop_waits(conn, None)  # the pooled connection outlives the run
        conn.close()
        engine.dispose()


def _finish_failed(run: _Run, summary: RunSummary, why: str, store: Store | None) -> None:
    """Record a run that did not complete: its counts (``store``: an interrupted run's, whose
    batches were all written; else what was committed), status and why.

    A stop asked while this waits for SQLite's write lock (another process writing) leaves the
    run's row ``running``: the account's next run marks it ``aborted``, with what it committed.
    """
    try:
        if store is not None:
            _count_seen(run, store)
        else:
            assert summary.run_id is not None
            _count_committed(run, summary.run_id)
        _finish(run, summary, why)
    except Interrupted:
        run.conn.rollback()


#: A kind's tables are analysed at the end of a run that inserted at least this many of its
#: entities, and at least as many as it had before (``_analyse_grown``).
ANALYSE_AFTER = 1000


def _analyse_grown(run: _Run) -> None:
    """PostgreSQL: ``ANALYZE`` the tables of each kind whose rows this run (at least) doubled.

    Until autovacuum analyses a new table (it looks once a minute), the planner has no
    statistics on it, and closing a batch's history rows reads the whole history table instead
    of its index: a sync that changes most of a new table's rows is then much slower (the
    README's benchmark section, *The database alone*, has the figures). A first sync, or one
    after large growth, leaves them analysed for the next run and for the BI tools reading
    them now. A failed ANALYZE is the next run's or autovacuum's to do, never the run's failure.
    """
    if run.conn.dialect.name != "postgresql" or run.options.dry_run:
        return
    from sqlalchemy import text

    from catalog.schema import SPECS

    quote = run.conn.dialect.identifier_preparer.quote
    for kind, counts in run.counts.items():
        if counts.inserted >= max(ANALYSE_AFTER, counts.seen // 2):
            spec = SPECS[kind]
            tables = ", ".join(quote(t.name) for t in (spec.table, spec.history))
            try:
                run.conn.execute(text(f"ANALYZE {tables}"))  # names from the schema, not input
                run.conn.commit()
            except SQLAlchemyError:
                run.conn.rollback()


def _count_committed(run: _Run, run_id: int) -> None:
    """A failed run's counts: what its committed batches hold, not the batches rolled back
    with the failure (else a run failed by a full disk would count rows it never left). Its
    seen counts, when the walk ended before the failure (a delete guard's refusal), are the
    store's: the committed rows alone miss the unchanged ones it saw."""
    if run.options.dry_run:
        return  # nothing is committed; its counts are what it would have done
    try:
        counts = runs.committed_counts(run.conn, run_id, run.options.account)
    except SQLAlchemyError:
        return  # the database is gone too: finishing the run fails as well, and the next
        # run repairs it from what was committed
    for kind in KINDS:
        for what in RUN_COUNTS:
            if what != "seen" or not run.seen_counted:
                setattr(run.counts[kind], what, counts[f"{kind}_{what}"])
    run.failures = counts["errors"]


def _count_seen(run: _Run, store: Store) -> None:
    for kind in KINDS:
        run.counts[kind].seen = store.seen_count(kind)
    run.seen_counted = True


def _finish(run: _Run, summary: RunSummary, error: str | None) -> None:
    summary.kinds = {kind: replace(c) for kind, c in run.counts.items()}
    summary.api_calls = run.client.calls_made
    summary.api_retries = run.client.retries
    summary.errors = run.failures
    summary.message = error
    limiter = run.client.limiter
    if limiter is not None:
        summary.qps_settled = limiter.settled_rate()
        summary.throttles = limiter.throttles
    assert summary.run_id is not None
    runs.finish_run(
        run.conn,
        summary.run_id,
        summary.status,
        summary.counts,
        summary.api_calls,
        summary.api_retries,
        run.failures,
        error,
        summary.qps_settled,
    )
    if run.options.dry_run:
        run.conn.rollback()
    else:
        run.conn.commit()
