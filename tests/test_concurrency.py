"""Two real ``sync`` processes on one database: one writer at a time, the other waits or leaves.

The first process is held mid-walk by the fake server (a gate on its API calls; it has made
calls, so it holds the lock: the lock is taken before the first call) while the second one starts;
the test waits until the second is seen waiting on the lock (its lock file open, or its advisory
lock attempt in ``pg_stat_activity``), not for a while.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import text

from catalog import db
from catalog.errors import ExitCode
from catalog.fake.catalog import FakeCatalog
from catalog.fake.server import CallRecord, FakeServer
from catalog.schema import sync_runs
from tests._proc import assert_consistent, popen_cli, run_cli, sync_argv
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
    """Whether ``proc`` is inside the writer lock's wait (catalog/runs.py), seen from outside.

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
