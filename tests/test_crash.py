"""SIGKILL and SIGTERM delivered to a real ``python -m catalog sync`` process.

Kill points are deterministic where they can be: the fake server runs in this process and kills
the sync process when the N-th API call of that run arrives, for N spread over the whole walk.
The delete phase makes no API calls, so a few kills are delivered after a delay spread over the
end of a run instead. After every kill the database must be consistent (history and current
state agree); the next run must mark the dead run ``aborted``; a final run must complete and
leave the database equal to the catalog.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from typing import Any

import pytest

from catalog.errors import ExitCode
from catalog.fake.catalog import FakeCatalog
from catalog.fake.server import CallRecord, FakeServer
from tests._proc import assert_consistent, popen_cli, run_cli, run_statuses, sync_argv
from tests.helpers import expected_rows, fake_console, stored_rows, sync, tracked_only


class Killer:
    """Counts the API calls of the current run and signals the process at call number ``at``."""

    def __init__(self, server: FakeServer) -> None:
        self.lock = threading.Lock()
        self.proc: subprocess.Popen[str] | None = None
        self.at: int | None = None
        self.sig = signal.SIGKILL
        self.count = 0
        self.fired = False
        self._record = server.record
        server.record = self.record  # type: ignore[method-assign]

    def arm(self, proc: subprocess.Popen[str] | None, at: int | None,
            sig: signal.Signals = signal.SIGKILL) -> None:
        with self.lock:
            self.proc, self.at, self.sig, self.count, self.fired = proc, at, sig, 0, False

    def record(self, call: CallRecord) -> None:
        self._record(call)
        with self.lock:
            self.count += 1
            if self.proc is not None and self.count == self.at and not self.fired:
                self.fired = True
                os.kill(self.proc.pid, self.sig)


def _mutate(catalog: FakeCatalog, rng: random.Random) -> None:
    """Changes, additions and removals, so killed runs die amid updates, inserts and deletes."""
    for kind in ("model_version", "compression_task", "model_set", "model_export"):
        keys = catalog.keys(kind)
        for key in rng.sample(keys, min(len(keys), 2)):
            catalog.change(kind, key, rng)
    catalog.add("compression_task", rng)
    catalog.add("model_version", rng)
    tasks = catalog.keys("compression_task")
    if len(tasks) > 12:
        catalog.remove("compression_task", rng.choice(tasks))
    if rng.random() < 0.4:
        versions = catalog.keys("model_version")
        catalog.remove("model_version", rng.choice(versions))


def _only_last_may_be_running(db_url: str) -> list[str]:
    statuses = [s for _, s in run_statuses(db_url)]
    assert "running" not in statuses[:-1], statuses
    return statuses


@pytest.mark.slow
def test_sigkill_at_many_points_leaves_a_consistent_database(db_url: str) -> None:
    rng = random.Random(4242)
    catalog = FakeCatalog.generate(seed=11, model_sets=4, comp_tasks=16, eval_exports=2)
    with fake_console(catalog) as server:
        killer = Killer(server)
        started = time.monotonic()
        assert sync(db_url, server).status == "success"
        full_seconds = time.monotonic() - started
        total = killer.count
        # Call numbers over the whole walk (the first one is the preflight, before the run row),
        # then delays spread over the end of a run, to land in the last batches and the deletes.
        # The call points stay within the first 90% of the calls: the mutations between runs can
        # make a later run a little shorter, and a point past its end would kill nothing.
        last_call = int(total * 0.9)
        step = max(1, (last_call - 3) // 19)
        calls = (1, 2, *range(3, last_call + 1, step))
        points: list[tuple[str, float]] = [("call", n) for n in calls]
        points += [("delay", f) for f in (0.7, 0.9, 1.0, 1.2)]
        argv = sync_argv(db_url, server, "--batch-size", "2", "--commit-interval", "0",
                         "--lock-timeout", "20",
                         "--allow-mass-delete")
        killed = 0
        dead_runs: list[int] = []  # runs whose process died after writing its row
        for how, where in points:
            _mutate(catalog, rng)
            if how == "call":
                killer.arm(None, None)
                proc = popen_cli(argv)
                killer.arm(proc, int(where))
                _, err = proc.communicate(timeout=60)
            else:
                killer.arm(None, None)
                t0 = time.monotonic()
                proc = popen_cli(argv)
                try:
                    _, err = proc.communicate(timeout=max(0.05, where * (full_seconds + 1.0)))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    _, err = proc.communicate(timeout=30)
                full_seconds = max(full_seconds, (time.monotonic() - t0) - 1.0)
            assert proc.returncode in (-signal.SIGKILL, 0), err
            killed += proc.returncode == -signal.SIGKILL
            assert "Traceback" not in err
            assert_consistent(db_url)
            _only_last_may_be_running(db_url)
            last = run_statuses(db_url)[-1]
            if last[1] == "running":
                dead_runs.append(last[0])
        assert killed >= 20, killed
        # The next run repairs the last dead run and completes; the database equals the catalog.
        done = run_cli(sync_argv(db_url, server, "--lock-timeout", "20", "--allow-mass-delete"))
        assert done.returncode == 0, done.stderr
    statuses = _only_last_may_be_running(db_url)
    assert statuses[-1] == "success"
    assert len(dead_runs) >= 15, dead_runs
    aborted = {run_id for run_id, status in run_statuses(db_url) if status == "aborted"}
    assert set(dead_runs) <= aborted
    assert stored_rows(db_url) == tracked_only(expected_rows(catalog))
    assert_consistent(db_url)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_stops_after_the_current_batch_and_records_interrupted(
    db_url: str, sig: signal.Signals
) -> None:
    catalog = FakeCatalog.generate(seed=12, model_sets=4, comp_tasks=16)
    with fake_console(catalog, latency=0.02) as server:
        sync(db_url, server)
        doomed = catalog.keys("compression_task")[:4]
        for key in doomed:
            catalog.remove("compression_task", key)
        rng = random.Random(3)
        for key in catalog.keys("model_version")[:3]:
            catalog.change("model_version", key, rng)
        killer = Killer(server)
        proc = popen_cli(sync_argv(db_url, server, "--batch-size", "1", "--commit-interval", "0"))
        killer.arm(proc, 8, sig)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == ExitCode.INTERRUPTED, (out, err)
        assert "interrupted" in err and "Traceback" not in err
        assert [line for line in err.splitlines() if line.startswith("Error:")] == [
            "Error: interrupted: stopped after the current batch; nothing was deleted"]
        runs = run_statuses(db_url)
        assert runs[-1][1] == "interrupted"
        assert_consistent(db_url)
        # nothing was deleted by the interrupted run
        alive: dict[str, Any] = stored_rows(db_url)
        assert set(doomed) <= set(alive["compression_task"])
        assert sync(db_url, server).status == "success"
        assert stored_rows(db_url) == tracked_only(expected_rows(catalog))
        assert_consistent(db_url)
