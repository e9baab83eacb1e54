"""Two real ``sync`` processes on one database: one writer at a time, the other waits or leaves.

The first process is held mid-walk by the fake server (a gate on its API calls; it has made
calls, so it holds the lock: the lock is taken before the first call) while the second one starts;
the test waits until the second is seen waiting on the lock (its lock file open, or its advisory
lock attempt in ``pg_stat_activity``), not for a while.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import text

from catalog import db
from catalog.errors import ExitCode
from catalog.fake.catalog import FakeCatalog
from catalog.fake.server import CallRecord, FakeServer
from catalog.schema import sync_runs
from tests._proc import assert_consistent, change_all, popen_cli, run_cli, sync_argv
from tests.helpers import create_schema, expected_rows, fake_console, stored_rows, tracked_only


class Gate:
    """Holds every API call from number ``at`` on until :meth:`open`: a run paused mid-walk."""

    def __init__(self, server: FakeServer, at: int) -> None:
        self.at = at
        self.count = 0
        self.lock = threading.Lock()
        self.reached = threading.Event()
        self.released = threading.Event()
        self._record = server.record
        server.record = self.record  # type: ignore[method-assign]

    def record(self, call: CallRecord) -> None:
        self._record(call)
        with self.lock:
            self.count += 1
            hold = self.count >= self.at
        if hold:
            self.reached.set()
            self.released.wait(timeout=60)

    def open(self) -> None:
        self.released.set()


def _wait(gate: Gate, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while not gate.reached.wait(timeout=0.05):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline


def _wait_until(condition: Callable[[], bool], proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the process never reached that state"
        time.sleep(0.02)


def _sessions(db_url: str) -> set[int]:
    """PostgreSQL: the backends connected to the test database now (empty on SQLite)."""
    if not db_url.startswith("postgresql"):
        return set()
    engine = db.create_engine_for(db_url)
    try:
        with engine.connect() as conn:
            return set(conn.execute(text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            )).scalars())
    finally:
        engine.dispose()


def _waiting_on_the_lock(db_url: str, proc: subprocess.Popen[str], others: set[int]) -> bool:
    """Whether ``proc`` is inside the writer lock's wait (catalog/locks.py), seen from outside.

    SQLite: it holds the lock file open (it opens it, then polls ``flock``). PostgreSQL: a new
    session of the test database whose last statement is the advisory lock attempt it polls.
    """
    if db_url.startswith("sqlite"):
        lock = str(Path(db_url.removeprefix("sqlite:///")).resolve()) + ".lock"
        try:
            return any(os.readlink(fd) == lock for fd in Path(f"/proc/{proc.pid}/fd").iterdir())
        except OSError:  # a descriptor closed while we looked
            return False
    engine = db.create_engine_for(db_url)
    try:
        with engine.connect() as conn:
            pids = set(conn.execute(text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND query LIKE 'SELECT pg_try_advisory_lock%' AND pid <> pg_backend_pid()"
            )).scalars())
    finally:
        engine.dispose()
    return bool(pids - others)


def _run_intervals(db_url: str) -> list[tuple[int, str, object, object]]:
    engine = db.create_engine_for(db_url)
    with engine.connect() as conn:
        rows = conn.execute(
            sync_runs.select().order_by(sync_runs.c.started_at)
        ).mappings().all()
    engine.dispose()
    return [(r["run_id"], r["status"], r["started_at"], r["finished_at"]) for r in rows]


def test_second_sync_exits_locked_or_waits_never_two_writers(db_url: str) -> None:
    catalog = FakeCatalog.generate(seed=21, model_sets=4, comp_tasks=10)
    with fake_console(catalog) as server:
        gate = Gate(server, at=3)
        # A long timeout: its held call must not time out and be retried while the test looks.
        first = popen_cli(sync_argv(db_url, server, "--workers", "1", "--timeout", "60"))
        _wait(gate, first)
        # No patience: exits at once with its own code and a message saying what to do.
        impatient = run_cli(sync_argv(db_url, server, "--lock-timeout", "0"))
        assert impatient.returncode == ExitCode.LOCKED, impatient.stderr
        errors = [line for line in impatient.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and "another sync of account 'default' is running" in errors[0]
        assert "--lock-timeout" in errors[0] and "Traceback" not in impatient.stderr
        # Patient: waits for the first to finish, then runs.
        others = _sessions(db_url)
        patient = popen_cli(sync_argv(db_url, server, "--lock-timeout", "60"))
        _wait_until(lambda: _waiting_on_the_lock(db_url, patient, others), patient)
        assert gate.count == gate.at  # waiting, it made no call: the lock comes before the first
        assert patient.poll() is None
        gate.open()
        out1, err1 = first.communicate(timeout=60)
        out2, err2 = patient.communicate(timeout=60)
        assert first.returncode == 0, err1
        assert patient.returncode == 0, err2
    runs = _run_intervals(db_url)
    assert [status for _, status, _, _ in runs] == ["success", "success"]  # the impatient: no row
    (_, _, s1, f1), (_, _, s2, _) = runs
    assert f1 is not None and s2 >= f1  # the second run began after the first had finished
    assert stored_rows(db_url) == tracked_only(expected_rows(catalog))
    assert_consistent(db_url)


def test_a_killed_holder_does_not_keep_the_lock(db_url: str) -> None:
    catalog = FakeCatalog.generate(seed=22, model_sets=3, comp_tasks=6)
    # Before the run's row is written: the first listing page and each --eval-export-id given.
    preflight = 1 + len(catalog.keys("eval_result_export"))
    create_schema(db_url)
    with fake_console(catalog) as server:
        gate = Gate(server, at=preflight + 2)
        holder = popen_cli(sync_argv(db_url, server, "--workers", "1"))
        _wait(gate, holder)
        # The walk starts while the run is opened: its call waits at the gate, the run's row
        # is written meanwhile, and the holder dies with its run under way.
        _wait_until(lambda: [s for _, s, _, _ in _run_intervals(db_url)] == ["running"], holder)
        holder.kill()
        holder.communicate(timeout=30)
        gate.open()
        after = run_cli(sync_argv(db_url, server, "--lock-timeout", "10"))
        assert after.returncode == 0, after.stderr
    statuses = [status for _, status, _, _ in _run_intervals(db_url)]
    assert statuses == ["aborted", "success"]
    assert_consistent(db_url)


def test_a_new_sqlite_file_whose_write_lock_is_held_is_waited_for_not_failed(
    tmp_path: Path,
) -> None:
    """Turning a new file to WAL takes its write lock. When another process holds it (another
    account's first sync creating the schema), a connection must wait (busy_timeout) from its
    very first statement, not fail with "database is locked" after the driver's default."""
    import sqlite3

    path = tmp_path / "new.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("CREATE TABLE t (x INTEGER)")  # rollback journal, write lock held
    release = threading.Timer(0.5, lambda: holder.execute("COMMIT"))
    # No wait of the driver's own (its default is 5 s): only our PRAGMA can make it wait.
    engine = db.create_engine_for(f"sqlite:///{path}", connect_args={"timeout": 0})
    release.start()
    try:
        started = time.monotonic()
        with db.connect(engine) as conn:
            mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
        assert mode == "wal"
        assert time.monotonic() - started >= 0.3  # it did wait for the holder
    finally:
        release.join()
        holder.close()
        engine.dispose()


def test_a_symbolic_link_to_the_database_takes_the_same_lock(tmp_path: Path) -> None:
    """The lock file was named after the path given: a link beside the file locked another."""
    from catalog import locks

    real = tmp_path / "data" / "catalog.db"
    real.parent.mkdir()
    (tmp_path / "link.db").symlink_to(real)
    (tmp_path / "dirlink").symlink_to(real.parent)
    create_schema(f"sqlite:///{real}")
    with fake_console(FakeCatalog.generate(seed=22, model_sets=1, comp_tasks=2)) as server:
        engine = db.create_engine_for(f"sqlite:///{real}")
        try:
            with engine.connect() as conn, locks.writer_lock(conn, timeout=0):
                for path in (tmp_path / "link.db", tmp_path / "dirlink" / "catalog.db"):
                    other = run_cli(sync_argv(f"sqlite:///{path}", server, "--lock-timeout", "0"))
                    assert other.returncode == ExitCode.LOCKED, (path, other.stderr)
        finally:
            engine.dispose()
    assert sorted(p.name for p in real.parent.iterdir() if p.suffix == ".lock") == [
        "catalog.db.lock"]
    assert not list(tmp_path.glob("*.lock"))


def _term_while_held(
    holder: Any, proc: subprocess.Popen[str], settle: float
) -> tuple[str, float]:
    """SIGTERM ``proc`` ``settle`` s from now while ``holder`` holds SQLite's write lock; its
    stderr and the seconds from the signal to its end. The holder lets go afterwards."""
    try:
        time.sleep(settle)
        assert proc.poll() is None
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        return err, time.monotonic() - signalled
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_signal_ends_a_wait_for_sqlites_write_lock(tmp_path: Path) -> None:
    """Another process holding SQLite's write lock (another account's sync, a tool): the
    writer waited inside SQLite, where no signal handler runs, until it let go."""
    import sqlite3

    path = tmp_path / "held.db"
    url = f"sqlite:///{path}"
    with fake_console(FakeCatalog.generate(seed=23, model_sets=2, comp_tasks=6)) as server:
        assert run_cli(sync_argv(url, server)).returncode == 0
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        proc = popen_cli(sync_argv(url, server))
        err, took = _term_while_held(holder, proc, 3.0)  # started, and waiting on the lock
    assert proc.returncode == ExitCode.INTERRUPTED, err
    assert took < 5, took  # not the holder's time: it held on for the whole test
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "waiting for another process to finish writing" in errors[0]
    assert_consistent(url)


def test_a_signal_mid_run_while_another_process_writes_leaves_the_run_to_the_next(
    tmp_path: Path,
) -> None:
    """Mid-run, the holder still holding after the stop: recording the run would wait for it
    too, so the row is left ``running`` and the next run marks it ``aborted`` with what it
    committed."""
    import sqlite3

    path = tmp_path / "held.db"
    url = f"sqlite:///{path}"
    catalog = FakeCatalog.generate(seed=24, model_sets=6, comp_tasks=300)
    with fake_console(catalog, latency=0.02) as server:
        assert run_cli(sync_argv(url, server)).returncode == 0
        change_all(catalog, random.Random(24))  # so that the run writes as it goes
        proc = popen_cli(sync_argv(url, server, "--workers", "1", "--commit-interval", "0",
                                   "--batch-size", "5"))
        reader = sqlite3.connect(path)
        _wait_until(lambda: reader.execute(
            "SELECT count(*) FROM sync_runs WHERE status = 'running'").fetchone()[0] == 1, proc)
        _wait_until(lambda: reader.execute(
            "SELECT count(*) FROM changes WHERE run_id = 2").fetchone()[0] > 0, proc)
        holder = sqlite3.connect(path, isolation_level=None, timeout=30)
        holder.execute("BEGIN IMMEDIATE")
        err, took = _term_while_held(holder, proc, 1.0)  # its next batch waits for the holder
        status = reader.execute("SELECT status FROM sync_runs WHERE run_id = 2").fetchone()[0]
        reader.close()
        assert proc.returncode == ExitCode.INTERRUPTED, err
        assert took < 5, took
        assert status == "running"  # its row could not be written: left to the next run
        assert run_cli(sync_argv(url, server)).returncode == 0
    (dead,) = [r for r in _run_intervals(url) if r[0] == 2]
    assert dead[1] == "aborted"
    engine = db.create_engine_for(url)
    with engine.connect() as conn:
        changed = conn.execute(text(
            "SELECT count(DISTINCT entity_id) FROM changes WHERE run_id = 2")).scalar_one()
        counted = conn.execute(sync_runs.select().where(sync_runs.c.run_id == 2)).mappings().one()
    engine.dispose()
    assert changed > 0
    assert sum(v for k, v in counted.items() if k.endswith(("_inserted", "_updated"))) == changed
    assert_consistent(url)


def test_a_second_first_sync_of_an_account_on_a_new_file_calls_nothing(tmp_path: Path) -> None:
    """A first sync into a new SQLite file makes its first calls before it creates the file,
    but under the account's lock: a second one waits or exits 7 before any call."""
    from catalog import locks

    path = tmp_path / "new.db"
    with fake_console(FakeCatalog.generate(seed=25, model_sets=1, comp_tasks=2)) as server:
        engine = db.writer_engine(f"sqlite:///{path}")
        try:
            with locks.writer_lock(engine, timeout=0):  # what the first one holds
                other = run_cli(sync_argv(f"sqlite:///{path}", server, "--lock-timeout", "0"))
        finally:
            engine.dispose()
        assert other.returncode == ExitCode.LOCKED, other.stderr
        assert server.call_count() == 0
        assert not path.exists()


def test_an_existing_files_write_lock_is_free_while_the_first_calls_wait(tmp_path: Path) -> None:
    """The first calls (the credentials check) come under the account's lock but outside any
    transaction: reading the tracked refs first had left SQLite's write lock held for as long
    as the calls and their retries lasted, and every other writer of the file waited."""
    import sqlite3

    path = tmp_path / "c.db"
    url = f"sqlite:///{path}"
    with fake_console(FakeCatalog.generate(seed=26, model_sets=2, comp_tasks=4)) as server:
        assert run_cli(sync_argv(url, server)).returncode == 0
        gate = Gate(server, at=1)  # the next run's first call waits
        proc = popen_cli(sync_argv(url, server, "--timeout", "60"))
        try:
            _wait(gate, proc)
            other = sqlite3.connect(path, isolation_level=None, timeout=0)
            other.execute("BEGIN IMMEDIATE")  # "database is locked" before
            other.execute("ROLLBACK")
            other.close()
        finally:
            gate.open()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
