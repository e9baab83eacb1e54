"""The run's writer: the one thread that turns the walk's events into written batches.

The walk's workers put events in the run's inbox (``events.py``); this thread takes them out and
is the only one that writes. Answers are gathered per kind into batches of ``--batch-size``. A
batch's unchanged answers are only marked seen (``Store.mark_unchanged``); the others are built
into rows and written (``Store.write_batch``). Completed listings, kept ids and failures are
buffered and go to the database with the next batch. An answer that may need its kind's detail
call waits until the store says whether it does, and the call is then a task of the writer's
own on the walk's pool. Commits are paced (``CommitPacer``): whole batches, at most once per
``commit_interval``.
"""

from __future__ import annotations

import queue
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from catalog import killpoints, normalize, runs
from catalog.errors import ApiDown, Interrupted, RunFailed
from catalog.events import (
    STOPPED,
    Done,
    Failure,
    Keep,
    Page,
    Record,
    ScopeDone,
    ScopedSet,
    back_from_detail,
)
from catalog.kinds import KINDS, REGISTRY
from catalog.store import Store

if TYPE_CHECKING:
    from catalog.sync import _Run



class CommitPacer:
    """Commits written work at most once per ``interval`` seconds, and on demand.

    A commit costs a WAL write and now and then a checkpoint; a writer that commits every small
    batch spends most of a database-bound run there. Pacing keeps crash safety (only whole
    batches are ever committed) while bounding how much work a crash can lose to ``interval``.
    """

    def __init__(self, commit: Callable[[], None], interval: float) -> None:
        self._commit = commit
        self.interval = interval
        self.last = time.monotonic()
        self.pending = False

    def wrote(self) -> None:
        """Whole batches were written: commit them if the interval has passed."""
        self.pending = True
        self.idle()

    def idle(self, open_transaction: bool = False) -> None:
        """Nothing new arrived: commit what is pending once the interval has passed, or end an
        ``open_transaction`` that wrote nothing (on SQLite it holds the one write lock that
        other accounts' syncs wait for)."""
        if (self.pending or open_transaction) and time.monotonic() - self.last >= self.interval:
            self.now()

    def now(self) -> None:
        self._commit()
        self.last = time.monotonic()
        self.pending = False

class Writer:
    """One run's batches and buffers, and the rules that route each event into them.

    ``run`` is the run written for: its connection, counters, walker, inbox and stop signal.
    """

    def __init__(self, run: _Run, store: Store, scoped: Sequence[ScopedSet] | None) -> None:
        self.run = run
        self.store = store
        options = run.options
        self.batch_size = options.batch_size
        self.batches: dict[str, list[Record]] = {kind: [] for kind in KINDS}
        self.scope_buf: dict[str, list[str]] = {kind: [] for kind in KINDS}
        self.keep_buf: dict[str, list[str]] = {kind: [] for kind in KINDS}
        #: Answers that may need their kind's detail call, waiting to learn whether they do.
        self.waiting: dict[str, list[Record]] = {kind: [] for kind in KINDS}
        #: Answers sent to their detail call by the writer, until they come back detailed.
        self.detailing: dict[tuple[str, str], Record] = {}
        self.errors: list[Failure] = []
        #: Items the whole listings named, per kind: totals for the progress display.
        self.listed: Counter[str] = Counter()
        #: Listings whose end makes a kind's total known (for the progress display).
        self.set_listings = 1 + options.include_system if scoped is None else 0
        #: Rows written so far.
        self.written = 0
        #: When each kind's unwritten batch got its first record. A batch that has not filled
        #: within ``commit_interval`` is written then, as a written one is committed: a paced
        #: sync's writer is idle between calls, and otherwise wrote every kind's last partial
        #: batch after the walk's last call, all at once (docs/benchmark-history.md, many
        #: accounts). With ``commit_interval`` 0 (commit every batch) a second: at once, every
        #: batch would be a single record.
        self.opened: dict[str, float] = {}
        self.interval = options.commit_interval or 1.0
        self.pacer = CommitPacer(self._commit_batches, options.commit_interval)
        #: Per kind, its (always_detail, wants_detail) hooks: looked up once per record.
        self.hooks = {
            name: (kind.always_detail, kind.wants_detail) for name, kind in REGISTRY.items()
        }
        if scoped is not None:
            run.notify("total", kind="model_set", total=len(scoped))
        if not run.counts_records:  # a progress display counts each record here
            run.settle_page = self.unsettled

    def unsettled(self, records: list[Record]) -> list[Record]:
        """In the walk's thread, before a listing page is handed here: the page less the
        answers stored unchanged (``Store.settle_unchanged``). A kind asked in detail every run
        hands on every answer, as ``route_page`` takes them one by one."""
        kind = records[0].kind
        always, wants = self.hooks[kind]
        if always is not None:
            return records
        run = self.run
        self.store.wait_for_ledger(kind, lambda: run.aborting or run.stop.is_set())
        return self.store.settle_unchanged(kind, records, wants)

    # -- the loop ---------------------------------------------------------------------------

    def drive(
        self,
        scoped: Sequence[ScopedSet] | None,
        eval_refs: Sequence[str],
        prefetched: Mapping[tuple[str, str], dict[str, Any]] | None,
    ) -> None:
        """Run the walk to its end (starting it unless started), writing batches; returns when
        every task has finished."""
        run = self.run
        run.start_walk(scoped, eval_refs, prefetched)
        while True:
            try:
                # While ledgers are being read, the walk may wait for the next one taken up.
                event = run.events.get(timeout=0.01 if self.store.ledgers_due() else 0.2)
            except queue.Empty:
                event = None
            if run.stop.is_set():
                # What was fetched before the signal is written, queued or not (on a new
                # database the walk runs ahead of the writer while the schema is created);
                # the tasks it would start are not (``_Run._run_task``).
                while event is not None:
                    if not isinstance(event, Done):
                        self.handle(event)
                    try:
                        event = run.events.get_nowait()
                    except queue.Empty:
                        event = None
                self.write_undetailed()
                self.flush(KINDS)
                raise Interrupted(
                    "interrupted: stopped after the current batch; nothing was deleted"
                )
            self.store.take_up_ready()  # then the walk's thread settles the kind's pages
            # written batches wait at most commit_interval, even between batches; so do
            # batches not yet written
            if self.opened:
                now = time.monotonic()
                aged = [k for k, since in self.opened.items() if now - since >= self.interval]
                if aged:
                    self.flush(aged, commit=False)
            self.pacer.idle(run.conn.in_transaction())
            if event is None:
                continue
            if isinstance(event, Done):
                with run.pending_lock:
                    stale = event.epoch != run.writer_epoch
                if stale or self.ask_details():
                    continue  # records of tasks the writer submitted are to come, then a Done
                break
            self.handle(event)
        self.flush(KINDS)

    def handle(self, event: object) -> None:
        """One event of the walk (not ``Done``) into the batches, buffers and counts."""
        if isinstance(event, Page):
            self.route_page(event.records)
        elif isinstance(event, Record):
            self.route(event)
        elif isinstance(event, Keep):
            self.keep_buf[event.kind].append(event.key)
        elif isinstance(event, ScopeDone):
            if event.count is not None:  # a whole listing, not a parent's scope
                self.run.whole_listings.add((event.kind, event.key))
                self.listed[event.kind] += event.count or 0
                if event.kind == "model_set":
                    self.set_listings -= 1
                if event.kind != "model_set" or self.set_listings == 0:
                    self.run.notify("total", kind=event.kind, total=self.listed[event.kind])
                if self.waiting[event.kind]:
                    # Its listing will add none: ask now, so these calls keep the workers
                    # busy instead of waiting for the walk to run dry (``Done``), which
                    # left the workers idle while the writer wrote its last batches.
                    self.ask_details()
            else:
                self.scope_buf[event.kind].append(event.key)
        elif isinstance(event, Failure):
            self.failure(event)
            if event.fatal:
                self.flush(KINDS)
                if isinstance(event.error, ApiDown):
                    raise event.error  # exit 5: the API could not be reached
                raise RunFailed(event.message) from event.error

    # -- routing ----------------------------------------------------------------------------

    def route(self, event: Record) -> None:
        """To a detail call, to the answers waiting to learn whether they need one, or to
        the batch of its kind."""
        if event.detailed:
            self.detailing.pop((event.kind, str(event.key)), None)
        else:
            always, wants = self.hooks[event.kind]
            if always is not None and always(event.obj):
                self.detail(event)  # asked every run, whatever is stored
                return
            if wants is not None and wants(event.obj):
                held = self.waiting[event.kind]
                held.append(event)
                if len(held) >= self.batch_size:
                    self.ask_details()
                return
        self.add(event)

    def route_page(self, records: list[Record]) -> None:
        """``route`` for a listing page's records (one kind, none detailed yet), a page at a
        time: on a no-op re-sync of a long listing, routing item by item is a large part of
        the writer's work. A kind asked in detail every run, or a progress display that
        counts each record, takes them one by one."""
        if not records:
            return
        kind = records[0].kind
        always, wants = self.hooks[kind]
        if always is not None or self.run.counts_records:
            for record in records:
                self.route(record)
            return
        listed = records
        if wants is not None:
            held = self.waiting[kind]
            listed = []
            for record in records:
                (held if wants(record.obj) else listed).append(record)
            if len(held) >= self.batch_size:
                self.ask_details()
        batch_size = self.batch_size
        start = 0
        while start < len(listed):  # batches of --batch-size, as one by one
            batch = self.batch_of(kind)
            end = start + batch_size - len(batch)
            batch.extend(listed[start:end])
            start = end
            if len(batch) >= batch_size:
                self.flush((kind,), commit=False)

    def batch_of(self, kind: str) -> list[Record]:
        """The kind's batch to add to, its age counted from the first record added."""
        batch = self.batches[kind]
        if not batch:
            self.opened[kind] = time.monotonic()
        return batch

    def add(self, record: Record) -> None:
        batch = self.batch_of(record.kind)
        batch.append(record)
        self.counted(record)
        if len(batch) >= self.batch_size:
            self.flush((record.kind,), commit=False)

    def counted(self, record: Record) -> None:
        """Tell the progress display (if any) of one more answer recorded."""
        run = self.run
        if run.counts_records:
            run.notify(
                "record",
                kind=record.kind,
                row=record.build() if record.kind == "model_set" else None,  # its versions
                api_calls=run.client.calls_made,
            )

    def failure(self, event: Failure) -> None:
        self.run.failures += 1
        self.errors.append(event)
        self.run.notify(
            "error",
            kind=event.kind,
            call=event.call,
            entity_id=event.entity_id,
            message=event.message,
        )

    # -- detail calls -----------------------------------------------------------------------

    def awaiting(self, record: Record) -> None:
        """Remember an answer until it comes back detailed (a stop writes it if not)."""
        self.detailing[(record.kind, str(record.key))] = record

    def detail(self, record: Record) -> None:
        """Submit a detail call from the writer: any end of the walk told before is stale."""
        run = self.run
        with run.pending_lock:
            run.writer_epoch += 1
        self.awaiting(record)
        run.walker.detail(record)

    def route_waiting(self, needing: Callable[[Record], None]) -> bool:
        """Route the waiting answers: those new or changed (or never detailed) to
        ``needing``, the batch for the rest. True if any went to ``needing``."""
        sent = False
        for kind, records in self.waiting.items():
            if not records:
                continue
            self.waiting[kind] = []
            spec = REGISTRY[kind]
            # The settled ones (the same answer, detailed before) are marked seen there.
            wanted = self.store.needs_detail(
                kind, {str(r.key): r.raw_hash for r in records}, spec.unanswered,
                spec.detail_context,
            )
            for record in records:
                key = str(record.key)
                if key in wanted:
                    needing(replace(record, previous=wanted[key]))
                    sent = True
                else:
                    self.counted(record)
        return sent

    def ask_details(self) -> bool:
        """A detail call for each waiting answer that needs one. True if calls were
        submitted (the walk goes on)."""
        return self.route_waiting(self.detail)

    def write_undetailed(self) -> None:
        """At a stop: answers fetched but not back from their detail call (not asked, or
        asked and not answered: the tasks a stop does not start) are written as their
        listings gave them, as when that call fails: stored without a hash, so the next
        run asks for it. Those found to need no detail call are marked seen."""
        self.route_waiting(self.awaiting)
        for record in self.detailing.values():
            self.add(back_from_detail(record, None, STOPPED))
        self.detailing.clear()

    # -- writing ----------------------------------------------------------------------------

    def rows_of(self, kind: str, records: list[Record]) -> list[dict[str, Any]]:
        """Rows for the records whose answers changed; the others are only marked seen, as are
        stored entities whose answer is incomplete (``Record.incomplete``)."""
        hashes = {str(r.key): r.raw_hash for r in records if not r.detailed}
        changed = self.store.mark_unchanged(kind, hashes)
        if len(hashes) == len(records) and not changed:
            return []  # a no-op batch: nothing to build
        partial = REGISTRY[kind].partial_listing
        incomplete = [str(r.key) for r in records if r.incomplete]
        stored = self.store.stored_alive(kind, incomplete) if incomplete else set()
        rows = []
        for record in records:
            if not record.detailed and str(record.key) not in changed:
                continue
            if record.incomplete and str(record.key) in stored and partial:
                self.keep_buf[kind].append(str(record.key))  # left as stored, seen
                continue
            if record.incomplete == STOPPED and str(record.key) not in stored:
                continue  # new, stopped before its detail: the next run stores it whole
            try:
                row = record.build()
            except normalize.NormalizeError as exc:
                where = f"{record.call} {record.key}"
                self.failure(Failure(kind, record.call, str(record.key),
                                     f"{where}: malformed answer: {exc}", "Malformed"))
                self.keep_buf[kind].append(str(record.key))  # listed, so not deleted for it
                continue
            row["raw_hash"] = record.raw_hash
            rows.append(row)
        return rows

    def flush(self, kinds: Sequence[str], commit: bool = True) -> None:
        """Write the batches of ``kinds``, then every buffered scope, kept id and failure;
        commit now (``commit``) or when the pacer says."""
        store, counts = self.store, self.run.counts
        for kind in kinds:
            records, self.batches[kind] = self.batches[kind], []
            self.opened.pop(kind, None)
            rows = self.rows_of(kind, records) if records else []
            if rows:
                result = store.write_batch(kind, rows)
                self.written += len(rows)
                killpoints.reached("batch_written")
                counts[kind].inserted += len(result.inserted) + len(result.restored)
                counts[kind].updated += len(result.updated)
        for kind in KINDS:
            store.add_scopes(kind, self.scope_buf[kind])
            self.scope_buf[kind] = []
            store.keep(kind, self.keep_buf[kind])
            self.keep_buf[kind] = []
        for f in self.errors:
            runs.record_error(
                self.run.conn, store.run_id, f.call, f.message, f.kind, f.entity_id, f.code,
                store.account,
            )
        self.errors.clear()
        if commit:
            self.pacer.now()
        else:
            self.pacer.wrote()

    def _commit_batches(self) -> None:
        self.run.commit()
        if self.written:
            killpoints.reached("batch_committed")
