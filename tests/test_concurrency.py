"""Two real ``sync`` processes on one database: one writer at a time, the other waits or leaves.

The first process is slowed down by the fake server's latency so it is certainly mid-run (it has
made API calls, so it holds the lock: the lock is taken before the first call) when the second
one starts.
"""

from __future__ import annotations

import subprocess
import threading
import time

from catalog import db
from catalog.errors import ExitCode
from catalog.fake.catalog import FakeCatalog
from catalog.fake.server import CallRecord, FakeServer
from catalog.schema import sync_runs
from tests._proc import assert_consistent, popen_cli, run_cli, sync_argv
from tests.helpers import expected_rows, fake_console, stored_rows, tracked_only


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
        first = popen_cli(sync_argv(db_url, server, "--workers", "1"))
        _wait(gate, first)
        # No patience: exits at once with its own code and a message saying what to do.
        impatient = run_cli(sync_argv(db_url, server, "--lock-timeout", "0"))
        assert impatient.returncode == ExitCode.LOCKED, impatient.stderr
        errors = [line for line in impatient.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and "another sync is running" in errors[0]
        assert "--lock-timeout" in errors[0] and "Traceback" not in impatient.stderr
        # Patient: waits for the first to finish, then runs.
        patient = popen_cli(sync_argv(db_url, server, "--lock-timeout", "60"))
        time.sleep(1.0)  # let it start and queue on the lock (ordering help, not a timed test)
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
    with fake_console(catalog) as server:
        gate = Gate(server, at=preflight + 2)
        holder = popen_cli(sync_argv(db_url, server, "--workers", "1"))
        _wait(gate, holder)
        holder.kill()
        holder.communicate(timeout=30)
        gate.open()
        after = run_cli(sync_argv(db_url, server, "--lock-timeout", "10"))
        assert after.returncode == 0, after.stderr
    statuses = [status for _, status, _, _ in _run_intervals(db_url)]
    assert statuses == ["aborted", "success"]
    assert_consistent(db_url)
