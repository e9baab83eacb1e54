"""The no-op re-sync's fast path: answers whose hash equals the stored one are settled in SQL.

Per batch one statement marks the unchanged keys seen, and only the other keys come back to be
normalised and written (``Store.mark_unchanged``; ``Store.needs_detail`` for answers that may need
a detail call). These tests pin what that path must still honour: a changed answer is changed,
a deleted or never-answered entity is not "unchanged", another account's row with the same id and
hash does not count, and what was only marked seen survives the end of a complete listing.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest.mock import patch

import pytest
from sqlalchemy import event, func, select, true, update

from catalog import db, runs
from catalog.bulk import pairs_json
from catalog.events import Page, Record
from catalog.fake.catalog import FakeCatalog
from catalog.kinds import REGISTRY
from catalog.schema import SPECS, compression_tasks
from catalog.store import LedgerLoader, Store, _Marked
from catalog.store import seen as seen_table
from catalog.sync import _Inbox
from tests.helpers import fake_console, stored_rows, sync

TASK = "compression_task"


def _row(n: int, raw_hash: str, **over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "task_id": f"amva-{n:04d}",
        "name": f"task {n}",
        "status": "running",
        "raw": {"id": f"amva-{n:04d}"},
        "raw_hash": raw_hash,
    }
    row.update(over)
    return row


@pytest.fixture
def conn(db_url: str) -> Any:
    engine = db.create_engine_for(db_url)
    connection = db.connect(engine)
    db.ensure_schema(connection, True)
    yield connection
    connection.close()
    engine.dispose()


_readers: list[Any] = []


@pytest.fixture(autouse=True)
def _dispose_readers() -> Iterator[None]:
    yield
    while _readers:
        _readers.pop().dispose()


def _store(
    conn: Any, account: str = "a", preload: bool = False, gate: threading.Event | None = None
) -> Store:
    """A run's store; with ``preload``, its ledgers read by a second engine, before it is
    returned, or (with a ``gate``) once the test sets the gate."""
    run_id, run_ts = runs.start_run(conn, {}, account)
    if not preload:
        return Store(conn, run_id, run_ts, account)
    _readers.append(db.create_engine_for(conn.engine.url.render_as_string(hide_password=False)))
    if gate is None:
        store = Store(conn, run_id, run_ts, account, preload=_readers[-1])
        assert store._loader is not None
        store._loader.join()  # every kind read: the ledgers are taken up at their first use
        # each kind with rows read, none fell back to SQL
        assert {k for k, held in store._loader.ready.items() if held is not None} == {
            k for k, n in store.alive_before.items() if n
        }
        return store
    run = LedgerLoader.run

    def gated(loader: LedgerLoader) -> None:
        gate.wait()
        run(loader)

    with patch.object(LedgerLoader, "run", gated):
        return Store(conn, run_id, run_ts, account, preload=_readers[-1])


#: Both ways a run compares answers: in SQL, batch by batch, and with the stored hashes read
#: into memory first (``catalog.ledger``; what a full run does).
PRELOAD = pytest.mark.parametrize("preload", [False, True], ids=["sql", "ledger"])


@contextmanager
def _statements(conn: Any) -> Iterator[list[tuple[str, Any]]]:
    """The (SQL, parameters) of every statement ``conn`` sends inside the ``with`` block."""
    sent: list[tuple[str, Any]] = []

    def keep(_c: Any, _cur: Any, statement: str, parameters: Any, *_rest: Any) -> None:
        sent.append((statement, parameters))

    event.listen(conn, "before_cursor_execute", keep)
    try:
        yield sent
    finally:
        event.remove(conn, "before_cursor_execute", keep)


def _stored(conn: Any, alive: int, other: list[int], deleted: list[int]) -> None:
    """Account a's tasks 0..``alive``-1 (hash ``h<n>``), those of ``deleted`` then deleted, and
    account b's ``other`` with the same ids and hashes; committed."""
    first = _store(conn, "a")
    first.write_batch(TASK, [_row(n, f"h{n}") for n in range(alive)])
    _store(conn, "b").write_batch(TASK, [_row(n, f"h{n}") for n in other])
    gone = [f"amva-{n:04d}" for n in deleted]
    conn.execute(
        update(compression_tasks)
        .where(compression_tasks.c.account == "a", compression_tasks.c.task_id.in_(gone))
        .values(deleted_at=first.run_ts, deleted_run_id=first.run_id)
    )
    conn.commit()


@PRELOAD
@pytest.mark.parametrize("python_side", [False, True], ids=["sql", "no-json-functions"])
def test_only_alive_rows_of_the_account_with_the_same_hash_are_unchanged(
    conn: Any, python_side: bool, preload: bool
) -> None:
    _stored(conn, 5, other=[9], deleted=[3])  # 9: the same id and hash, other account

    store = _store(conn, "a", preload)
    if python_side:
        store._json_each = False
    changed = store.mark_unchanged(TASK, {
        "amva-0000": "h0",  # unchanged
        "amva-0001": "h1",  # unchanged
        "amva-0002": "other",  # answered differently
        "amva-0003": "h3",  # same hash, but deleted: it comes back, a write
        "amva-0009": "h9",  # only account b has it
        "amva-0042": "h42",  # never stored
    })
    assert changed == {"amva-0002", "amva-0003", "amva-0009", "amva-0042"}
    assert store.seen_count(TASK) == 2  # the unchanged ones, marked seen without a write
    assert store.count_unseen(TASK, true()) == (2, 4)  # amva-0002 and -0004 would go


@PRELOAD
@pytest.mark.parametrize("python_side", [False, True], ids=["sql", "no-json-functions"])
def test_a_detail_is_wanted_unless_the_same_answer_was_detailed_before(
    conn: Any, python_side: bool, preload: bool
) -> None:
    _store(conn, "a").write_batch(TASK, [
        _row(1, "h1", status="failed", failed_reason="out of memory"),
        _row(2, "h2", status="failed"),  # its detail never answered: reason NULL
        _row(3, "h3", status="failed", failed_reason=""),
    ])
    conn.commit()
    store = _store(conn, "a", preload)
    if python_side:
        store._json_each = False
    wanted = store.needs_detail(
        TASK, {"amva-0001": "h1", "amva-0002": "h2", "amva-0003": "new", "amva-0004": "h4"},
        unanswered=("failed_reason",), context=("failed_reason",),
    )
    assert wanted == {
        "amva-0002": {"failed_reason": None},
        "amva-0003": {"failed_reason": ""},
        "amva-0004": None,  # new
    }
    assert store.seen_count(TASK) == 1  # the settled one is seen, nothing else yet


def test_the_writers_queue_counts_a_page_as_its_records() -> None:
    inbox = _Inbox(maxsize=10)

    def record(n: int) -> Record:
        return Record(TASK, f"k{n}", {}, "h", dict, "L")

    inbox.put(Page([record(n) for n in range(8)]))
    inbox.put(record(8))
    assert inbox.qsize() == 9
    inbox.put(Page([record(n) for n in range(5)]))  # admitted below the bound
    with pytest.raises(queue.Full):
        inbox.put(record(99), block=False)  # 14 records held: nothing more
    assert isinstance(inbox.get(), Page) and inbox.qsize() == 6
    inbox.put(record(100), block=False)


def test_a_no_op_run_keeps_every_entity_and_a_change_anywhere_is_still_seen(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Failed tasks go through the detail check, the others through the batch's: both paths
    only mark the unchanged ones seen, and the complete listing then deletes none of them.
    A run that found every task unchanged counts them from their keys, not the table."""
    counted_from_keys: list[bool] = []
    seen_count = Store.seen_count

    def watched(self: Store, kind: str) -> int:
        if kind == TASK:
            counted_from_keys.append(kind in self._marked_only)
        return seen_count(self, kind)

    monkeypatch.setattr(Store, "seen_count", watched)
    catalog = FakeCatalog.generate(seed=61, model_sets=2, comp_tasks=60, eval_exports=0)
    tasks = catalog.keys(TASK)
    failed = [k for k in tasks if catalog.get(TASK, k).get("status") == "failed"]
    running = [k for k in tasks if k not in failed]
    assert failed and running
    with fake_console(catalog) as server:
        sync(db_url, server, batch_size=7, page_size=10)
        before = stored_rows(db_url)[TASK]
        again = sync(db_url, server, batch_size=7, page_size=10)
        assert again.status == "success"
        assert counted_from_keys == [False, True]  # the first run wrote; the second did not
        assert again.counts[f"{TASK}_seen"] == len(tasks)
        assert again.counts[f"{TASK}_deleted"] == again.counts[f"{TASK}_updated"] == 0
        assert stored_rows(db_url)[TASK] == before

        # A field no typed column holds, on a failed and on a running task; a typed one.
        catalog.patch(TASK, failed[0], fields={"quotaTier": "gold"})
        catalog.patch(TASK, running[0], fields={"quotaTier": "gold"})
        catalog.patch(TASK, running[1], fields={"name": "renamed"})
        third = sync(db_url, server, batch_size=7, page_size=10)
    assert third.counts[f"{TASK}_updated"] == 1
    assert counted_from_keys[2] is False  # it wrote the changed ones
    assert third.counts[f"{TASK}_deleted"] == 0
    assert third.counts[f"{TASK}_seen"] == len(tasks)
    assert stored_rows(db_url)[TASK][running[1]]["name"] == "renamed"
    raws = _raws(db_url)
    assert raws[failed[0]]["quotaTier"] == raws[running[0]]["quotaTier"] == "gold"


def _raws(db_url: str) -> dict[str, Any]:
    engine = db.create_engine_for(db_url)
    with engine.connect() as c:
        t = compression_tasks
        out = {key: raw for key, raw in c.execute(select(t.c.task_id, t.c.raw))}
    engine.dispose()
    return out


def test_the_marking_looks_each_key_up_whatever_the_statistics(conn: Any) -> None:
    """The marking statement finds a batch's keys through the primary key, not by scanning the
    account's table. On PostgreSQL an EXISTS form became a hash join over the whole table while
    the table's statistics were stale (as right after a first sync fills it): one scan per batch,
    1 s a batch at 30,000 tasks. Here the table is filled and never analysed, as then."""
    store = _store(conn, "a")
    for start in range(0, 3000, 500):
        store.write_batch(TASK, [_row(n, f"h{n}") for n in range(start, start + 500)])
    conn.commit()
    marking = _store(conn, "a")._marking(SPECS[TASK], ())
    batch = {"pairs": pairs_json({f"amva-{n:04d}": f"h{n}" for n in range(100)})}
    params = marking._values(batch)
    named = params if marking.positional else dict(zip(marking.names, params, strict=True))
    if conn.dialect.name == "postgresql":
        plan = "\n".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + marking.sql, named))
        assert "Index Scan using pk_compression_tasks" in plan, plan
        assert "Seq Scan on compression_tasks" not in plan and "Hash" not in plan, plan
    else:
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + marking.sql, named).all()
        plan = "\n".join(str(r[-1]) for r in rows)
        assert "SEARCH compression_tasks USING" in plan, plan
        assert "SCAN compression_tasks" not in plan, plan
    assert marking.execute_one(conn, batch) == 100
    # The keys that were not marked (new or changed) are fetched the same way.
    later = _store(conn, "a")
    with _statements(conn) as sent:
        changed = later.mark_unchanged(
            TASK, {f"amva-{n:04d}": "new" for n in range(100)}
        )
    assert len(changed) == 100
    ((sql, params),) = [
        (statement, parameters) for statement, parameters in sent
        if statement.lstrip().upper().startswith("SELECT") and "json_each" in statement
    ]
    explained = conn.exec_driver_sql(
        ("EXPLAIN " if conn.dialect.name == "postgresql" else "EXPLAIN QUERY PLAN ") + sql, params
    ).all()
    plan = "\n".join(str(r[0] if conn.dialect.name == "postgresql" else r[-1]) for r in explained)
    assert "Seq Scan on compression_tasks" not in plan and "Hash" not in plan, plan
    assert "SCAN compression_tasks" not in plan, plan


@PRELOAD
def test_the_unseen_count_from_the_seen_count_equals_a_full_count(
    conn: Any, preload: bool
) -> None:
    """``count_unseen`` of a whole kind after ``seen_count`` is the alive count less the alive
    ones seen; it must equal the full pass in every case a run mixes: written this run, found
    unchanged, kept (alive, and deleted), unseen, deleted before, another account's rows."""
    _stored(conn, 12, other=list(range(20)), deleted=[10, 11])

    store = _store(conn, "a", preload)
    store.mark_unchanged(TASK, {"amva-0000": "h0", "amva-0001": "h1"})  # unchanged
    store.write_batch(TASK, [_row(2, "new"), _row(30, "h30")])  # changed, and new
    store.keep(TASK, ["amva-0003", "amva-0010"])  # kept: one alive, one deleted before
    # amva-0004..0009 alive and unseen; amva-0011 deleted and unseen
    full = store.count_unseen(TASK, true())
    assert full == (6, 10)

    assert store.seen_count(TASK) == 6  # 0, 1, 2, 30, 3 and the deleted 10
    assert store.count_unseen(TASK, true()) == full

    store.keep(TASK, ["amva-0004"])  # seen after the count: the shortcut must not be used
    assert store.count_unseen(TASK, true()) == (5, 10)
    assert store.seen_count(TASK) == 7
    assert store.count_unseen(TASK, true()) == (5, 10)
    assert store.delete_unseen(TASK, true()) == 5
    assert store.count_unseen(TASK, true()) == (0, 10)  # after a delete: counted again


def test_the_seen_counts_of_kinds_only_found_unchanged_take_at_most_one_statement(
    conn: Any,
) -> None:
    """At a run's end every kind's seen count is asked. Those of the kinds found unchanged
    are their marked rows, with no statement while no key can have been named twice; once one
    was (0000 again), one pass over the temporary table finds the repeats of every kind."""
    _stored(conn, 6, other=[], deleted=[])
    store = _store(conn, "a")
    store.mark_unchanged(TASK, {f"amva-{n:04d}": f"h{n}" for n in range(3)})
    with _statements(conn) as sent:
        counts = {kind: store.seen_count(kind) for kind in SPECS}
        assert [sql for sql, _ in sent if "catalog_run_seen" in sql] == []
        assert counts == {kind: 3 if kind == TASK else 0 for kind in SPECS}
    store.mark_unchanged(TASK, {"amva-0003": "h3", "amva-0000": "h0"})  # 0000 again
    with _statements(conn) as sent:
        counts = {kind: store.seen_count(kind) for kind in SPECS}
        reads = [sql for sql, _ in sent if "catalog_run_seen" in sql]
        assert len(reads) == 1, reads
        assert counts == {kind: 4 if kind == TASK else 0 for kind in SPECS}
    assert store.count_unseen(TASK, true()) == (2, 6)
    assert store.seen_count(TASK) == _table_pass(conn, store) == 4


def test_a_scoped_unseen_count_of_a_kind_seen_whole_and_unchanged_takes_no_statement(
    conn: Any,
) -> None:
    """A kind found unchanged whose every alive entity was seen has none unseen in any scope:
    the count takes no statement. One alive entity not seen, and the scope is counted."""
    _stored(conn, 4, other=[0, 1, 7], deleted=[3])
    t = compression_tasks
    scope = t.c.task_id.in_(["amva-0001", "amva-0002", "amva-0007"])
    for marked, expected in ((3, (0, 3)), (2, (1, 3))):
        store = _store(conn, "a")
        store.mark_unchanged(TASK, {f"amva-{n:04d}": f"h{n}" for n in range(marked)})
        assert store.seen_count(TASK) == marked
        with _statements(conn) as sent:
            assert store.count_unseen(TASK, scope) == expected
        assert len(sent) == (0 if marked == 3 else 1), sent
        full = select(func.count()).select_from(t).where(store.unseen_in(SPECS[TASK], scope))
        assert conn.execute(full).scalar_one() == expected[0]
        conn.rollback()


@PRELOAD
def test_a_new_entity_does_not_stand_in_for_an_unseen_one(conn: Any, preload: bool) -> None:
    """Three alive before the run; it writes a new one and finds two unchanged. It saw as many
    alive entities as there were before, and one of those is still unseen."""
    _stored(conn, 3, other=[], deleted=[])
    store = _store(conn, "a", preload)
    store.write_batch(TASK, [_row(9, "h9")])
    store.mark_unchanged(TASK, {"amva-0000": "h0", "amva-0001": "h1"})
    assert store.seen_count(TASK) == 3 == store.alive_before[TASK]
    scope = compression_tasks.c.task_id.in_(["amva-0002", "amva-0009"])
    assert store.count_unseen(TASK, scope) == (1, 3)
    assert store.count_unseen(TASK, true()) == (1, 3)
    assert store.delete_unseen(TASK, scope) == 1


def _table_pass(conn: Any, store: Store) -> int:
    """What this run saw of the account's tasks, counted over the table (the general way)."""
    from sqlalchemy import func

    t = compression_tasks
    stmt = select(func.count()).select_from(t).where(
        t.c.account == store.account, store._seen(SPECS[TASK])
    )
    return int(conn.execute(stmt).scalar_one())


#: (bitmap bits, suspects cap) of the marked-key count: the real one; one where nearly every
#: key is a suspect; one past its cap, so the distinct keys are counted in the table.
MARKED = [(1 << 24, 50_000), (8, 50_000), (8, 2)]


@PRELOAD
@pytest.mark.parametrize("then", ["nothing", "keep", "write"])
@pytest.mark.parametrize(("bits", "cap"), MARKED)
def test_a_kind_only_found_unchanged_is_counted_from_its_keys_and_equals_the_table(
    conn: Any, then: str, bits: int, cap: int, preload: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When every seen key of a kind came from the marking (a no-op re-sync of it), the seen
    count is the number of keys marked, not a pass over the table; a key a listing named twice
    counts once. Anything else seen (a kept key, a write) goes back to the table's count."""
    monkeypatch.setattr(_Marked, "BITS", bits)
    monkeypatch.setattr(_Marked, "CAP", cap)
    _stored(conn, 10, other=list(range(4)), deleted=[9])

    store = _store(conn, "a", preload)
    store.mark_unchanged(TASK, {f"amva-{n:04d}": f"h{n}" for n in range(6)})
    store.mark_unchanged(TASK, {"amva-0005": "h5", "amva-0006": "h6"})  # 0005 named twice
    if then == "keep":
        store.keep(TASK, ["amva-0009", "amva-0077"])  # a deleted row, and no row at all
    elif then == "write":
        store.write_batch(TASK, [_row(7, "changed")])
    expected = {"nothing": 7, "keep": 8, "write": 8}[then]
    assert (TASK in store._marked_only) == (then == "nothing")
    assert store.seen_count(TASK) == _table_pass(conn, store) == expected
    alive_unseen = {"nothing": 2, "keep": 2, "write": 1}[then]  # of 0000-0008
    assert store.count_unseen(TASK, true()) == (alive_unseen, 9)
    assert store.delete_unseen(TASK, true()) == alive_unseen


@PRELOAD
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("bits", "cap"), MARKED)
def test_the_seen_and_unseen_counts_equal_a_pass_over_the_table_whatever_a_run_does(
    conn: Any, seed: int, bits: int, cap: int, preload: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The counts' short paths (keys counted instead of rows, none unseen when all were seen)
    decide whether a delete runs: a wrong 0 would leave gone entities alive. A run here does
    random marks (right and wrong hashes, keys named twice, unknown keys), keeps (alive,
    deleted and absent keys), writes and deletes in a random order, asking for the counts at
    random points; each count must equal the table's, for the whole kind and for a scope."""
    import random

    monkeypatch.setattr(_Marked, "BITS", bits)
    monkeypatch.setattr(_Marked, "CAP", cap)
    rng = random.Random(seed)
    _stored(conn, 16, other=list(range(0, 16, 3)), deleted=rng.sample(range(16), 3))
    # With a ledger, it is read while the run goes on: taken up after a random step.
    gate = threading.Event()
    store = _store(conn, "a", preload, gate)
    ready_after = rng.randrange(13)
    t = compression_tasks
    spec = SPECS[TASK]

    def key(n: int) -> str:
        return f"amva-{n:04d}"

    def check() -> None:
        if rng.random() < 0.5:  # counted before anything asks for the seen keys in SQL
            counted, unseen = store.seen_count(TASK), store.count_unseen(TASK, true())[0]
            full = select(func.count()).select_from(t).where(store.unseen_in(spec, true()))
            assert counted == _table_pass(conn, store), seed
            assert unseen == int(conn.execute(full).scalar_one()), seed
        scopes = [true(), t.c.task_id.in_([key(n) for n in rng.sample(range(20), 6)])]
        for scope in scopes:
            full = select(func.count()).select_from(t).where(store.unseen_in(spec, scope))
            expected = int(conn.execute(full).scalar_one())
            assert store.count_unseen(TASK, scope)[0] == expected, (seed, scope)
        assert store.seen_count(TASK) == _table_pass(conn, store), seed

    for n_step in range(12):
        if n_step == ready_after and store._loader is not None:
            gate.set()
            store._loader.join()
        step = rng.choice(["mark", "mark", "mark", "count", "keep", "write", "delete"])
        if step == "mark":
            named = rng.sample(range(20), rng.randint(1, 8))
            asked = {key(n): f"h{n}" if rng.random() < 0.8 else "other" for n in named}
            alive = {
                k: digest
                for k, digest in conn.execute(
                    select(t.c.task_id, t.c.raw_hash).where(
                        t.c.account == "a", t.c.deleted_at.is_(None)
                    )
                )
            }
            assert store.mark_unchanged(TASK, asked) == {
                k for k, digest in asked.items() if alive.get(k) != digest
            }, seed
        elif step == "count":
            store.seen_count(TASK)
        elif step == "keep":
            store.keep(TASK, [key(n) for n in rng.sample(range(20), 2)])
        elif step == "write":
            n = rng.randrange(20)
            store.write_batch(TASK, [_row(n, f"new{n}")])
        elif rng.random() < 0.5:
            scope = t.c.task_id.in_([key(n) for n in rng.sample(range(20), 5)])
            store.delete_unseen(TASK, scope)
        if rng.random() < 0.5:
            check()
    check()
    gate.set()
    store.close()


def test_with_the_hashes_in_memory_a_no_op_marks_nothing_in_sql_and_counts_repeats_once(
    conn: Any,
) -> None:
    """With ``preload`` the kind's stored hashes are read once, on another connection; then
    no batch sends a statement, a key named twice counts once, and the run's end counts and
    finds none unseen without a statement."""
    _stored(conn, 6, other=[1], deleted=[5])
    store = _store(conn, "a", preload=True)
    with _statements(conn) as sent:
        first = store.mark_unchanged(TASK, {f"amva-{n:04d}": f"h{n}" for n in range(3)})
        again = store.mark_unchanged(TASK, {"amva-0003": "h3", "amva-0000": "h0"})
        assert first == again == set()
        assert store.seen_count(TASK) == 4
        assert sent == []
        # A miss (a deleted task) goes to SQL, which finds it is no unchanged one.
        assert store.mark_unchanged(TASK, {"amva-0004": "h4", "amva-0005": "h5"}) == {
            "amva-0005"  # deleted: it comes back, a write
        }
        assert store.count_unseen(TASK, true()) == (0, 5)
    # Asked for the seen keys in the table (a scope), the counted ones are written there once.
    scope = compression_tasks.c.task_id.in_(["amva-0001", "amva-0002"])
    assert store.count_unseen(TASK, scope) == (0, 5)
    assert store.seen_count(TASK) == _table_pass(conn, store) == 5
    assert store.mark_unchanged(TASK, {"amva-0001": "h1"}) == set()
    listed = conn.execute(
        select(func.count()).select_from(seen_table).where(seen_table.c.kind == TASK)
    ).scalar_one()
    assert listed == 5


@PRELOAD
def test_a_key_named_again_after_its_write_is_compared_with_what_was_written(
    conn: Any, preload: bool
) -> None:
    """A listing that names a task twice (pages shifting under it) with two answers: the
    first, a change, is written; the second, the answer stored before the run, must be found
    different from what is stored now, so the last answer wins, as within a batch."""
    _stored(conn, 3, other=[], deleted=[])
    store = _store(conn, "a", preload)
    assert store.mark_unchanged(TASK, {"amva-0000": "h0", "amva-0001": "new"}) == {"amva-0001"}
    store.write_batch(TASK, [_row(1, "new", status="done")])
    assert store.mark_unchanged(TASK, {"amva-0001": "h1", "amva-0002": "h2"}) == {"amva-0001"}
    assert store.seen_count(TASK) == 3 == _table_pass(conn, store)


def test_a_full_run_compares_in_memory_and_a_scoped_run_does_not(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sync preloads the stored hashes when it lists whole kinds, so a no-op re-sync sends
    no marking statement for its tasks; a run scoped to one model set compares its few answers
    in SQL. (Running fine-tuning tasks are asked in detail every run and written as ever.)"""
    from sqlalchemy.engine import Engine

    catalog = FakeCatalog.generate(seed=62, model_sets=2, comp_tasks=40, eval_exports=0)
    marking: list[str] = []

    def watch(_c: Any, _cur: Any, statement: str, parameters: Any, *_rest: Any) -> None:
        if "INSERT INTO catalog_run_seen" in statement and TASK in str(parameters):
            marking.append(f"{statement} {parameters}")

    preloads: list[bool] = []
    init = Store.__init__

    def watched(self: Store, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        preloads.append(self._loader is not None)

    monkeypatch.setattr(Store, "__init__", watched)
    # The ledgers ready before the first batch (the loader's thread races the walk else).
    monkeypatch.setattr(LedgerLoader, "start", LedgerLoader.run)
    with fake_console(catalog) as server:
        sync(db_url, server, batch_size=7, page_size=10)
        event.listen(Engine, "before_cursor_execute", watch)
        try:
            again = sync(db_url, server, batch_size=7, page_size=10)
            assert again.status == "success"
            assert again.counts[f"{TASK}_seen"] == len(catalog.keys(TASK))
            assert marking == []
            one_set = catalog.keys("model_set")[0]
            scoped = sync(db_url, server, batch_size=7, page_size=10, model_sets=[one_set])
        finally:
            event.remove(Engine, "before_cursor_execute", watch)
    assert scoped.status == "success"
    assert preloads == [True, True, False]
    assert marking  # the scoped run marked its unchanged answers in SQL


@PRELOAD
def test_a_task_this_run_deleted_is_no_unchanged_one_when_named_again(
    conn: Any, preload: bool
) -> None:
    """A scope's delete comes before another listing names the task with its stored answer:
    it is deleted now, so the answer brings it back (a write), not an unchanged mark."""
    _stored(conn, 6, other=[], deleted=[])
    store = _store(conn, "a", preload)
    assert store.mark_unchanged(TASK, {"amva-0000": "h0"}) == set()
    assert store.delete_unseen(TASK, compression_tasks.c.task_id.in_(["amva-0004"])) == 1
    assert store.mark_unchanged(TASK, {"amva-0004": "h4", "amva-0005": "h5"}) == {"amva-0004"}


def test_a_ledger_taken_up_late_counts_what_sql_marked_once_and_knows_what_was_written(
    conn: Any,
) -> None:
    """Batches compared before the loader is done go to SQL; the ledger then takes up what
    SQL marked (named again, not counted twice) and what the run wrote meanwhile (the old
    answer named again is a change, not unchanged)."""
    _stored(conn, 8, other=[], deleted=[])
    gate = threading.Event()
    store = _store(conn, "a", preload=True, gate=gate)
    assert store.mark_unchanged(TASK, {f"amva-{n:04d}": f"h{n}" for n in range(3)}) == set()
    assert store.mark_unchanged(TASK, {"amva-0003": "new"}) == {"amva-0003"}
    store.write_batch(TASK, [_row(3, "new", status="done")])
    gate.set()
    assert store._loader is not None
    store._loader.join()
    later = {"amva-0000": "h0", "amva-0003": "h3", "amva-0004": "h4", "amva-0005": "h5"}
    assert store.mark_unchanged(TASK, later) == {"amva-0003"}
    ledger = store._ledgers[TASK]
    assert ledger is not None and ledger.counted == 2  # 0004 and 0005; 0000 was SQL's
    assert store.seen_count(TASK) == 6 == _table_pass(conn, store)
    assert store.count_unseen(TASK, true()) == (2, 8)


def test_a_ledgers_count_is_added_to_the_tables_without_listing_its_keys(conn: Any) -> None:
    """A run with writes counts what it saw over the table, plus what its ledger counted;
    every key the store writes is out of the ledger first, so no key counts twice (a task
    found unchanged, then written; one found unchanged by the write). A kept key could be
    counted twice: then the ledger's keys are listed and the table counts all."""
    for keep in (False, True):
        _stored(conn, 8, other=[], deleted=[6])
        store = _store(conn, "a", preload=True)
        store.mark_unchanged(TASK, {f"amva-{n:04d}": f"h{n}" for n in range(4)})
        store.write_batch(TASK, [_row(1, "new", status="done"), _row(2, "h2"), _row(9, "h9")])
        if keep:
            store.keep(TASK, ["amva-0000", "amva-0006"])
        ledger = store._ledgers[TASK]
        assert ledger is not None and ledger.counted == 2  # 0000 and 0003
        seen = store.seen_count(TASK)
        assert ledger.listed is keep
        assert store.count_unseen(TASK, true()) == (3, 7)  # 0004, 0005 and 0007
        assert seen == _table_pass(conn, store) == (6 if keep else 5)
        conn.rollback()
        conn.execute(compression_tasks.delete())
        conn.commit()


def test_a_row_written_before_its_ledger_was_read_is_not_counted_twice(conn: Any) -> None:
    """The loader reads what is committed: a row this run wrote and committed first is in
    the ledger with its new answer. Named again with that answer, it must not be counted by
    the ledger as well as by the table (written rows carry the run)."""
    _stored(conn, 4, other=[], deleted=[])
    gate = threading.Event()
    store = _store(conn, "a", preload=True, gate=gate)
    store.write_batch(TASK, [_row(1, "new", status="done")])
    conn.commit()
    gate.set()
    assert store._loader is not None
    store._loader.join()
    assert store.mark_unchanged(TASK, {"amva-0001": "new", "amva-0002": "h2"}) == set()
    assert store.seen_count(TASK) == 2 == _table_pass(conn, store)
    assert store.count_unseen(TASK, true()) == (2, 4)


def test_a_ledger_that_cannot_be_read_leaves_the_run_comparing_in_sql(
    conn: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The loader's connection fails: one warning that names the error's type (no URL, no
    password), no ledger, and the run compares in SQL as a scoped run does."""
    from sqlalchemy import create_engine

    _stored(conn, 3, other=[], deleted=[])
    run_id, run_ts = runs.start_run(conn, {}, "a")
    broken = create_engine("sqlite:////nonexistent-folder/secret-name.db")
    store = Store(conn, run_id, run_ts, "a", preload=broken)
    assert store._loader is not None
    store._loader.join()
    assert store.mark_unchanged(TASK, {"amva-0000": "h0", "amva-0001": "x"}) == {"amva-0001"}
    assert store._ledgers[TASK] is None
    assert store.seen_count(TASK) == 1
    (warning,) = [r for r in caplog.records if r.name == "catalog.store"]
    assert warning.getMessage() == (
        "stored hashes not read ahead (OperationalError): comparing in SQL"
    )
    broken.dispose()


def test_the_walk_settles_a_page_with_a_ledger_only_while_the_writer_holds_it(conn: Any) -> None:
    """``Store.settle_unchanged``, what the walk's thread asks of a listing page: the answers
    its kind's ledger holds unchanged are marked seen there and not handed on; a changed, new
    or detail-wanting answer is. Before the writer took the ledger up (what SQL marked is not
    in it yet), and once its counted keys are listed (a hit must then go to the table), the
    whole page goes to the writer, with nothing marked."""
    _stored(conn, 6, other=[], deleted=[])
    store = _store(conn, "a", preload=True)

    def record(n: int, digest: str, status: str = "running") -> Record:
        return Record(TASK, f"amva-{n:04d}", {"status": status}, digest, dict, "List")

    page = [record(0, "h0"), record(1, "h1"), record(2, "changed"), record(3, "h3", "failed"),
            record(4, "h4"), record(99, "h99")]
    wants = REGISTRY[TASK].wants_detail
    assert store.settle_unchanged(TASK, page, wants) == page  # not taken up yet
    assert store._ledgers.get(TASK) is None
    store.take_up_ready()
    handed = store.settle_unchanged(TASK, page, wants)
    assert [r.key for r in handed] == ["amva-0002", "amva-0003", "amva-0099"]
    assert store.seen_count(TASK) == 3 == _table_pass(conn, store)  # 0000, 0001 and 0004
    store._list_counted(TASK)
    assert store.settle_unchanged(TASK, [record(5, "h5")], wants) == [record(5, "h5")]
    assert store.seen_count(TASK) == 3 == _table_pass(conn, store)  # 0005 left to the writer


def test_a_no_op_re_sync_hands_the_writer_only_the_answers_it_must_compare(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the writer holds a kind's ledger, the walk's thread settles each page with it, so
    the writer's thread never sees the unchanged answers of a long listing: on a no-op
    re-sync that hand-off between threads was most of what the writer did. A failed task
    whose reason was stored is settled there too; one whose reason is unknown (its detail
    call failed last time) still goes to the detail check, a changed answer is still
    written, and everything is counted seen once (nothing deleted)."""
    from catalog.writer import Writer

    handed: list[str] = []  # what reached the writer's thread
    settled: list[tuple[bool, list[str]]] = []  # per page: ledger held, what it handed on
    route_page, settle_unchanged = Writer.route_page, Store.settle_unchanged

    def routed(self: Writer, records: list[Record]) -> None:
        handed.extend(str(r.key) for r in records if r.kind == TASK)
        route_page(self, records)

    def settling(self: Store, kind: str, records: list[Record], wants: Any) -> list[Record]:
        held = self._ledgers.get(kind) is not None
        out = settle_unchanged(self, kind, records, wants)
        if kind == TASK:
            settled.append((held, [str(r.key) for r in out]))
        return out

    monkeypatch.setattr(Writer, "route_page", routed)
    monkeypatch.setattr(Store, "settle_unchanged", settling)
    monkeypatch.setattr(LedgerLoader, "start", LedgerLoader.run)  # the ledgers ready at once
    catalog = FakeCatalog.generate(seed=63, model_sets=1, comp_tasks=300, eval_exports=0)
    tasks = catalog.keys(TASK)
    failed = {k for k in tasks if catalog.get(TASK, k).get("status") == "failed"}
    assert failed and len(failed) < len(tasks)
    with fake_console(catalog) as server:
        sync(db_url, server, batch_size=50, page_size=10)
        before = stored_rows(db_url)[TASK]
        unknown = sorted(failed)[0]
        engine = db.create_engine_for(db_url)
        with engine.begin() as conn:
            conn.execute(
                update(compression_tasks)
                .where(compression_tasks.c.task_id == unknown)
                .values(failed_reason=None)
            )
        engine.dispose()
        # Each call takes a while, as a real console's: the writer is up and has taken the
        # ledger up before the listing's last pages come in.
        server.latency = 0.02
        handed.clear()
        settled.clear()
        server.calls.clear()
        again = sync(db_url, server, batch_size=50, page_size=10)
        assert again.status == "success"
        assert again.counts[f"{TASK}_seen"] == len(tasks)
        assert again.counts[f"{TASK}_deleted"] == 0
        assert stored_rows(db_url)[TASK] == before  # the unknown reason asked for again
        assert server.call_count("DescribeModelCompTask") == 1
        assert unknown in handed
        after_take_up = [keys for held, keys in settled if held]
        assert after_take_up  # most pages, in fact: the first come before the writer is up
        assert set().union(*after_take_up) <= {unknown}  # no unchanged answer among them
        assert len(handed) < len(tasks)

        changed = sorted(set(tasks) - failed)[-1]
        catalog.patch(TASK, changed, fields={"quotaTier": "gold"})
        handed.clear()
        third = sync(db_url, server, batch_size=50, page_size=10)
    assert changed in handed
    assert third.counts[f"{TASK}_seen"] == len(tasks)
    assert third.counts[f"{TASK}_deleted"] == 0
    assert _raws(db_url)[changed]["quotaTier"] == "gold"  # no typed column: not "updated"


def test_the_walk_waits_for_its_kinds_ledger_until_the_writer_takes_it_up(conn: Any) -> None:
    """A listing page that comes in while its kind's ledger is being read waits for it
    (``Store.wait_for_ledger``) instead of going to the writer to be compared in SQL: until
    the loader has read it and the writer has taken it up, or the run gives up (a stop)."""
    _stored(conn, 6, other=[0, 1], deleted=[])
    gate = threading.Event()
    store = _store(conn, "a", preload=True, gate=gate)
    assert store.ledgers_due()
    found: list[Any] = []
    walk = threading.Thread(
        target=lambda: (store.wait_for_ledger(TASK, lambda: False),
                        found.append(store._ledgers.get(TASK)))
    )
    walk.start()
    walk.join(0.2)
    assert walk.is_alive()  # the scan has not begun
    gate.set()
    assert store._loader is not None
    store._loader.join()
    walk.join(0.2)
    assert walk.is_alive()  # read, not yet taken up: what SQL marked is not in it yet
    store.take_up_ready()
    walk.join(5)
    assert not walk.is_alive()
    assert found and found[0] is not None
    assert not store.ledgers_due()

    stopping = threading.Event()
    held_back = threading.Event()
    other = _store(conn, "b", preload=True, gate=held_back)  # not read before the stop
    gave_up = threading.Thread(target=other.wait_for_ledger, args=(TASK, stopping.is_set))
    gave_up.start()
    gave_up.join(0.2)
    assert gave_up.is_alive()
    stopping.set()
    gave_up.join(5)
    assert not gave_up.is_alive()  # a stop ends the wait
    held_back.set()
    other.close()
    store.close()
    # No loader (a scoped run): nothing to wait for.
    _store(conn, "a").wait_for_ledger(TASK, lambda: False)
