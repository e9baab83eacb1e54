"""SIGTERM and SIGINT delivered to a real ``python -m catalog sync`` in the middle of its walk.

The documented contract (README, exit code 9): the run stops after the current batch, commits
what it fetched, deletes nothing and records itself ``interrupted``. "Stops" is measured, not
assumed: the fake server delivers the signal itself, from inside the walk, and knows exactly which
answers it had sent before it and how many calls arrived after it.

The signal is delivered on a quiet wire: when the chosen call arrives, the server holds it and
every later arrival unanswered, waits until every answer already started has been written, gives
the client a moment to take them in, and only then signals. So "fetched before the signal" is a
set of answers the client had in hand, and the calls in flight at the signal are at most the
workers' own.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select

from catalog import db
from catalog.errors import ExitCode
from catalog.events import UNANSWERED
from catalog.fake import server as fake_server
from catalog.fake.catalog import KINDS, FakeCatalog
from catalog.fake.server import CallRecord, FakeServer
from catalog.schema import SPECS, changes, sync_runs
from tests._proc import (
    change_all,
    consistency_problems,
    dump_db,
    popen_cli,
    run_statuses,
    sync_argv,
)
from tests.helpers import (
    expected_rows,
    fake_console,
    stored_rows,
    sync,
    table_rows,
    tracked_only,
)

WORKERS = 4  # sync_argv's --workers
EARLY = 1  # the page a listing asks for before it hands on the one it just read
#: How long the server lets the client take in the answers it already has before signalling.
SETTLE = 0.5
#: How long the calls held at the signal wait for their answers: the time the process has to
#: run its handler (Python runs it in the main thread, once that holds the interpreter). With
#: the held calls answered at once, a loaded machine (a helper's tests beside these) let the
#: workers make a second call each before the handler had set the stop: 9 calls after the
#: signal, not the code's bound. Every worker waits on its answer meanwhile, so the interpreter
#: is free for the handler.
HANDLER_TIME = 0.5


class Signaller:
    """Signals the sync process when its ``nth`` call of ``action`` arrives, on a quiet wire."""

    def __init__(self, server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
        self.cond = threading.Condition()
        self.pid: int | None = None
        self.sig = signal.SIGTERM
        self.action = ""
        self.nth = 0
        self.count = 0  # calls of ``action`` so far
        self.in_flight = 0  # arrived, answer not yet written
        self.gate_closed = False
        self.signalled = False
        self.released = False  # the calls held at the signal are answered
        self.held = 0  # arrived while the gate was closed: in flight at the signal
        self.after = 0  # arrived after the signal
        self.before: list[tuple[str, Any, dict[str, Any]]] = []  # (action, body, result) sent
        self._call = threading.local()
        self._record = server.record
        server.record = self.record  # type: ignore[method-assign]
        original = fake_server._Handler._send
        signaller = self

        def send(handler: Any, route: str, reply: Any) -> None:
            original(handler, route, reply)
            signaller.sent(reply)

        monkeypatch.setattr(fake_server._Handler, "_send", send)

    def arm(self, pid: int, action: str, nth: int, sig: signal.Signals) -> None:
        with self.cond:
            self.pid, self.action, self.nth, self.sig = pid, action, nth, sig

    def record(self, call: CallRecord) -> None:
        self._record(call)
        self._call.value = None
        with self.cond:
            if self.released:
                self.after += 1
                return
            if self.gate_closed:
                if self.signalled:
                    self.after += 1
                else:
                    self.held += 1
                self.cond.wait_for(lambda: self.released)
                return
            self.count += call.action == self.action
            if self.pid is None or call.action != self.action or self.count != self.nth:
                self.in_flight += 1
                self._call.value = call
                return
            self.gate_closed = True
            self.cond.wait_for(lambda: self.in_flight == 0)
        time.sleep(SETTLE)  # the client parses, emits and queues what it was sent
        with self.cond:
            os.kill(self.pid, self.sig)
            self.signalled = True
        time.sleep(HANDLER_TIME)
        with self.cond:
            self.released = True
            self.cond.notify_all()

    def sent(self, reply: Any) -> None:
        call = getattr(self._call, "value", None)
        if call is None:
            return
        self._call.value = None
        with self.cond:
            self.in_flight -= 1
            if reply.status == 200 and reply.payload and "result" in reply.payload:
                self.before.append((call.action, call.body, reply.payload["result"]))
            self.cond.notify_all()


SET_LISTINGS = ("DescribeCustomModelSets", "DescribeSystemModelSets")


def _set_ids(page: dict[str, Any]) -> set[str]:
    """The set ids of a set listing's page (its one list, whatever the call names it)."""
    items = next(v for k, v in page.items() if k != "pageInfo")
    return {str(item["modelSetId"]) for item in items}


def _fetched(
    before: list[tuple[str, Any, dict[str, Any]]], changed: dict[str, set[str]]
) -> dict[str, set[str]]:
    """The changed entities whose answers the client had before the signal, per kind.

    Sets come from their listings, versions from a describe call, tasks from their listing: a
    failed task too, whether its detail call was answered, asked or not asked yet (see
    :func:`_waiting` for those whose detail was not in hand).
    """
    out: dict[str, set[str]] = {kind: set() for kind in KINDS}
    for action, body, result in before:
        if action in SET_LISTINGS:
            out["model_set"] |= _set_ids(result)
        elif action in ("DescribeModel", "DescribeSystemModel"):
            out["model_version"].add(str(result["modelId"]))
        elif action == "DescribeModelCompTasks":
            out["compression_task"] |= {str(t["id"]) for t in result["modelCompTaskList"]}
        elif action == "DescribeModelExportTask" and result.get("hasRecord") is not False:
            out["model_export"].add(str(body["modelId"]))
        elif action.endswith("/eval/result/export/info"):
            out["eval_result_export"].add(str(result["exportID"]))
    return {kind: keys & changed[kind] for kind, keys in out.items()}


def _waiting(before: list[tuple[str, Any, dict[str, Any]]]) -> dict[str, set[str]]:
    """Per kind, the listed entities whose detail call had not answered before the signal: a
    set's describe call, a failed task's. Their listing's answer is incomplete, so a stop
    leaves a stored one as it was (``Record.incomplete``)."""
    listed: dict[str, set[str]] = {"model_set": set(), "compression_task": set()}
    answered: dict[str, set[str]] = {"model_set": set(), "compression_task": set()}
    for action, body, result in before:
        if action in SET_LISTINGS:
            listed["model_set"] |= _set_ids(result)
        elif action in ("DescribeModelSet", "DescribeSystemModelSet"):
            answered["model_set"].add(str(body["modelSetId"]))
        elif action == "DescribeModelCompTasks":
            listed["compression_task"] |= {
                str(t["id"]) for t in result["modelCompTaskList"] if t.get("status") == "failed"
            }
        elif action == "DescribeModelCompTask":
            answered["compression_task"].add(str(body["modelCompTaskId"]))
    out = {kind: set[str]() for kind in KINDS}
    for kind, keys in listed.items():
        out[kind] = keys - answered[kind]
    return out


def _written_and_deleted_by(
    db_url: str, run_id: int
) -> tuple[dict[str, set[str]], int, dict[str, set[str]]]:
    """Per kind, the keys the run wrote (new or changed); how many deletions it made; and per
    kind, the keys it recorded a change of."""
    engine = db.create_engine_for(db_url)
    try:
        with engine.connect() as conn:
            written = {
                kind: {
                    str(k) for k in conn.execute(
                        select(spec.key_column).where(spec.table.c.last_seen_run_id == run_id)
                    ).scalars()
                }
                for kind, spec in SPECS.items()
            }
            deleted = sum(
                int(conn.execute(
                    select(func.count()).select_from(spec.table)
                    .where(spec.table.c.deleted_run_id == run_id)
                ).scalar_one())
                for spec in SPECS.values()
            )
            deleted += int(conn.execute(
                select(func.count()).select_from(changes)
                .where(changes.c.run_id == run_id, changes.c.operation == "delete")
            ).scalar_one())
            touched: dict[str, set[str]] = {kind: set() for kind in SPECS}
            for kind, key in conn.execute(
                select(changes.c.kind, changes.c.entity_id).where(changes.c.run_id == run_id)
            ):
                touched[kind].add(str(key))
            return written, deleted, touched
    finally:
        engine.dispose()


def _unanswered_tasks(db_url: str, run_id: int) -> set[str]:
    """The compression tasks run ``run_id`` stored without a hash: failed ones whose detail
    it did not get."""
    t = SPECS["compression_task"].table
    engine = db.create_engine_for(db_url)
    try:
        with engine.connect() as conn:
            mine = t.c.last_seen_run_id == run_id
            rows = conn.execute(select(t.c.task_id).where(mine, t.c.raw_hash == UNANSWERED))
            return {str(k) for k in rows.scalars()}
    finally:
        engine.dispose()


@dataclass
class Interrupted:
    """What one interrupted run and the run after it left, for the tests to judge."""

    returncode: int
    stderr: str
    status: str
    problems: list[str]
    held: int  # calls in flight at the signal, besides the one it fell on
    after: int  # calls that arrived after the signal
    fetched: dict[str, set[str]]  # per kind, entities whose answers the client had before it
    written: dict[str, set[str]]  # per kind, entities the interrupted run committed
    touched: dict[str, set[str]]  # per kind, entities it recorded a change of
    waiting: dict[str, set[str]]  # per kind, listed ones whose detail it did not have
    deleted: int  # deletions by the interrupted run (marks and delete changes)
    unanswered: set[str]  # compression tasks it stored without a hash (detail not answered)
    doomed_alive: bool  # the entities removed from the catalog are still alive after it
    next_status: str
    converged: bool  # after the next run, the database equals the catalog
    next_problems: list[str]
    ledger: dict[str, Any]  # the interrupted run's sync_runs row


def _interrupt(
    db_url: str, monkeypatch: pytest.MonkeyPatch, sig: signal.Signals, action: str, nth: int
) -> Interrupted:
    """Sync, change the catalog, sync again in a process signalled at ``action``'s ``nth`` call
    (default batch size and commit interval: what users run), then run once more."""
    # 250 tasks: three listing pages, so the signal can fall between two of them.
    catalog = FakeCatalog.generate(seed=12, model_sets=8, comp_tasks=250, eval_exports=2)
    with fake_console(catalog) as server:
        sync(db_url, server)
        # Every entity changes, so the records the run writes show as written by it.
        changed = change_all(catalog, random.Random(3))
        doomed = catalog.keys("compression_task")[-4:]
        for key in doomed:
            catalog.remove("compression_task", key)
        signaller = Signaller(server, monkeypatch)
        proc = popen_cli(sync_argv(db_url, server))
        signaller.arm(proc.pid, action, nth, sig)
        _, err = proc.communicate(timeout=60)
        assert signaller.signalled, f"the walk made fewer than {nth} {action} calls"
        after = signaller.after  # the signalled process's calls only, not the next sync's
        run_id, status = run_statuses(db_url)[-1]
        problems = consistency_problems(db_url)
        written, deleted, touched = _written_and_deleted_by(db_url, run_id)
        unanswered = _unanswered_tasks(db_url, run_id)
        doomed_alive = set(doomed) <= set(stored_rows(db_url)["compression_task"])
        (ledger,) = [r for r in table_rows(db_url, sync_runs) if r["run_id"] == run_id]
        done = sync(db_url, server)
    return Interrupted(
        returncode=proc.returncode,
        stderr=err,
        status=status,
        problems=problems,
        held=signaller.held,
        after=after,
        fetched=_fetched(signaller.before, changed),
        written=written,
        touched=touched,
        waiting={k: v & changed[k] for k, v in _waiting(signaller.before).items()},
        deleted=deleted,
        unanswered=unanswered,
        doomed_alive=doomed_alive,
        next_status=done.status,
        converged=stored_rows(db_url) == tracked_only(expected_rows(catalog)),
        next_problems=consistency_problems(db_url),
        ledger=ledger,
    )


WALK_KINDS = ("model_set", "model_version", "compression_task", "model_export")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_ends_the_run_interrupted_with_what_it_fetched_and_no_deletes(
    db_url: str, sig: signal.Signals, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On the sixth export call: the root listings start first, so compression task pages and
    # versions were both fetched before it, and most of the walk is still to come.
    seen = _interrupt(db_url, monkeypatch, sig, "DescribeModelExportTask", 6)
    assert seen.returncode == ExitCode.INTERRUPTED, (seen.returncode, seen.stderr)
    assert "Traceback" not in seen.stderr
    assert [line for line in seen.stderr.splitlines() if line.startswith("Error:")] == [
        "Error: interrupted: stopped after the current batch; nothing was deleted"]
    assert seen.status == "interrupted"
    assert seen.problems == []
    assert seen.held <= WORKERS - 1
    # Everything the walk fetched whole before the signal was committed (the tracked
    # evaluation exports, fetched before the run, have a test of their own below); what it
    # had only the listing of, its detail call not answered, was left as stored.
    assert seen.fetched["compression_task"] and seen.fetched["model_version"]
    for kind in WALK_KINDS:
        missing = seen.fetched[kind] - seen.written[kind]
        assert missing <= seen.waiting[kind], (kind, missing - seen.waiting[kind])
        assert not missing & seen.touched[kind], kind
        # Its sync_runs row counts them: seen and (every entity changed) changed.
        assert seen.ledger[f"{kind}_seen"] == len(seen.written[kind] | missing), kind
        assert seen.ledger[f"{kind}_updated"] == len(seen.written[kind]), kind
    assert seen.deleted == 0 and seen.doomed_alive
    assert seen.next_status == "success" and seen.converged and seen.next_problems == []


def test_a_signal_between_listing_pages_leaves_the_failed_tasks_waiting_for_details(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the second page of compression tasks, the first page's failed tasks are still
    waiting to learn whether they need a detail call (the writer asks a batch's worth, or at
    the listing's end). Their listing lacks the reason: written, a task would hold its new
    status with the old reason, a state it never had, in history and ``changes`` (the
    2026-12-03 crash audit). The stop leaves them as stored; the others are written; the
    next run asks for their details and ends equal to the console."""
    seen = _interrupt(db_url, monkeypatch, signal.SIGTERM, "DescribeModelCompTasks", 2)
    assert seen.returncode == ExitCode.INTERRUPTED, (seen.returncode, seen.stderr)
    assert seen.problems == []
    tasks = seen.fetched["compression_task"]
    assert len(tasks) >= 90  # the first page's, all changed
    missing = tasks - seen.written["compression_task"]
    assert missing, "no failed task was waiting: the test shows nothing"
    assert missing <= seen.waiting["compression_task"]
    assert not missing & seen.touched["compression_task"]  # no change, no history version
    assert not seen.unanswered & missing
    assert tasks - seen.waiting["compression_task"] <= seen.written["compression_task"]
    assert seen.deleted == 0 and seen.doomed_alive
    assert seen.next_status == "success" and seen.converged and seen.next_problems == []


def test_a_first_sync_stopped_before_details_leaves_history_as_a_clean_sync_would(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new entity whose detail call a stop came before is not stored: stored as listed, the
    next run's whole answer recorded its detail fields as a change that never happened (a
    failed task's reason "NULL -> ..."), and history held a version the console never had."""
    catalog = FakeCatalog.generate(seed=12, model_sets=8, comp_tasks=250, eval_exports=2)
    with fake_console(catalog) as server:
        signaller = Signaller(server, monkeypatch)
        proc = popen_cli(sync_argv(db_url, server))
        signaller.arm(proc.pid, "DescribeModelCompTasks", 2, signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == ExitCode.INTERRUPTED, err
        waiting = _waiting(signaller.before)["compression_task"]
        assert waiting, "no failed task was waiting for its detail: the test shows nothing"
        done = sync(db_url, server)
    assert done.status == "success"
    assert stored_rows(db_url) == tracked_only(expected_rows(catalog))
    history = SPECS["compression_task"].history
    versions = [r["task_id"] for r in table_rows(db_url, history)]
    assert sorted(versions) == sorted(set(versions))  # one version each, as a clean sync's
    updates = [c for c in table_rows(db_url, changes) if c["operation"] == "update"]
    assert updates == []


def test_calls_after_a_signal_are_bounded_by_the_workers_in_flight(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Mid-walk, on a set's version: most of the walk is still to come.
    seen = _interrupt(db_url, monkeypatch, signal.SIGTERM, "DescribeModel", 6)
    assert seen.returncode == ExitCode.INTERRUPTED, (seen.returncode, seen.stderr)
    assert seen.held <= WORKERS - 1
    # Calls in flight at the signal finish; at most one more per worker (a task's next call
    # made as the signal arrived), and a listing may have asked for the page after the one
    # its worker holds (``iter_pages`` asks early); never the rest of the walk (dozens of
    # calls: versions, exports and failed tasks' details).
    assert seen.after <= WORKERS + EARLY, (seen.after, seen.held)


def test_evaluation_exports_fetched_before_a_signal_are_committed(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _interrupt(db_url, monkeypatch, signal.SIGTERM, "DescribeModel", 6)
    assert seen.returncode == ExitCode.INTERRUPTED, (seen.returncode, seen.stderr)
    assert seen.fetched["eval_result_export"]  # tracked exports are among the first calls
    assert seen.fetched["eval_result_export"] <= seen.written["eval_result_export"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_before_the_run_starts_is_exit_9_in_one_line(
    sqlite_url: str, sig: signal.Signals
) -> None:
    """Stopped while its first call waits (the credentials check, before the run): not click's
    "Aborted!" with exit 1, nor a traceback, but what a stopped run gives, and nothing
    written."""
    from tests._stub_http import Reply, StubServer

    with StubServer([Reply(hang=True)]) as server:
        proc = popen_cli(sync_argv(sqlite_url, server.url))
        deadline = time.monotonic() + 30
        while not server.seen and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.seen, "the sync never made its first call"
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == ExitCode.INTERRUPTED, (proc.returncode, err)
    assert "Traceback" not in err and "Aborted" not in err
    assert [line for line in err.splitlines() if line.startswith("Error:")] == [
        "Error: interrupted before the run started; nothing was written"]
    assert "not tried again" not in err  # the stop ended the retries, and is what is reported
    assert dump_db(sqlite_url).get("sync_runs", []) == []  # no run was started


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_signal_while_the_command_starts_is_exit_9_in_one_line(
    sqlite_url: str, log_format: str
) -> None:
    """Before a sync's run (or in any other command), a signal is the console script's: one
    line and exit 9, not click's "Aborted!" with exit 1 or a traceback; with JSON logs, the
    one JSON line every other fatal error is."""
    import json

    from catalog import locks
    from tests._proc import cli_env

    # The lock held by another "run" keeps this one waiting, with the script's own handler on.
    engine = db.create_engine_for(sqlite_url)
    with engine.connect() as conn, locks.writer_lock(conn, 0, "default"):
        proc = subprocess.Popen(
            [sys.executable, "-c", "from catalog.entry import main; main()",
             "--database-url", sqlite_url, "--log-format", log_format, "sync",
             "--lock-timeout", "60"],
            env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        time.sleep(3)  # past the imports, waiting for the lock
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    engine.dispose()
    assert proc.returncode == ExitCode.INTERRUPTED, (proc.returncode, err)
    assert "Traceback" not in err and "Aborted" not in err
    last = err.strip().splitlines()[-1]
    if log_format == "text":
        assert last == "Error: interrupted by SIGINT", err
    else:
        fatal = json.loads(last)
        assert fatal["event"] == "fatal" and fatal["exit_code"] == ExitCode.INTERRUPTED
        assert fatal["message"] == "interrupted by SIGINT"


def test_ctrl_c_is_how_the_fake_server_stops_not_an_interruption() -> None:
    from tests._proc import cli_env

    proc = subprocess.Popen([sys.executable, "-m", "catalog", "fake-server", "--port", "0"],
                            env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    assert "Ctrl-C to stop" in proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, (out, err)
    assert "stopped after 0 calls" in out and "Error" not in err
