"""Writing batches of entity rows: current state, history and changes, in the caller's transaction.

Per batch the store reads the stored versions of just that batch's keys (one keyed SELECT, so
memory is bounded by the batch, not the catalog), decides per row whether it is new, changed, back
from deletion or unchanged, and writes only what changed, in bulk: one upsert (guarded by
``IS DISTINCT FROM`` so the database itself never rewrites an unchanged row), one history close,
one history insert, one change insert. Unchanged rows cost a read and a temporary row.

Which entities a run saw is decided in SQL at the end of a walk: a row this run wrote carries the
run in ``last_seen_run_id``, and the keys of rows found unchanged go to a connection-local
temporary table, so unchanged rows write nothing to the catalog's own tables. Before any of
that, an answer whose hash equals the stored one is settled without being normalised: in memory,
against the kind's ``Ledger`` of stored hashes (read on a connection of its own while the run
goes on), or, until that is ready and for whatever it cannot say, in the database, where one
statement per batch marks every such key seen. Only the others come back to be written.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    ClauseElement,
    Column,
    ColumnElement,
    Connection,
    Engine,
    Insert,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    null,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import True_, UnaryExpression
from sqlalchemy.sql.selectable import ScalarSelect, TableValuedAlias

from catalog.bulk import Bulk, driver_rows, has_json_each, one_of, pairs, pairs_json, to_json
from catalog.events import KEPT_ONCE, UNANSWERED, Record
from catalog.kinds import REGISTRY
from catalog.ledger import ANSWERED, Ledger
from catalog.schema import DEFAULT_ACCOUNT, SPECS, KindSpec, changes
from catalog.types import UTCDateTime

_log = logging.getLogger(__name__)

_temp = MetaData()
#: Keys this run saw, per kind. TEMPORARY: private to the writer's connection, gone after it.
seen = Table(
    "catalog_run_seen",
    _temp,
    Column("kind", String(32), nullable=False),
    Column("entity_key", String, nullable=False),
    prefixes=["TEMPORARY"],
)
#: Scopes whose walk completed in this run, per kind (e.g. model sets whose versions all answered).
scopes = Table(
    "catalog_run_scope",
    _temp,
    Column("kind", String(32), nullable=False),
    Column("scope_key", String, nullable=False),
    prefixes=["TEMPORARY"],
)


class _Marked:
    """Per kind, how many rows the marking statement put in the temporary table, and the keys
    that may have been put there twice: what the run's end needs to count each kind's distinct
    seen keys without sorting the whole table (``count(DISTINCT)`` sorts every key, and on a
    long listing that sort dominates the end of a no-op re-sync).

    A listing may name a key twice (pages that shift under it), so rows can outnumber keys.
    Every key batched for marking sets one bit of a fixed-size bitmap, chosen by its string
    hash; a key that finds its bit already set is a suspect. A repeated key always is one (its
    first naming set the bit); the other suspects share a bit with an earlier key. Counting
    the suspects' rows in the table then gives the repeats exactly. Memory stays flat: the
    bitmap's 2 MiB, and at most ``CAP`` suspects, beyond which the store counts the table.
    """

    BITS = 1 << 24
    #: Keys that share a bit number about keys**2 / (2 * BITS): 300 for 100,000 keys.
    CAP = 50_000

    def __init__(self) -> None:
        self.rows: dict[str, int] = dict.fromkeys(SPECS, 0)
        self.suspects: set[str] | None = set()
        self._bits = bytearray(self.BITS // 8)

    def add(self, kind: str, keys: Iterable[str], inserted: int) -> None:
        """``keys`` were batched for marking and ``inserted`` of them marked."""
        self.rows[kind] += inserted
        suspects = self.suspects
        if suspects is None:
            return
        bits, mask = self._bits, self.BITS - 1
        for key in keys:  # a str caches its hash: the dictionary it came in computed it
            n = hash(key) & mask
            byte, bit = n >> 3, 1 << (n & 7)
            if bits[byte] & bit:
                suspects.add(key)
            else:
                bits[byte] |= bit
        if len(suspects) > self.CAP:
            self.suspects = None


@dataclass
class BatchResult:
    inserted: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    unchanged: int = 0

    @property
    def written(self) -> int:
        return len(self.inserted) + len(self.updated) + len(self.restored)


def _upsert_statement(spec: KindSpec, dialect: str) -> Insert:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(spec.table)
    excluded = stmt.excluded
    t = spec.table
    set_: dict[str, Any] = {
        name: excluded[name] for name in (*spec.tracked, "raw", "raw_hash", "last_seen_run_id")
    }
    set_["deleted_at"] = null()  # SQL NULL, not a parameter bound per row
    set_["deleted_run_id"] = null()
    changed = or_(
        *[t.c[name].is_distinct_from(excluded[name]) for name in spec.tracked],
        t.c.deleted_at.is_not(None),
    )
    return stmt.on_conflict_do_update(
        index_elements=["account", spec.key], set_=set_, where=changed
    )


#: Per kind, a getter of the tracked fields in order (every kind tracks two fields or more).
_TRACKED = {kind: itemgetter(*spec.tracked) for kind, spec in SPECS.items()}


class Store:
    """Writes for one run of one account on one connection. Never commits: the caller owns the
    transaction. Every statement carries the account: a run never reads, writes or deletes
    another account's rows, even where two accounts hold the same API ids."""

    #: Fingerprints kept per kind for a ledger not ready yet (``_waiting``): 800 KB.
    EARLY_CAP = 100_000

    def __init__(
        self,
        conn: Connection,
        run_id: int,
        run_ts: dt.datetime,
        account: str = DEFAULT_ACCOUNT,
        *,
        preload: Engine | LedgerLoader | None = None,
    ) -> None:
        """``preload``: the ``LedgerLoader`` reading each kind's stored hashes into a ``Ledger``
        (or an engine to start one on), so that answers are compared in memory. Right for a run
        that lists whole kinds; a scoped run compares a handful of answers, for which a scan of
        every kind would cost more. Until a kind's ledger is ready, it compares in SQL."""
        self.conn = conn
        self.run_id = run_id
        self.run_ts = run_ts
        self.account = account
        self.dialect = conn.dialect.name
        self._json_each = self.dialect != "sqlite" or has_json_each(conn)
        _temp.create_all(conn, checkfirst=True)
        # A pooled connection may have served an earlier run: its "seen" keys must not count.
        conn.execute(seen.delete())
        conn.execute(scopes.delete())
        self._bulk: dict[tuple[str, str], Bulk] = {}
        #: Per kind, the alive entities this run saw, as ``seen_count`` last counted them;
        #: dropped by anything that writes the kind's rows or its seen keys afterwards.
        self._seen_alive: dict[str, int] = {}
        #: Per kind, how many entities were alive before this run wrote anything: the delete
        #: guard's denominator (rows this run inserts must not dilute the share it deletes).
        self.alive_before = {kind: self._alive(spec) for kind, spec in SPECS.items()}
        #: Kinds whose seen keys all came from the marking statement (``_marking``): each names
        #: an alive row of this account that this run did not write. For them ``seen_count`` counts
        #: the keys, not the table, and nothing has changed what is alive since ``alive_before``.
        #: Anything else that writes a kind's rows or its seen keys takes the kind out.
        self._marked_only: set[str] = set(SPECS)
        self._marked = _Marked()
        #: Per kind, the ledger in use (None: the kind compares in SQL for the rest of the run).
        self._ledgers: dict[str, Ledger | None] = {}
        #: Per kind whose ledger is not ready yet: the fingerprints of the rows SQL marked
        #: seen, and of those the run wrote or deleted; applied when it is taken up.
        self._early: dict[str, array[int]] = {kind: array("q") for kind in SPECS}
        self._stale: dict[str, array[int]] = {kind: array("q") for kind in SPECS}
        #: Kinds whose ledger may count a key that is also in the temporary table (a kept
        #: key): their seen count needs the ledger's keys listed. Every key the store writes
        #: is taken out of the ledger instead (``write_batch``), so that the two never meet.
        self._inexact: set[str] = set()
        #: Per kind, the columns whose NULL means its detail must be asked again.
        self._answered = {kind: REGISTRY[kind].unanswered for kind in SPECS}
        #: Notified as each kind's entry in ``_ledgers`` is set (``wait_for_ledger``).
        self._taken = threading.Condition()
        self._loader: LedgerLoader | None = None
        if preload is not None:
            if isinstance(preload, Engine):
                preload = LedgerLoader(preload, account)
                preload.start()
            self._loader = preload
            # A kind with no alive row has no ledger to wait for (a first sync: none has).
            self._taken_up((kind, None) for kind, n in self.alive_before.items() if not n)
        #: Per kind, the positions of carried fields in a stored tuple (key, *tracked, deleted_at).
        self._carried = {
            kind: [(name, 1 + spec.tracked.index(name)) for name in spec.carried]
            for kind, spec in SPECS.items()
        }

    def _alive(self, spec: KindSpec) -> int:
        t = spec.table
        stmt = (
            select(func.count())
            .select_from(t)
            .where(self._whole(spec), t.c.deleted_at.is_(None))
        )
        return int(self.conn.execute(stmt).scalar_one())

    def _whole(self, spec: KindSpec) -> ColumnElement[bool]:
        return whole(spec, self.dialect, self.account)

    # -- batches ------------------------------------------------------------

    def write_batch(self, kind: str, rows: Sequence[dict[str, Any]]) -> BatchResult:
        """Upsert rows of one kind; history and change rows for what changed; mark them seen."""
        spec = SPECS[kind]
        result = BatchResult()
        if not rows:
            return result
        self._seen_changed(kind)
        latest: dict[Any, dict[str, Any]] = {}
        for row in rows:  # an id repeated within a batch: the last answer wins
            latest[row[spec.key]] = row
        stored = self._stored(spec, list(latest))
        to_write: list[dict[str, Any]] = []
        change_rows: list[dict[str, Any]] = []
        close_keys: list[Any] = []
        unchanged: list[Any] = []
        carried = self._carried[kind]
        refresh: list[dict[str, Any]] = []
        for key, row in latest.items():
            old = stored.get(key)
            for name, index in carried:
                if name not in row:
                    row[name] = None if old is None else old[index]
            if old is None:
                result.inserted.append(str(key))
                change_rows.append(
                    self._change(key, "insert", None, None, self._tracked(spec, row))
                )
            elif old[-2] is not None:  # deleted_at
                result.restored.append(str(key))
                change_rows.append(
                    self._change(key, "restore", None, None, self._tracked(spec, row))
                )
            else:
                was: tuple[Any, ...] = old[1:-2]  # (key, *tracked, deleted_at, raw_hash)
                diff = [
                    change
                    for change in zip(spec.tracked, was, self._values_of(spec, row), strict=True)
                    if change[1] != change[2]
                ]
                if not diff:
                    unchanged.append(key)
                    if row.get("raw_hash") is not None and row["raw_hash"] != old[-1]:
                        # the answer changed outside the typed columns
                        refresh.append(
                            {
                                "refresh_key": key,
                                "raw": row.get("raw", {}),
                                "raw_hash": row["raw_hash"],
                            }
                        )
                    continue
                result.updated.append(str(key))
                close_keys.append(key)
                change_rows.extend(
                    self._change(key, "update", name, before, after) for name, before, after in diff
                )
            to_write.append(row)
        result.unchanged = len(unchanged)
        # Out of the kind's ledger, every key handled here, as stored before and as answered
        # now: its row is written, or its key goes to the temporary table.
        self._forget(kind, (
            (str(key), digest)
            for key, row in latest.items()
            for digest in (row.get("raw_hash"), stored[key][-1] if key in stored else None)
        ))
        if to_write and self._write(spec, to_write, close_keys, change_rows) != len(to_write):
            # The database judged a row unchanged after all (its guard is stricter than Python's
            # comparison), so that row kept its old last_seen_run_id: mark the whole batch seen.
            unchanged = list(latest)
        self._prepared(kind, "seen").execute(
            self.conn, [{"entity_key": str(key)} for key in unchanged]
        )
        if refresh:
            self._prepared(kind, "refresh").execute(self.conn, refresh)
        return result

    def mark_unchanged(self, kind: str, hashes: Mapping[str, str]) -> set[str]:
        """Mark seen the keys (as text) whose stored answer is alive with this very hash; returns
        the others, the only ones to normalise and compare. On a no-op re-sync that is one
        statement per batch and nothing comes back to Python."""
        return set(self._settle(SPECS[kind], hashes))

    def settle_unchanged(
        self,
        kind: str,
        records: list[Record],
        wants: Callable[[Mapping[str, Any]], bool] | None,
    ) -> list[Record]:
        """``records`` (one listing page of ``kind``) less those its ledger holds unchanged,
        which it marks seen; ``wants``: the kind's hook picking answers to hand on whatever
        their hash (a detail call may be due). Called by the walk's thread, before the page
        goes to the writer.

        On a no-op re-sync of a long listing, handing every record to the writer's thread cost
        more than comparing it: each record made on one core was read on the other. Only a
        ledger the writer has taken up (``_ledger``: what SQL marked before it was ready is
        applied) settles here, and only until its counted keys are listed (``_list_counted``);
        anything else goes to the writer as before, which compares it as it always did.
        """
        ledger = self._ledgers.get(kind)
        if ledger is None:
            return records
        # An answer the kind may want detailed is settled as the writer's ``needs_detail``
        # settles it: unchanged only where the stored row's detail was answered too.
        plain: dict[str, str] = {}
        answered: dict[str, str] = {}
        # (A kind with no ``unanswered`` column settles them by their hash alone there.)
        detail = wants if self._answered[kind] else None
        for r in records:
            if not r.detailed:
                key = str(r.key)
                # A key named twice on a page: its last answer counts, as in a batch.
                if detail is not None and detail(r.obj):
                    answered[key] = r.raw_hash
                    plain.pop(key, None)
                else:
                    plain[key] = r.raw_hash
                    answered.pop(key, None)
        missed = ledger.settle_counted(plain, answered)
        if missed is None or len(missed) == len(plain) + len(answered):
            return records
        self._seen_changed(kind, marking=True)
        return [
            r for r in records
            if (key := str(r.key)) in missed or (key not in plain and key not in answered)
        ]

    def wait_for_ledger(self, kind: str, give_up: Callable[[], bool]) -> None:
        """Hold the walk's thread until the writer has taken up the kind's ledger, or found
        it has none, or ``give_up()``.

        A page handed on before then is compared by the writer in SQL, which on a no-op
        re-sync of a long listing cost more than the wait: the writer's statements and the
        loader's scan then shared the GIL with the walk, and the scan took several times its
        own length. Only a run with a loader waits; the loader always ends (its ``finally``).
        """
        if self._loader is None:
            return
        with self._taken:
            while kind not in self._ledgers and not give_up():
                self._taken.wait(0.05)

    def ledgers_due(self) -> bool:
        """Whether the loader may still hand the writer a ledger to take up."""
        return self._loader is not None and len(self._ledgers) < len(SPECS)

    def _taken_up(self, entries: Iterable[tuple[str, Ledger | None]]) -> None:
        """Record each kind's ledger (None: it compares in SQL) and wake the walk's waits."""
        with self._taken:
            self._ledgers.update(entries)
            self._taken.notify_all()

    def needs_detail(
        self,
        kind: str,
        hashes: Mapping[str, str],
        unanswered: Sequence[str] = (),
        context: Sequence[str] = (),
    ) -> dict[str, dict[str, Any] | None]:
        """The keys (as text) whose detail must be asked for (new, back, answered differently
        than last stored, or never answered: one of the ``unanswered`` columns still NULL), each
        with its stored ``context`` columns (None when new). The others are settled: the same
        answer, detailed before. They are marked seen here, with nothing left to write."""
        spec = SPECS[kind]
        return {
            key: None if found is None else dict(zip(context, values, strict=True))
            for key, (found, *values) in self._settle(spec, hashes, unanswered, context).items()
        }

    def _settle(
        self,
        spec: KindSpec,
        hashes: Mapping[str, str],
        answered: Sequence[str] = (),
        context: Sequence[str] = (),
    ) -> dict[str, tuple[Any, ...]]:
        """Mark seen the keys whose stored row is alive, has the hash given and every
        ``answered`` column set; per other key, (its stored key or None when new, *``context``).

        The kind's ledger, once ready, settles what it holds. The rest is compared in the
        database: one INSERT into the temporary "seen" table joins
        the batch's (key, hash) pairs with the stored rows, and only when it marked fewer than
        all does a second statement fetch the rest. Per unchanged item that leaves a dictionary
        entry and its JSON text in Python, instead of a fetched row, a comparison and a bound
        parameter row (cProfile of the no-op re-sync: those were most of the writer's time).
        """
        if not hashes:
            return {}
        ledger = self._ledger(spec.kind)
        if ledger is not None and (not answered or tuple(answered) == self._answered[spec.kind]):
            listed: list[str] = []
            missed = ledger.settle(hashes, bool(answered), listed)
            if len(missed) < len(hashes):
                self._seen_changed(spec.kind, marking=True)
            if listed:  # the run's end has asked for the seen keys in the table already
                self._prepared(spec.kind, "seen").execute(
                    self.conn, [{"entity_key": key} for key in listed]
                )
            if not missed:
                return {}
            hashes = missed
        # Without JSON functions the keys are compared in Python and marked by a plain insert.
        self._seen_changed(spec.kind, marking=self._json_each)
        others = self._settle_in_sql(spec, hashes, answered, context)
        if len(others) < len(hashes):
            early = self._early[spec.kind]
            self._waiting(spec.kind, early, ((k, d) for k, d in hashes.items() if k not in others))
        return others

    def _settle_in_sql(
        self,
        spec: KindSpec,
        hashes: Mapping[str, str],
        answered: Sequence[str],
        context: Sequence[str],
    ) -> dict[str, tuple[Any, ...]]:
        """``_settle`` without a ledger: one statement marks, a second fetches the others."""
        if not self._json_each:
            return self._settle_in_python(spec, hashes, answered, context)
        text = {"pairs": pairs_json(hashes)}
        marked = self._marking(spec, tuple(answered)).execute_one(self.conn, text)
        self._marked.add(spec.kind, hashes, marked)
        if marked == len(hashes):
            return {}
        t = spec.table
        given = pairs(self.dialect)

        def stored(column: ColumnElement[Any]) -> ScalarSelect[Any]:
            """The stored row's ``column`` (deleted or not), looked up by the batch's key."""
            return select(column).where(self._by_key(spec, given)).scalar_subquery()

        # What the marking did not mark: no alive, answered row with this hash. Scalar
        # subqueries on the key, as in the marking, so the keys are looked up one by one
        # whatever the statistics say (an outer join was a scan of the table per batch).
        same = self._alive_hash(spec, given, answered)
        rest = self.conn.execute(
            select(given.c.key, stored(spec.key_column), *(stored(t.c[c]) for c in context))
            .select_from(given)
            .where(same.is_distinct_from(given.c.value)),
            text,
        )
        return {row[0]: tuple(row[1:]) for row in rest}

    def _ledger(self, kind: str) -> Ledger | None:
        """The kind's ledger once the loader has it (None until then, or for good when it
        has none), taken up with what SQL marked and the run changed before that."""
        if kind in self._ledgers:
            return self._ledgers[kind]
        if self._loader is None or kind not in self._loader.ready:
            return None
        held = self._loader.ready[kind]
        if held is not None:
            held.mark_listed(self._early[kind])
            held.forget(self._stale[kind])  # after the marks: a row written since is GONE
        self._early[kind], self._stale[kind] = array("q"), array("q")
        self._taken_up([(kind, held)])
        return held

    def take_up_ready(self) -> None:
        """Take up every ledger the loader has ready (``_ledger``): the walk's thread settles a
        kind's pages itself only once the writer has (``settle_unchanged``), and a kind whose
        pages all came in unchanged would not be compared here again until the run's end."""
        loader = self._loader
        if loader is None or len(self._ledgers) == len(SPECS):
            return
        for kind in list(loader.ready):
            if kind not in self._ledgers:
                self._ledger(kind)

    def _waiting(
        self, kind: str, kept: array[int], pairs: Iterable[tuple[str, str | None]]
    ) -> None:
        """Keep the fingerprints of (key, hash) ``pairs`` for the kind's ledger when it is taken
        up; past ``EARLY_CAP`` of them the kind goes without a ledger."""
        if kind in self._ledgers or self._loader is None:
            return
        for key, digest in pairs:
            if digest is not None:
                kept.extend(Ledger.fingerprints(key, digest))
        if len(kept) > self.EARLY_CAP:
            self._taken_up([(kind, None)])
            self._early[kind], self._stale[kind] = array("q"), array("q")

    def close(self) -> None:
        """Stop and wait for the loader of ledgers, if any (it closes its own connection)."""
        if self._loader is not None:
            self._loader.close()

    def _hashes(self, spec: KindSpec) -> Select[Any]:
        return stored_hashes(spec, self.dialect, self.account)

    def _list_counted(self, kind: str) -> None:
        """Put the keys the kind's ledger counted into the temporary "seen" table: a statement
        is about to read it. One more scan of the kind; its later hits go to the table at once."""
        held = self._ledgers.get(kind)
        if held is None or held.listed:
            return
        held.list_counted()
        self._seen_changed(kind)
        if not held.counted:
            return
        insert = self._prepared(kind, "seen")
        for part in self.conn.execute(self._hashes(SPECS[kind])).partitions():
            keys = [{"entity_key": row[0]} for row in part if held.take(hash(row))]
            insert.execute(self.conn, keys)

    def _forget(self, kind: str, stored: Iterable[tuple[str, str | None]]) -> None:
        """(key, stored hash) pairs this run is writing or deleting: no longer in the ledger."""
        held = self._ledger(kind)
        if held is not None:
            held.forget(
                fp for key, digest in stored if digest is not None
                for fp in Ledger.fingerprints(key, digest)
            )
        else:
            self._waiting(kind, self._stale[kind], stored)

    def _by_key(self, spec: KindSpec, given: TableValuedAlias) -> ColumnElement[bool]:
        """The account's stored row of a ``pairs`` row's key (JSON keys are text: cast to the
        key column's type)."""
        key = spec.key_column
        given_key = given.c.key if isinstance(key.type, String) else cast(given.c.key, key.type)
        return and_(spec.of(self.account), key == given_key)

    def _alive_hash(
        self, spec: KindSpec, given: TableValuedAlias, answered: Sequence[str]
    ) -> ScalarSelect[Any]:
        """The stored hash of a ``pairs`` row's key if its row is alive with every ``answered``
        column set, else NULL: a scalar subquery, so each key is looked up in the primary key.
        """
        t = spec.table
        return (
            select(t.c.raw_hash)
            .where(
                self._by_key(spec, given),
                t.c.deleted_at.is_(None),
                *(t.c[c].is_not(None) for c in answered),
            )
            .scalar_subquery()
        )

    def _marking(self, spec: KindSpec, answered: tuple[str, ...]) -> Bulk:
        """``INSERT INTO seen`` the keys of a ``pairs`` batch whose stored row is alive with
        the same hash and every ``answered`` column set; compiled once per run (building and
        compiling it per batch cost more than running it)."""
        what = "same" + "".join(f",{c}" for c in answered)
        bulk = self._bulk.get((spec.kind, what))
        if bulk is None:
            given = pairs(self.dialect)
            stored_hash = self._alive_hash(spec, given, answered)
            # A scalar subquery on the key, not EXISTS or a join: both databases then look
            # each key of the batch up in the primary key. PostgreSQL turned EXISTS into a hash
            # join over the account's whole table whenever its statistics were stale (a table
            # just filled by a first sync): a scan per batch, quadratic over a long listing.
            # SQLite's planner scanned the table for a join too.
            stmt = seen.insert().from_select(
                ["kind", "entity_key"],
                select(literal(spec.kind, String()), given.c.key).where(
                    stored_hash == given.c.value
                ),
            )
            bulk = self._bulk[(spec.kind, what)] = Bulk(stmt, self.conn.dialect, ["pairs"])
        return bulk

    def _settle_in_python(
        self,
        spec: KindSpec,
        hashes: Mapping[str, str],
        answered: Sequence[str],
        context: Sequence[str],
    ) -> dict[str, tuple[Any, ...]]:
        """``_settle`` for an SQLite without JSON functions: compared here, keys in an IN list."""
        t = spec.table
        n = len(answered)
        cols = [t.c[spec.key], t.c.raw_hash, t.c.deleted_at, *(t.c[c] for c in answered)]
        found = {
            str(row[0]): row
            for row in self.conn.execute(
                select(*cols, *(t.c[c] for c in context)).where(
                    spec.of(self.account), self._one_of(spec.key_column, list(hashes))
                )
            )
        }
        others: dict[str, tuple[Any, ...]] = {}
        same: list[dict[str, Any]] = []
        for key, digest in hashes.items():
            row = found.get(key)
            if row is not None and row[1] == digest and row[2] is None and None not in row[3:3 + n]:
                same.append({"entity_key": key})
            else:
                others[key] = (None,) if row is None else (row[0], *row[3 + n:])
        self._prepared(spec.kind, "seen").execute(self.conn, same)
        return others

    def _seen_changed(self, kind: str, marking: bool = False) -> None:
        """The kind's rows or seen keys are about to change: ``seen_count`` must count again.
        Only keys added by the marking statement (``marking``) leave its short count valid."""
        self._seen_alive.pop(kind, None)
        if not marking:
            self._marked_only.discard(kind)

    def keep(self, kind: str, keys: Sequence[str], *, once: bool = False) -> None:
        """Count ``keys`` as seen: a complete listing named them though their answers failed,
        or (``once``) none did while their own detail calls answered for them, which marks them
        ``KEPT_ONCE`` (``catalog.deletes.confirm``).

        One kept once by the last run that a listing names again loses the mark (the next run
        asks its answer again), or a later miss would delete it without asking."""
        if not keys:
            return
        self._seen_changed(kind)  # a kept key may name a deleted row, or none
        self._inexact.add(kind)  # and one its ledger may count too
        self._prepared(kind, "seen").execute(self.conn, [{"entity_key": key} for key in keys])
        if once:
            self._set_hash(kind, keys, KEPT_ONCE)
        else:
            self._set_hash(kind, keys, UNANSWERED, only=KEPT_ONCE)

    def _set_hash(
        self, kind: str, keys: Sequence[str], digest: str, *, only: str | None = None,
        chunk: int = 500,
    ) -> None:
        """Store ``digest`` as the answer hash of ``keys`` (no history: the hash is not tracked),
        so that the next run takes whatever it is answered as changed; ``only``: of those whose
        hash is that."""
        spec = SPECS[kind]
        t = spec.table
        which = t.c.raw_hash == only if only is not None else true()
        column = t.c[spec.key]
        key: ColumnElement[Any] = column  # keys come as text: an export's number too
        if not isinstance(column.type, String):
            key = cast(column, String)
        for start in range(0, len(keys), chunk):
            self.conn.execute(
                update(t)
                .where(t.c.account == self.account, key.in_(keys[start : start + chunk]), which)
                .values(raw_hash=digest)
            )

    def _prepared(self, kind: str, what: str) -> Bulk:
        """The run's bulk statements per kind, compiled on first use (a no-op re-sync writes
        none, so building every kind's upsert up front would be work for nothing); run
        constants are binds."""
        bulk = self._bulk.get((kind, what))
        if bulk is not None:
            return bulk
        spec = SPECS[kind]
        d = self.conn.dialect
        columns = [spec.key, *spec.tracked]
        if what == "upsert":
            # deleted_at and deleted_run_id are left to their NULL default on insert
            stmt: ClauseElement = _upsert_statement(spec, self.dialect).values(
                account=self.account, first_seen_run_id=self.run_id, last_seen_run_id=self.run_id
            )
            bulk = Bulk(stmt, d, [*columns, "raw", "raw_hash"])
        elif what == "refresh":
            # An answer that changed only outside the typed columns: no history, no change row,
            # but the stored answer and its hash follow it.
            t = spec.table
            stmt = (
                update(t)
                .where(spec.of(self.account), t.c[spec.key] == bindparam("refresh_key"))
                .values(raw=bindparam("raw"), raw_hash=bindparam("raw_hash"))
            )
            bulk = Bulk(stmt, d, ["raw", "raw_hash", "refresh_key"])
        elif what == "changes":
            stmt = changes.insert().values(
                run_id=self.run_id, account=self.account, changed_at=self.run_ts, kind=kind
            )
            bulk = Bulk(stmt, d, ["entity_id", "operation", "field", "old_value", "new_value"])
        else:
            bulk = Bulk(seen.insert().values(kind=kind), d, ["entity_key"])
        self._bulk[(kind, what)] = bulk
        return bulk

    def _one_of(self, column: ColumnElement[Any], keys: Sequence[Any]) -> ColumnElement[bool]:
        return one_of(column, keys, self.dialect, self._json_each)

    def stored_alive(self, kind: str, keys: list[str]) -> set[str]:
        """Which of ``keys`` name a stored entity that is not deleted."""
        spec = SPECS[kind]
        found = self.conn.execute(
            select(spec.table.c[spec.key]).where(
                spec.of(self.account),
                spec.table.c.deleted_at.is_(None),
                self._one_of(spec.key_column, keys),
            )
        )
        return {str(key) for (key,) in found}

    def _stored(self, spec: KindSpec, keys: list[Any]) -> dict[Any, Any]:
        """Stored rows by key, as (key, *tracked, deleted_at, raw_hash) tuples."""
        cols = [
            spec.table.c[spec.key],
            *(spec.table.c[n] for n in spec.tracked),
            spec.table.c.deleted_at,
            spec.table.c.raw_hash,
        ]
        found = self.conn.execute(
            select(*cols).where(spec.of(self.account), self._one_of(spec.key_column, keys))
        )
        return {row[0]: row for row in found}

    @staticmethod
    def _values_of(spec: KindSpec, row: dict[str, Any]) -> tuple[Any, ...]:
        """The row's tracked values in order; a field the row lacks is None, as stored."""
        try:
            values: tuple[Any, ...] = _TRACKED[spec.kind](row)
        except KeyError:
            return tuple(row.get(name) for name in spec.tracked)
        return values

    @classmethod
    def _tracked(cls, spec: KindSpec, row: dict[str, Any]) -> dict[str, Any]:
        return dict(zip(spec.tracked, cls._values_of(spec, row), strict=True))

    @staticmethod
    def _change(key: Any, op: str, name: str | None, old: Any, new: Any) -> dict[str, Any]:
        # run_id, changed_at and kind are constants of the prepared statement
        return {
            "entity_id": str(key),
            "operation": op,
            "field": name,
            "old_value": None if old is None else to_json(old),
            "new_value": None if new is None else to_json(new),
        }

    def _write(
        self,
        spec: KindSpec,
        rows: list[dict[str, Any]],
        close_keys: list[Any],
        change_rows: list[dict[str, Any]],
    ) -> int:
        """Write what changed; returns how many entity rows the database actually wrote."""
        # Rows go to the statements as they are: each reads its own columns (missing ones: NULL).
        stored = self._prepared(spec.kind, "upsert").execute(
            self.conn, [row if "raw" in row else {**row, "raw": {}} for row in rows]
        )
        if close_keys:
            self._close_history(spec, close_keys)
        # History is copied in SQL from the rows just stored: no second trip of every row through
        # Python parameter processing (JSON and times), and history equals the current row exactly.
        t = spec.table
        columns = ["account", spec.key, *spec.tracked]
        stamp = (literal(self.run_ts, UTCDateTime()), literal(self.run_id, Integer()))
        keys = [row[spec.key] for row in rows]
        source = select(*(t.c[c] for c in columns), *stamp).where(
            spec.of(self.account), self._one_of(spec.key_column, keys)
        )
        self.conn.execute(
            spec.history.insert().from_select([*columns, "valid_from", "valid_from_run_id"], source)
        )
        self._prepared(spec.kind, "changes").execute(self.conn, change_rows)
        return stored

    def _close_history(self, spec: KindSpec, keys: Sequence[Any]) -> None:
        h = spec.history
        self.conn.execute(
            update(h)
            .where(
                h.c.account == self.account,
                self._one_of(h.c[spec.key], keys),
                h.c.valid_to.is_(None),
            )
            .values(valid_to=self.run_ts, valid_to_run_id=self.run_id)
        )

    # -- scopes and deletes ------------------------------------------------------------

    def add_scopes(self, kind: str, keys: Iterable[str]) -> None:
        rows = [{"kind": kind, "scope_key": key} for key in keys]
        if rows:
            self.conn.execute(scopes.insert(), rows)

    def scope_keys(self, kind: str) -> Any:
        """A subquery of the scope keys recorded for ``kind`` in this run."""
        return select(scopes.c.scope_key).where(scopes.c.kind == kind)

    def _seen(self, spec: KindSpec) -> ColumnElement[bool]:
        """'This run saw it': it wrote the row (new, changed, back) or found it unchanged.

        Only unchanged keys go to the temporary table; a written row says so itself through its
        ``last_seen_run_id``, which spares a temporary row per write on a full first sync.
        """
        self._list_counted(spec.kind)
        return self._seen_in_sql(spec)

    def _seen_in_sql(self, spec: KindSpec) -> ColumnElement[bool]:
        """``_seen`` less what the kind's ledger counted and did not list."""
        unchanged = select(seen.c.entity_key).where(seen.c.kind == spec.kind)
        return or_(
            spec.table.c.last_seen_run_id == self.run_id,
            cast(spec.key_column, String).in_(unchanged),
        )

    def unseen_in(self, spec: KindSpec, scope: ColumnElement[bool]) -> ColumnElement[bool]:
        return and_(
            self._whole(spec), spec.table.c.deleted_at.is_(None), ~self._seen(spec), scope
        )

    def unseen(self, kind: str, scope: ColumnElement[bool]) -> ColumnElement[bool]:
        """'Alive, in ``scope``, and not seen by this run': what a delete would mark."""
        return self.unseen_in(SPECS[kind], scope)

    def count_unseen(self, kind: str, scope: ColumnElement[bool]) -> tuple[int, int]:
        """(entities this run would delete in ``scope``, entities of the kind alive before it).

        When ``scope`` is the whole kind and ``seen_count`` has counted the alive entities
        this run saw, with nothing written since, the answer is the alive count less those:
        a count of the table instead of a second pass asking of each row whether it was seen,
        a pass that also reads every key of the temporary table.
        """
        spec = SPECS[kind]
        seen_alive = self._seen_alive.get(kind)
        if seen_alive is not None:
            # Only marked: nothing written, so the alive rows are those alive at the start, and
            # each key seen is one of them. All seen, then none is unseen in any scope: a
            # no-op re-sync counts its kinds' scopes (versions of sets...) with no statement.
            marked_only = kind in self._marked_only
            if marked_only and seen_alive == self.alive_before[kind]:
                return 0, self.alive_before[kind]
            if isinstance(scope, True_):
                alive = self.alive_before[kind] if marked_only else self._alive(spec)
                return alive - seen_alive, self.alive_before[kind]
        doomed = self.conn.execute(
            select(func.count()).select_from(spec.table).where(self.unseen_in(spec, scope))
        )
        return int(doomed.scalar_one()), self.alive_before[kind]

    def delete_unseen(self, kind: str, scope: ColumnElement[bool], chunk: int = 1000) -> int:
        """Mark deleted what this run did not see in ``scope``; close history; record changes."""
        self._seen_changed(kind)
        spec = SPECS[kind]
        t = spec.table
        cols = [t.c[spec.key], *(t.c[n] for n in spec.tracked), t.c.raw_hash]
        doomed = [
            dict(r)
            for r in self.conn.execute(select(*cols).where(self.unseen_in(spec, scope))).mappings()
        ]
        self._forget(kind, ((str(row[spec.key]), row["raw_hash"]) for row in doomed))
        for start in range(0, len(doomed), chunk):
            part = doomed[start : start + chunk]
            keys = [row[spec.key] for row in part]
            self.conn.execute(
                update(t)
                .where(spec.of(self.account), self._one_of(spec.key_column, keys))
                .values(deleted_at=self.run_ts, deleted_run_id=self.run_id)
            )
            self._close_history(spec, keys)
            self._prepared(kind, "changes").execute(
                self.conn,
                [
                    self._change(row[spec.key], "delete", None, self._tracked(spec, row), None)
                    for row in part
                ],
            )
        return len(doomed)

    def seen_count(self, kind: str) -> int:
        """How many of the kind's entities this run saw: written, found unchanged, or kept.

        The same pass counts the deleted ones among them (a kept key may name a deleted row),
        so that ``count_unseen`` knows how many alive ones were seen without a pass of its own.
        When every seen key came from the marking statement (a kind unchanged since the last
        run), the keys are counted instead of the table (each is an alive row, but a listing
        may name one twice): on a no-op re-sync of a long listing, a pass over the table is
        what the run's end would wait on after the last answer.
        """
        spec = SPECS[kind]
        if kind in self._marked_only:
            if kind not in self._seen_alive:
                self._count_marked()
            return self._seen_alive[kind]
        # A ledger's counted rows are alive and seen by no other way unless a key was kept
        # (``_inexact``): added to the table's count instead of written to the temporary
        # table for it, which would cost a re-sync of a long listing a write per key at its end.
        held = self._ledgers.get(kind)
        counted = 0
        if held is not None and not held.listed and kind not in self._inexact:
            counted, seen_here = held.counted, self._seen_in_sql(spec)
        else:
            seen_here = self._seen(spec)
        stmt = select(func.count(), func.count(spec.table.c.deleted_at)).where(
            self._whole(spec), seen_here
        )
        seen_rows, deleted = self.conn.execute(stmt).one()
        self._seen_alive[kind] = int(seen_rows) - int(deleted) + counted
        return int(seen_rows) + counted

    def _count_marked(self) -> None:
        """The seen count of every kind whose keys all came from the marking: its marked rows
        less the repeats among them, which only the suspects (``_Marked``) can be, found in one
        pass over the temporary table (no statement when there are none). Past the suspects'
        cap, the distinct keys of those kinds are counted in one pass instead. The temporary
        table has no index: one would make each marked key dearer."""
        wanted = sorted(self._marked_only - self._seen_alive.keys())
        suspects = self._marked.suspects
        if suspects is None:
            stmt = (
                select(seen.c.kind, func.count(seen.c.entity_key.distinct()))
                .where(seen.c.kind.in_(wanted))
                .group_by(seen.c.kind)
            )
            counts = {str(k): int(n) for k, n in self.conn.execute(stmt)}
            for kind in wanted:
                self._seen_alive[kind] = counts.get(kind, 0) + self._counted(kind)
            return
        repeats: dict[str, int] = {}
        if suspects:
            stmt = (
                select(seen.c.kind, func.count() - func.count(seen.c.entity_key.distinct()))
                .where(seen.c.kind.in_(wanted), self._one_of(seen.c.entity_key, list(suspects)))
                .group_by(seen.c.kind)
            )
            repeats = {str(k): int(n) for k, n in self.conn.execute(stmt)}
        for kind in wanted:
            self._seen_alive[kind] = (
                self._marked.rows[kind] - repeats.get(kind, 0) + self._counted(kind)
            )

    def _counted(self, kind: str) -> int:
        """The kind's seen keys counted in its ledger, not in the temporary table."""
        ledger = self._ledgers.get(kind)
        return 0 if ledger is None else ledger.counted


def whole(spec: KindSpec, dialect: str, account: str) -> ColumnElement[bool]:
    """The account filter of a scan of a whole kind (the counts and deletes that open and
    close a run: five per kind, and the loader's scan).

    On SQLite the plain filter makes the planner walk the primary key's index and fetch each
    row by its rowid, which costs far more than reading the table in order; a unary ``+``
    keeps the column from the index. That loses only where the account holds a small share
    of the table's rows. PostgreSQL chooses by its statistics, so it keeps the plain filter.
    """
    if dialect != "sqlite":
        return spec.of(account)
    column = spec.table.c.account
    plus = UnaryExpression(column, operator=operators.custom_op("+"), type_=column.type)
    return plus == account


def _held(spec: KindSpec, dialect: str, account: str) -> ColumnElement[bool]:
    """The rows a ledger holds: the account's alive rows with a hash."""
    t = spec.table
    return and_(whole(spec, dialect, account), t.c.deleted_at.is_(None), t.c.raw_hash.is_not(None))


def stored_hashes(spec: KindSpec, dialect: str, account: str) -> Select[Any]:
    """The kind's alive stored rows as (key as text, hash), streamed, the hash marked
    ``ANSWERED`` where every ``unanswered`` column is set: a ``Ledger``'s pairs."""
    t = spec.table
    key = spec.key_column
    text_key = key if isinstance(key.type, String) else cast(key, String)
    digest: ColumnElement[Any] = t.c.raw_hash
    needed = [t.c[c].is_not(None) for c in REGISTRY[spec.kind].unanswered]
    if needed:
        digest = digest + case((and_(*needed), ANSWERED), else_="")
    return (
        select(text_key, digest)
        .where(_held(spec, dialect, account))
        .execution_options(yield_per=LedgerLoader.PART)
    )


class LedgerLoader(threading.Thread):
    """Fills a ledger per kind (``Store``'s ``preload``) on a connection of its own, while the
    run goes on: scanning a long listing's rows in the writer held up the walk, whose pages
    then waited in the writer's bounded inbox. A ledger is only a shortcut: if a scan fails,
    its kind and those after it compare in SQL.

    It needs no run, only the account's lock: a sync starts it as soon as the schema is
    known to be current, so that the walk's first pages find their ledger ready
    (``Store.wait_for_ledger``) while the run is still being opened.
    """

    #: Rows of a kind's stored hashes read at a time (also by ``_list_counted``).
    PART = 2_000

    def __init__(self, engine: Engine, account: str) -> None:
        super().__init__(name="catalog-ledgers", daemon=True)
        self.engine = engine
        self.account = account
        #: Per kind: its ledger, or None (none to be had); absent while loading.
        self.ready: dict[str, Ledger | None] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            with self.engine.connect() as conn:
                dialect = conn.dialect.name
                # In the walk's order, so the first listings wait the least. One scan per kind,
                # no count first (on PostgreSQL a count is a second scan): the fingerprints
                # are gathered, then the ledger is sized for them.
                for kind, spec in SPECS.items():
                    gathered = array("q")
                    for part in driver_rows(conn, stored_hashes(spec, dialect, self.account),
                                            self.PART):
                        if self.stop.is_set():
                            return
                        # A row hashes as the tuple of its values: a fingerprint per row
                        # without a Python step per row.
                        gathered.extend(map(hash, part))
                    ledger = None
                    if gathered:
                        ledger = Ledger(len(gathered), bool(REGISTRY[kind].unanswered))
                        ledger.fill(gathered)
                    self.ready[kind] = ledger
        except Exception as exc:  # noqa: BLE001 - a shortcut lost, never the run
            _log.warning("stored hashes not read ahead (%s): comparing in SQL", type(exc).__name__)
        finally:
            for kind in SPECS:
                self.ready.setdefault(kind, None)

    def close(self) -> None:
        """Stop reading, and wait for the thread (it closes its own connection)."""
        self.stop.set()
        if self.is_alive():
            self.join()
