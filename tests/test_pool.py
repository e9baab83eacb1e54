"""The walk's worker pool: deepest task first, so the queue does not grow with the catalog."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from catalog.events import Record, ScopeDone
from catalog.fake.catalog import FakeCatalog
from catalog.pool import DeepestFirstPool
from catalog.sync import build_client
from catalog.walk import Walker
from tests.helpers import fake_console, options, sync


def _blocked_pool() -> tuple[DeepestFirstPool, threading.Event]:
    """A one-worker pool whose worker waits on the returned gate."""
    pool = DeepestFirstPool(1)
    gate, started = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        gate.wait(5)

    pool.submit(hold)
    assert started.wait(5)
    return pool, gate


def test_deeper_tasks_run_first_and_in_order_within_a_depth() -> None:
    pool, gate = _blocked_pool()
    ran: list[str] = []
    finished = threading.Event()
    for name, depth in (("a0", 0), ("b2", 2), ("c1", 1), ("d2", 2), ("e0", 0)):
        pool.submit(lambda name=name: ran.append(name), depth)
    pool.submit(finished.set, -1)
    gate.set()
    assert finished.wait(5)
    assert ran == ["b2", "d2", "c1", "a0", "e0"]
    pool.shutdown()


def test_shutdown_drops_what_is_still_queued() -> None:
    pool, gate = _blocked_pool()
    ran: list[int] = []
    for n in range(5):
        pool.submit(lambda n=n: ran.append(n), 2)
    pool.shutdown()
    gate.set()
    for thread in pool._threads:
        thread.join(5)
        assert not thread.is_alive()
    assert ran == []


def test_a_task_that_raises_is_logged_and_its_worker_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pool = DeepestFirstPool(1, name="walk")
    ran = threading.Event()

    def broken() -> None:
        raise RuntimeError("a bug in a task")

    with caplog.at_level("ERROR", logger="catalog.pool"):
        pool.submit(broken)
        pool.submit(ran.set)
        assert ran.wait(5)  # the one worker survived the first task
    pool.shutdown()
    for thread in pool._threads:  # gone before the next test counts threads
        thread.join(5)
    (entry,) = [r for r in caplog.records if r.name == "catalog.pool"]
    assert "walk pool raised" in entry.getMessage()
    assert entry.exc_info is not None and "a bug in a task" in str(entry.exc_info[1])


def test_an_unused_pool_starts_no_thread() -> None:
    before = threading.active_count()
    pool = DeepestFirstPool(8)
    assert threading.active_count() == before
    pool.shutdown()
    ran = threading.Event()
    pool2 = DeepestFirstPool(2)
    pool2.submit(ran.set)
    assert ran.wait(5) and threading.active_count() >= before + 2
    pool2.shutdown()
    for thread in pool2._threads:
        thread.join(5)
    assert threading.active_count() == before


def _walk_queue_peak(submit_depth: Callable[[int], int], sets: int) -> tuple[int, int]:
    """Walk a catalog of ``sets`` sets through a 2-worker pool; (peak queue length, records)."""
    catalog = FakeCatalog.generate(seed=5, model_sets=sets, versions_per_set=5, comp_tasks=5)
    pool = DeepestFirstPool(2)
    pending = [0]
    lock = threading.Lock()
    done = threading.Event()
    records: list[Record] = []

    def finish() -> None:
        with lock:
            pending[0] -= 1
            if pending[0] == 0:
                done.set()

    def submit(task: Callable[[], None], depth: int) -> None:
        with lock:
            pending[0] += 1

        def run() -> None:
            try:
                task()
            finally:
                finish()

        pool.submit(run, submit_depth(depth))

    def emit(event: object) -> None:
        if isinstance(event, Record):
            records.append(event)
        assert not isinstance(event, ScopeDone) or event.key is not None

    with fake_console(catalog, latency=0.002) as server:
        client = build_client(options("sqlite://", server, workers=2))
        walker = Walker(client, submit, emit, include_system=False)
        with lock:
            pending[0] += 1  # held until start() has submitted everything
        walker.start(None, [])
        finish()
        assert done.wait(60)
        client.close()
    pool.shutdown()
    return pool.max_queued, len(records)


def test_the_queue_holds_sets_not_every_version() -> None:
    """FIFO queues every version's two calls before the first runs; deepest-first does not."""
    sets = 40
    fifo_peak, fifo_records = _walk_queue_peak(lambda depth: 0, sets)
    deep_peak, deep_records = _walk_queue_peak(lambda depth: depth, sets)
    assert deep_records == fifo_records > sets * 5  # the same walk either way
    assert fifo_peak > sets * 5  # most of the 400 version tasks waited at once
    assert deep_peak <= sets + 40  # the sets not yet described, and a few sets' versions


def test_a_worker_waits_for_room_only_while_another_can_drain_the_queue() -> None:
    pool = DeepestFirstPool(2)
    gate = threading.Event()
    pool.submit(gate.wait)  # one worker busy until the gate opens
    waited = threading.Event()

    def listing() -> None:
        for _ in range(5):
            pool.submit(lambda: None)  # queued behind the busy worker's task
        pool.wait_for_room(2)
        waited.set()

    pool.submit(listing)
    assert not waited.wait(0.3)  # five queued, two allowed: the listing waits
    gate.set()  # the first worker drains the queue
    assert waited.wait(5)
    pool.shutdown()

    alone = DeepestFirstPool(1)
    done = threading.Event()

    def only_worker() -> None:
        for _ in range(5):
            alone.submit(lambda: None)
        alone.wait_for_room(2)  # nobody else could drain it: no wait
        done.set()

    alone.submit(only_worker)
    assert done.wait(5)
    alone.shutdown()


def test_a_long_listing_waits_for_room_before_each_page(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Failed compression tasks each need a detail call; with no rate limit the listing named
    them faster than the workers answered, and the calls queued up with their answers (memory
    grew with the listing; docs/benchmark-history.md, "Memory"). Every page of a listing now goes
    through the pool's ``wait_for_room`` with twice a batch as the bound."""
    from catalog import sync as sync_module

    limits: list[int] = []

    class Recorded(DeepestFirstPool):
        def wait_for_room(self, limit: int, poll: float = 0.01) -> None:
            limits.append(limit)
            super().wait_for_room(limit, poll)

    monkeypatch.setattr(sync_module, "DeepestFirstPool", Recorded)
    catalog = FakeCatalog.generate(seed=71, model_sets=1, versions_per_set=1, comp_tasks=3000,
                                   eval_exports=0, fine_tuning_jobs=0, eval_tasks=0, services=0)
    with fake_console(catalog) as server:
        summary = sync(sqlite_url, server, batch_size=10, workers=4, qps=0)
    assert summary.status == "success"
    assert summary.counts["compression_task_inserted"] == 3000
    assert len(limits) >= 3000 // 100 and set(limits) == {2 * 10}


def test_max_queued_is_the_longest_the_queue_grew_not_its_last_length() -> None:
    pool, gate = _blocked_pool()
    drained = threading.Event()
    for _ in range(4):
        pool.submit(lambda: None)
    pool.submit(drained.set, -1)  # runs after the four
    gate.set()
    assert drained.wait(5)
    last = threading.Event()
    pool.submit(last.set)  # a short queue after a long one
    assert last.wait(5)
    assert pool.max_queued == 5
    pool.shutdown()


def test_a_pool_asked_for_no_worker_still_has_one() -> None:
    pool = DeepestFirstPool(0)
    ran = threading.Event()
    pool.submit(ran.set)
    assert ran.wait(5)
    pool.shutdown()



def _hold_one_worker(pool: DeepestFirstPool) -> threading.Event:
    """Occupy one worker of ``pool`` (ahead of anything queued) until the returned gate opens."""
    gate, busy = threading.Event(), threading.Event()

    def hold() -> None:
        busy.set()
        gate.wait(5)

    pool.submit(hold, 9)
    assert busy.wait(5)
    return gate


def _listing_waiting(
    pool: DeepestFirstPool,
    queued: int,
    limit: int,
    gate: threading.Event,
    waiting: threading.Event | None = None,
) -> tuple[threading.Event, list[bool]]:
    """Submit a task that queues ``queued`` no-ops, then waits for room for ``limit``; the
    returned list gets whether ``gate`` (the only way the no-ops can drain) was open when the
    wait ended. ``waiting`` is set when the task is about to wait."""
    opened: list[bool] = []
    done = threading.Event()
    waiting = waiting or threading.Event()

    def listing() -> None:
        for _ in range(queued):
            pool.submit(lambda: None, -1)
        waiting.set()
        pool.wait_for_room(limit)
        opened.append(gate.is_set())
        done.set()

    pool.submit(listing)
    return done, opened


def _drain(pool: DeepestFirstPool) -> None:
    flushed = threading.Event()
    pool.submit(flushed.set, -9)  # after everything queued
    assert flushed.wait(5)


def test_wait_for_room_holds_exactly_while_more_than_the_limit_are_queued() -> None:
    """The bound is "more than ``limit`` queued": at the limit a listing goes on at once, one
    over it waits until the other worker takes a task; on every wait, not only the first."""
    pool = DeepestFirstPool(2)
    for _ in range(2):  # a wait that ended leaves the pool as it found it
        gate = _hold_one_worker(pool)
        done, opened = _listing_waiting(pool, 3, 3, gate)
        assert done.wait(5)
        gate.set()
        assert opened == [False]  # not held while the other worker could not drain
        _drain(pool)
        gate = _hold_one_worker(pool)
        done, opened = _listing_waiting(pool, 4, 3, gate)
        done.wait(0.2)  # room for a wrong early return to show
        gate.set()
        assert done.wait(5)
        assert opened == [True]  # held until the queue could drain
        _drain(pool)
    pool.shutdown()


def test_when_two_workers_both_wait_for_room_the_last_goes_on() -> None:
    """Every worker waiting would leave none to drain the queue: the walk would stop."""
    pool = DeepestFirstPool(2)
    both = threading.Barrier(2)
    finished = [threading.Event(), threading.Event()]

    def listing(done: threading.Event) -> None:
        both.wait(5)  # each worker runs one listing: no worker is free
        for _ in range(3):
            pool.submit(lambda: None, -1)
        pool.wait_for_room(0)
        done.set()

    for done in finished:
        pool.submit(lambda done=done: listing(done))
    assert all(done.wait(5) for done in finished)
    pool.shutdown()


def test_shutdown_ends_a_wait_for_room() -> None:
    pool = DeepestFirstPool(2)
    gate = _hold_one_worker(pool)
    waiting = threading.Event()
    done, opened = _listing_waiting(pool, 5, 0, gate, waiting)
    assert waiting.wait(5)
    pool.shutdown()
    assert done.wait(5)  # the waiting worker goes on though nothing drained
    assert opened == [False]
    gate.set()


def test_a_task_that_never_ends_does_not_keep_the_process_alive() -> None:
    """The workers are daemon threads: a run ending (a signal, a fatal error) while a worker
    is stuck in a call does not wait for that call; the process exits."""
    code = (
        "import threading\n"
        "from catalog.pool import DeepestFirstPool\n"
        "pool = DeepestFirstPool(2)\n"
        "started = threading.Event()\n"
        "pool.submit(lambda: (started.set(), threading.Event().wait()))\n"
        "assert started.wait(5)\n"
        "pool.shutdown()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    done = subprocess.run([sys.executable, "-c", code], timeout=30, capture_output=True, env=env)
    assert done.returncode == 0, done.stderr
