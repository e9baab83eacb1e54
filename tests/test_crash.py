"""SIGKILL delivered to a real ``python -m catalog sync`` process, where data can be lost.

Kills land by construction: the sync process runs with ``QIANFAN_CATALOG_KILL_AT=<phase>`` and
SIGKILLs itself when it reaches that phase (``catalog/killpoints.py``): a batch written and not
committed, the first commit of written batches, between the delete phase's kinds, and after the
deletes before the ledger's finish. No timing decides where the kill falls, and every kill test
asserts that the process really died by SIGKILL. Each phase runs with the defaults users run
(500-row batches, commits paced at 1 s: a kill loses the most there) and with tiny batches
committed one by one, on both backends.

Before each kill the fake changes every entity, adds some and removes some in four kinds, so the
killed run dies amid updates, inserts and deletes. After it: history and current state agree and
no entity is half-deleted (``tests/_proc.py``); what the phase promises is in the database and
nothing more; the next run marks the dead run ``aborted``, makes the deletions the dead run could
not, and leaves the database equal to the catalog.

A second test kills at API call numbers spread over a walk (workers' requests in flight, one kill
before the run row exists), several runs in a row, repaired by one final run.
"""

from __future__ import annotations

import os
import random
import signal
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select, update

from catalog import db, killpoints
from catalog.fake.catalog import FakeCatalog
from catalog.fake.server import CallRecord, FakeServer
from catalog.schema import SPECS, changes, compression_tasks, sync_runs
from tests._proc import (
    assert_consistent,
    change_all,
    cli_env,
    connection_problems,
    dump_db,
    popen_cli,
    run_cli,
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

SETTINGS = {
    "default": (),  # 500 rows per batch, commits paced at 1 s
    "small": ("--batch-size", "2", "--commit-interval", "0"),
}


def kill_env(phase: str) -> dict[str, str]:
    return {**cli_env(), killpoints.ENV: phase}


def _catalog() -> FakeCatalog:
    # 600 compression tasks: a default-size batch (500 rows) fills and is written mid-walk.
    return FakeCatalog.generate(seed=11, model_sets=4, comp_tasks=600, eval_exports=2)


def _mutate(catalog: FakeCatalog, rng: random.Random) -> dict[str, set[str]]:
    """Change every entity, add some, remove some; returns the removed keys per kind.

    Every record the next run writes is a change, so any committed batch shows in the database.
    The removals give the delete phase work in four kinds (exports, versions, tasks, sets), so a
    kill after the first kind's deletes is a kill in the middle of the phase. Evaluation exports
    are not removed: only a complete listing decides a deletion, and they have none.
    """
    change_all(catalog, rng)
    gone: dict[str, set[str]] = {kind: set() for kind in SPECS}

    def note(removed: dict[str, Any]) -> None:
        gone[removed["kind"]].add(str(removed["key"]))
        for child in removed["children"]:
            note(child)

    sets = catalog.keys("model_set")
    custom = [k for k in sets if catalog.get("model_set", k)["source"] == "UserCreate"]
    note(catalog.remove("model_set", custom[0]))
    exported = [
        k for k in catalog.keys("model_export")
        if catalog.get("model_version", k)["modelSetId"] != custom[0]
    ]
    note(catalog.remove("model_version", exported[0]))
    for key in catalog.keys("compression_task")[:3]:
        note(catalog.remove("compression_task", key))
    catalog.add("compression_task", rng)
    catalog.add("model_version", rng, parent=custom[1])
    assert gone["model_export"] and gone["model_version"] and gone["model_set"]
    return gone


def _touched_by(db_url: str, run_id: int) -> dict[str, int]:
    """Per kind: entities the run wrote (inserted or changed), entities it marked deleted."""
    engine = db.create_engine_for(db_url)
    try:
        with engine.connect() as conn:
            out = {}
            for spec in SPECS.values():
                t = spec.table
                for what, column in (("written", t.c.last_seen_run_id),
                                     ("deleted", t.c.deleted_run_id)):
                    stmt = select(func.count()).select_from(t).where(column == run_id)
                    out[f"{spec.kind}_{what}"] = int(conn.execute(stmt).scalar_one())
            stmt = select(func.count()).select_from(changes).where(changes.c.run_id == run_id)
            out["changes"] = int(conn.execute(stmt).scalar_one())
            return out
    finally:
        engine.dispose()


def _changed_entities(db_url: str, run_id: int) -> dict[str, int]:
    """Per kind: the entities the run's change rows name (each once, however many fields)."""
    c = changes.c
    stmt = select(c.kind, func.count(c.entity_id.distinct())).where(c.run_id == run_id)
    engine = db.create_engine_for(db_url)
    try:
        with engine.connect() as conn:
            return {str(k): int(n) for k, n in conn.execute(stmt.group_by(c.kind))}
    finally:
        engine.dispose()


def _deleted_keys(db_url: str, run_id: int) -> dict[str, set[str]]:
    engine = db.create_engine_for(db_url)
    try:
        with engine.connect() as conn:
            return {
                kind: {
                    str(k) for k in conn.execute(
                        select(spec.key_column).where(spec.table.c.deleted_run_id == run_id)
                    ).scalars()
                }
                for kind, spec in SPECS.items()
            }
    finally:
        engine.dispose()


def _without_ledger(dump: dict[str, list[tuple[Any, ...]]]) -> dict[str, list[tuple[Any, ...]]]:
    return {name: rows for name, rows in dump.items() if name != "sync_runs"}


@pytest.mark.parametrize("settings", sorted(SETTINGS))
@pytest.mark.parametrize("phase", killpoints.PHASES)
def test_sigkill_at_a_phase_leaves_whole_batches_and_whole_deletes(
    db_url: str, phase: str, settings: str
) -> None:
    rng = random.Random(f"{phase}/{settings}")
    catalog = _catalog()
    with fake_console(catalog) as server:
        assert sync(db_url, server).status == "success"
        before = _without_ledger(dump_db(db_url))
        gone = _mutate(catalog, rng)
        expected = tracked_only(expected_rows(catalog))
        argv = sync_argv(db_url, server, *SETTINGS[settings], "--allow-mass-delete")
        killed = run_cli(argv, env=kill_env(phase))
        assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr)
        assert "Traceback" not in killed.stderr
        dead_id, dead_status = run_statuses(db_url)[-1]
        assert dead_status == "running"  # its row was written first; nothing finished it
        assert_consistent(db_url)
        touched = _touched_by(db_url, dead_id)
        assert not any(v for k, v in touched.items() if k.endswith("_deleted")), touched
        written = sum(v for k, v in touched.items() if k.endswith("_written"))
        if phase == "batch_written":
            # The written batch died uncommitted, and nothing of the run was committed before it.
            assert _without_ledger(dump_db(db_url)) == before
        elif phase == "batch_committed":
            # That commit is durable: the run's first batch(es), as changes with history.
            assert written >= 1 and touched["changes"] >= written, touched
            if settings == "small":
                assert written <= 2, touched  # exactly one 2-row batch was committed
        else:
            # Every batch was committed; the deletes were not (one transaction, not finished).
            alive = stored_rows(db_url)
            for kind, rows in expected.items():
                assert {k: alive[kind][k] for k in rows} == rows, kind
                assert gone[kind] <= set(alive[kind]), kind
        entities = _changed_entities(db_url, dead_id)
        done = sync(db_url, server, allow_mass_delete=True)
        assert done.status == "success", done.message
    statuses = dict(run_statuses(db_url))
    assert statuses[dead_id] == "aborted"
    # Its row counts what its committed batches hold, and does not claim to know its end.
    (dead,) = [r for r in table_rows(db_url, sync_runs) if r["run_id"] == dead_id]
    assert dead["finished_at"] is None
    for kind in SPECS:
        assert dead[f"{kind}_seen"] == touched[f"{kind}_written"], kind
        assert dead[f"{kind}_inserted"] + dead[f"{kind}_updated"] == entities.get(kind, 0), kind
    assert stored_rows(db_url) == expected
    assert _deleted_keys(db_url, done.run_id or 0) == gone  # made whole by the next run
    assert_consistent(db_url)


# -- the consistency check itself ----------------------------------------------------------------


def test_the_consistency_check_sees_each_half_of_a_delete(db_url: str) -> None:
    """Each part of a deletion, missing alone, is reported; a whole one is not."""
    catalog = FakeCatalog.generate(seed=5, model_sets=2, comp_tasks=6)
    with fake_console(catalog) as server:
        sync(db_url, server)
        doomed = catalog.keys("compression_task")[0]
        alive = catalog.keys("compression_task")[1]
        catalog.remove("compression_task", doomed)
        run_id = sync(db_url, server).run_id
    assert_consistent(db_url)
    t, h = compression_tasks, SPECS["compression_task"].history
    now = datetime.now(UTC)
    # (what is broken, words of the problem it must produce)
    cases: dict[str, tuple[Any, str]] = {
        "its delete change gone": (
            changes.delete().where(changes.c.entity_id == doomed, changes.c.operation == "delete"),
            f"compression_task {doomed}: deleted_at without its delete change",
        ),
        "its history version reopened": (
            update(h).where(h.c.task_id == doomed).values(valid_to=None, valid_to_run_id=None),
            f"compression_task {doomed}: deleted_at without its closed history version",
        ),
        "its mark cleared": (
            update(t).where(t.c.task_id == doomed).values(deleted_at=None, deleted_run_id=None),
            f"compression_task {doomed}: delete change of run {run_id} without a deletion",
        ),
        "its run cleared": (
            update(t).where(t.c.task_id == doomed).values(deleted_run_id=None),
            f"compression_task {doomed}: deleted_at and deleted_run_id disagree",
        ),
        "a delete change for a live one": (
            changes.insert().values(run_id=run_id, changed_at=now, kind="compression_task",
                                    entity_id=alive, operation="delete"),
            f"compression_task {alive}: delete change of run {run_id} without a deletion",
        ),
    }
    engine = db.create_engine_for(db_url)
    try:
        for broken, (statement, problem) in cases.items():
            with engine.connect() as conn:
                assert connection_problems(conn) == []
                conn.execute(statement)
                problems = connection_problems(conn)
                conn.rollback()
            assert problem in problems, (broken, problems)
    finally:
        engine.dispose()


# -- kills by API call number -------------------------------------------------------------------


class Killer:
    """Counts the API calls of the current run and SIGKILLs the process at call number ``at``."""

    def __init__(self, server: FakeServer) -> None:
        self.lock = threading.Lock()
        self.pid: int | None = None
        self.at: int | None = None
        self.count = 0
        self._record = server.record
        server.record = self.record  # type: ignore[method-assign]

    def arm(self, pid: int | None, at: int | None) -> None:
        with self.lock:
            self.pid, self.at, self.count = pid, at, 0

    def record(self, call: CallRecord) -> None:
        self._record(call)
        with self.lock:
            self.count += 1
            if self.pid is not None and self.count == self.at:
                os.kill(self.pid, signal.SIGKILL)
                self.pid = None


@pytest.mark.slow
def test_sigkill_at_api_calls_across_the_walk_in_a_row(db_url: str) -> None:
    """Kills amid the walk's concurrent requests (not at a phase boundary), several runs in a
    row: each next run repairs the one before, and the last leaves the catalog's state."""
    rng = random.Random(4242)
    catalog = FakeCatalog.generate(seed=11, model_sets=4, comp_tasks=16, eval_exports=2)
    with fake_console(catalog) as server:
        killer = Killer(server)
        assert sync(db_url, server).status == "success"
        total = killer.count
        argv = sync_argv(db_url, server, "--batch-size", "2", "--commit-interval", "0",
                         "--allow-mass-delete")
        dead_runs: list[int] = []
        # Call 1 is the preflight, before the run row exists; the rest spread over the walk
        # (within its first 90%: the mutations can make a later walk a little shorter).
        for at in (1, *(int(total * share) for share in (0.2, 0.4, 0.6, 0.75, 0.9))):
            runs_before = len(run_statuses(db_url))
            _mutate_a_little(catalog, rng)
            killer.arm(None, None)
            proc = popen_cli(argv)
            killer.arm(proc.pid, at)
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == -signal.SIGKILL, (at, proc.returncode, err)
            assert_consistent(db_url)
            statuses = run_statuses(db_url)
            assert "running" not in [s for _, s in statuses[:-1]], statuses
            if at == 1:
                assert len(statuses) == runs_before  # died before writing its row
            elif len(statuses) > runs_before:
                assert statuses[-1][1] == "running"
                dead_runs.append(statuses[-1][0])
            # else: the walk starts while the run is opened, and this kill came before its row
        assert len(dead_runs) >= 2, dead_runs  # most kills land amid the run's walk
        done = run_cli(sync_argv(db_url, server, "--allow-mass-delete"))
        assert done.returncode == 0, done.stderr
    statuses = dict(run_statuses(db_url))
    assert {statuses[r] for r in dead_runs} == {"aborted"}
    assert list(statuses.values())[-1] == "success"
    assert stored_rows(db_url) == tracked_only(expected_rows(catalog))
    assert_consistent(db_url)


def _mutate_a_little(catalog: FakeCatalog, rng: random.Random) -> None:
    for kind in ("model_version", "compression_task", "model_set", "model_export"):
        keys = catalog.keys(kind)
        for key in rng.sample(keys, min(len(keys), 2)):
            catalog.change(kind, key, rng)
    catalog.add("compression_task", rng)
    catalog.add("model_version", rng)
    tasks = catalog.keys("compression_task")
    if len(tasks) > 12:
        catalog.remove("compression_task", rng.choice(tasks))


def test_runs_says_which_running_runs_lost_their_process(db_url: str) -> None:
    """A killed run reads `running` until its account's next sync marks it aborted; `runs`
    tells it from a live one by its account's lock (looked at, never taken), on stderr so
    that csv and json stay as they are."""
    from click.testing import CliRunner

    from catalog import locks
    from catalog.cli import cli

    with fake_console() as server:
        assert sync(db_url, server).status == "success"
    engine = db.create_engine_for(db_url)
    with engine.begin() as conn:  # run 1 as a SIGKILL leaves it; account b's run likewise
        conn.execute(update(sync_runs).values(status="running", finished_at=None))
        conn.execute(sync_runs.insert().values(
            account="b", started_at=datetime.now(UTC), status="running", scope={}))
        b_run = conn.execute(
            select(sync_runs.c.run_id).where(sync_runs.c.account == "b")).scalar_one()

    def notes() -> list[str]:
        result = CliRunner().invoke(cli, ["--database-url", db_url, "runs", "--format", "csv"],
                                    env={"CATALOG_CONFIG": None})
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith("run_id,")
        return [line for line in result.stderr.splitlines() if line.startswith("note: ")]

    both = notes()
    assert len(both) == 2 and "run 1 of account 'default' is marked running" in both[0]
    assert f"run {b_run} of account 'b'" in both[1] and "next sync marks it aborted" in both[1]
    with engine.connect() as holder, locks.writer_lock(holder, 0, "default"):
        assert notes() == both[1:]  # a sync of default holds its lock: that one is live
        with engine.connect() as conn:
            assert locks.lock_held(conn, "default") is True
            assert locks.lock_held(conn, "b") is False
    assert notes() == both  # looking took nothing: still free, still reported
    engine.dispose()


def test_a_killed_runs_changes_are_reported_with_the_run_after_it(db_url: str) -> None:
    """``report_latest_changes`` shows a killed run's committed changes once, beside the changes
    of the account's next run: the next run marks it ``aborted`` and does not record them again,
    so a report of the latest run alone never showed them."""
    from catalog import queries, runs

    catalog = _catalog()
    rng = random.Random(7)

    def latest() -> dict[int, list[tuple[str, str, str]]]:
        engine = db.create_engine_for(db_url)
        try:
            with engine.connect() as conn:
                columns, rows = queries.report(conn, "latest_changes")
                out: dict[int, list[tuple[str, str, str]]] = {}
                for row in rows:
                    r = dict(zip(columns, row, strict=True))
                    out.setdefault(r["run_id"], []).append(
                        (r["run_status"], r["entity_id"], r["operation"])
                    )
                return out
        finally:
            engine.dispose()

    def of_run(run_id: int) -> list[tuple[str, str]]:
        return sorted((r["entity_id"], r["operation"]) for r in table_rows(db_url, changes)
                      if r["run_id"] == run_id)

    with fake_console(catalog) as server:
        first = sync(db_url, server)
        for kind in ("model_set", "compression_task"):  # sets: in the first batch committed
            for key in catalog.keys(kind)[:50]:
                catalog.change(kind, key, rng)
        argv = sync_argv(db_url, server, *SETTINGS["small"])
        killed = run_cli(argv, env=kill_env("batch_committed"))
        assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr)
        dead_id = run_statuses(db_url)[-1][0]
        dead = of_run(dead_id)
        assert dead  # a committed batch's changes
        assert set(latest()) == {first.run_id}  # the dead run still reads running
        engine = db.create_engine_for(db_url)
        with engine.begin() as conn:
            assert runs.repair_aborted(conn) == 1  # what the next sync does first
        engine.dispose()
        shown = latest()
        assert set(shown) == {dead_id}  # while the next run runs
        assert sorted((e, o) for _, e, o in shown[dead_id]) == dead
        assert {s for s, _, _ in shown[dead_id]} == {"aborted"}
        catalog.change("compression_task", catalog.keys("compression_task")[-1], rng)
        after = sync(db_url, server)
        shown = latest()
        assert set(shown) == {dead_id, after.run_id}
        assert sorted((e, o) for _, e, o in shown[dead_id]) == dead
        assert sorted((e, o) for _, e, o in shown[after.run_id]) == of_run(after.run_id)
        assert of_run(after.run_id)  # the killed run's rest and the last change
        assert sync(db_url, server).status == "success"  # nothing changed since
    assert latest() == {}  # the killed run was reported once
