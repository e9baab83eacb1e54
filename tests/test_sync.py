"""The full walk against the fake console, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select

from catalog import db
from catalog.fake.catalog import FakeCatalog
from catalog.fake.server import FakeServer
from catalog.kinds import KINDS, eval_tasks
from catalog.schema import SPECS, changes, sync_runs
from catalog.sync import Interrupted, run_sync
from catalog.walk import Walker
from catalog.writer import CommitPacer
from tests.helpers import (
    create_schema,
    expected_rows,
    fake_console,
    options,
    stored_rows,
    sync,
    tracked_only,
)


def _count(db_url: str, table: object) -> int:
    engine = db.create_engine_for(db_url)
    with engine.connect() as conn:
        n = int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]
    engine.dispose()
    return n


def test_full_walk_stores_every_entity_with_its_fields(db_url: str) -> None:
    """Every kind, the opt-in one too, its V2 export tasks tracked beside the V1 exports."""
    catalog = FakeCatalog.generate(seed=3, model_sets=6, comp_tasks=40, eval_exports=3)
    tasks = catalog.keys("eval_result_export_task")
    refs = [*(str(k) for k in catalog.keys("eval_result_export")), *tasks]
    with fake_console(catalog) as server:
        summary = sync(db_url, server, kinds=KINDS, eval_export_ids=refs)
    assert summary.status == "success"
    expected = tracked_only(expected_rows(catalog, export_tasks=tasks))
    stored = stored_rows(db_url)
    for kind in SPECS:
        assert stored[kind] == expected[kind], kind
        assert summary.counts[f"{kind}_seen"] == len(expected[kind])
        assert summary.counts[f"{kind}_inserted"] == len(expected[kind])
    # every kind is represented, so the comparison above is not vacuous
    assert all(len(expected[kind]) > 0 for kind in SPECS)


def test_second_sync_without_change_writes_nothing(db_url: str) -> None:
    catalog = FakeCatalog.generate(seed=4, model_sets=4, comp_tasks=20)
    with fake_console(catalog) as server:
        sync(db_url, server)
        before = {spec.history.name: _count(db_url, spec.history) for spec in SPECS.values()}
        before_changes = _count(db_url, changes)
        again = sync(db_url, server)
    assert again.status == "success"
    for kind in SPECS:
        assert again.counts[f"{kind}_inserted"] == 0
        assert again.counts[f"{kind}_updated"] == 0
        assert again.counts[f"{kind}_deleted"] == 0
    assert {spec.history.name: _count(db_url, spec.history) for spec in SPECS.values()} == before
    assert _count(db_url, changes) == before_changes
    assert _count(db_url, sync_runs) == 2


def test_a_change_in_the_catalog_shows_up_as_an_update(db_url: str) -> None:
    catalog = FakeCatalog.generate(seed=5, model_sets=4, comp_tasks=20)
    rng = random.Random(9)
    with fake_console(catalog) as server:
        sync(db_url, server)
        version = catalog.keys("model_version")[0]
        task = catalog.keys("compression_task")[0]
        catalog.change("model_version", version, rng)
        catalog.change("compression_task", task, rng)
        summary = sync(db_url, server)
    assert summary.counts["model_version_updated"] == 1
    assert summary.counts["compression_task_updated"] == 1
    assert summary.counts["model_set_updated"] == 0
    assert stored_rows(db_url) == tracked_only(expected_rows(catalog))


def test_many_pages_of_compression_tasks(db_url: str) -> None:
    catalog = FakeCatalog.generate(seed=6, model_sets=2, comp_tasks=260, eval_exports=0)
    with fake_console(catalog) as server:
        summary = sync(db_url, server)
        pages = server.call_count("DescribeModelCompTasks")
    assert summary.counts["compression_task_seen"] == 260
    assert pages == 3  # 100 + 100 + 60
    assert len(stored_rows(db_url)["compression_task"]) == 260


def _pages(n: int) -> int:
    return max(1, -(-n // 100))


def minimum_calls(
    catalog: FakeCatalog,
    *,
    include_system: bool,
    evals: int,
    described_failed: int,
    described_presets: int = 0,
    export_tasks: int = 0,
) -> int:
    """README's formula for a full sync: pages of custom sets + 2 x custom versions + pages of
    compression tasks + failed tasks new or changed + tracked eval exports (``evals`` through
    the V1 route, ``export_tasks``: the amemt- ones through DescribeEvalResultExportTask when
    its kind is on), and with --include-system pages of preset sets + preset sets new, changed
    or without a creation time (``described_presets``) + preset versions."""
    sets = [catalog.get("model_set", k) for k in catalog.keys("model_set")]
    custom = [s for s in sets if s["source"] != "System"]
    system = [s for s in sets if s["source"] == "System"]
    calls = _pages(len(custom)) + 2 * sum(len(s["modelIds"]) for s in custom)
    calls += _pages(len(catalog.keys("compression_task"))) + described_failed + evals
    calls += export_tasks
    if include_system:
        calls += _pages(len(system)) + described_presets
        calls += sum(len(s["modelIds"]) for s in system)
    return calls + lifecycle_calls(catalog, first_run=described_failed > 0)


def lifecycle_calls(catalog: FakeCatalog, *, first_run: bool) -> int:
    """README's formula for fine-tuning, evaluation and services: pages of jobs + per job pages
    of its tasks + tasks new, changed or running (DescribeFineTuningTask) + pages per evalType
    + eval tasks new or changed (DescribeEvalTask) + those ended (DescribeEvalTaskReport) +
    pages of custom services + one DescribeService each + one DescribePresetServices."""
    def get(kind: str) -> list[dict[str, Any]]:
        return [catalog.get(kind, k) for k in catalog.keys(kind)]

    jobs, tasks, evals = get("fine_tuning_job"), get("fine_tuning_task"), get("eval_task")
    custom = get("service")
    calls = _pages(len(jobs)) + sum(
        _pages(sum(1 for t in tasks if t["jobId"] == j["jobId"])) for j in jobs
    )
    calls += len(tasks) if first_run else sum(1 for t in tasks if t["runStatus"] == "Running")
    calls += sum(_pages(sum(1 for e in evals if e["evalType"] == t)) for t in ("manual", "auto"))
    if first_run:
        calls += len(evals) + sum(1 for e in evals if e["state"] in eval_tasks.FINAL)
    return calls + _pages(len(custom)) + len(custom) + 1


def _failed_tasks(catalog: FakeCatalog) -> int:
    return sum(
        1
        for k in catalog.keys("compression_task")
        if catalog.get("compression_task", k)["status"] == "failed"
    )


@pytest.mark.parametrize("include_system", [True, False])
def test_call_count_is_the_documented_minimum(db_url: str, include_system: bool) -> None:
    catalog = FakeCatalog.generate(
        seed=8, model_sets=5, system_sets=2, comp_tasks=30, eval_exports=2
    )
    failed = _failed_tasks(catalog)
    assert failed > 0  # the formula's detail term is exercised
    presets = [k for k in catalog.keys("model_set") if catalog.is_preset_set(k)]
    assert presets
    with fake_console(catalog) as server:
        summary = sync(db_url, server, include_system=include_system)
        first = len(server.calls)
        described = server.call_count("DescribeSystemModelSet")
        again = sync(db_url, server, include_system=include_system)
        second = len(server.calls) - first
        actions = {c.action for c in server.calls}
    expected = minimum_calls(
        catalog, include_system=include_system, evals=2, described_failed=failed,
        described_presets=len(presets) if include_system else 0,
    )
    assert first == summary.api_calls == expected
    # a failed task is described once, not every run (nor an unchanged eval task, nor a
    # preset set whose creation time is stored)
    assert second == again.api_calls == minimum_calls(
        catalog, include_system=include_system, evals=2, described_failed=0
    )
    assert lifecycle_calls(catalog, first_run=True) > lifecycle_calls(catalog, first_run=False)
    # custom sets come from their listing alone; presets only through the preset calls, each
    # preset set described once, on the first run
    assert "DescribeModelSet" not in actions
    assert ("DescribeSystemModel" in actions) == include_system
    assert described == (len(presets) if include_system else 0)
    assert server.call_count("DescribeSystemModelSet") == described


def test_call_count_with_the_v2_export_tasks_on(db_url: str) -> None:
    """With eval_result_export_task in --kinds, one DescribeEvalResultExportTask per tracked
    amemt- ref, in place of the V1 route's call; numeric refs stay on the V1 route."""
    catalog = FakeCatalog.generate(
        seed=8, model_sets=5, system_sets=2, comp_tasks=30, eval_exports=2, eval_export_tasks=3
    )
    ints = [str(k) for k in catalog.keys("eval_result_export")]
    tasks = catalog.keys("eval_result_export_task")
    with fake_console(catalog) as server:
        summary = sync(db_url, server, include_system=False, kinds=KINDS,
                       eval_export_ids=[*ints, *tasks])
        first = len(server.calls)
        v2 = server.call_count("DescribeEvalResultExportTask")
        again = sync(db_url, server, include_system=False, kinds=KINDS)
    assert summary.status == again.status == "success"
    assert v2 == len(tasks) == 3
    assert first == summary.api_calls == minimum_calls(
        catalog, include_system=False, evals=len(ints), described_failed=_failed_tasks(catalog),
        export_tasks=len(tasks))
    assert again.api_calls == minimum_calls(
        catalog, include_system=False, evals=len(ints), described_failed=0,
        export_tasks=len(tasks))


def test_scoped_call_count(db_url: str) -> None:
    """Scoped: one DescribeModelSet to resolve the name, then per version DescribeModel, its
    export state and one page of its compression tasks, plus failed tasks' details."""
    catalog = FakeCatalog.generate(
        seed=8, model_sets=5, system_sets=2, comp_tasks=30, eval_exports=0
    )
    target = catalog.keys("model_set")[-1]
    item = catalog.get("model_set", target)
    assert item["source"] != "System"
    versions = set(item["modelIds"])
    failed = sum(
        1
        for k in catalog.keys("compression_task")
        if catalog.get("compression_task", k)["status"] == "failed"
        and catalog.get("compression_task", k).get("sourceModelId") in versions
    )
    with fake_console(catalog) as server:
        summary = sync(db_url, server, model_sets=[item["modelSetName"]], eval_export_ids=[])
    # what hangs off the sets, and the account-wide lifecycle listings as a full run reads them
    assert summary.api_calls == 1 + 3 * len(versions) + failed + lifecycle_calls(
        catalog, first_run=True)


def test_a_scoped_run_reads_the_lifecycle_kinds_and_deletes_only_in_scope(db_url: str) -> None:
    """The lifecycle listings are the account's, complete whatever set is scoped: a scoped run
    picks up a new fine-tuning job and deletes a removed service, and still no set (nor its
    versions) outside its scope."""
    catalog = FakeCatalog.generate(
        seed=12, model_sets=3, system_sets=0, comp_tasks=10, eval_exports=0,
        fine_tuning_jobs=2, tasks_per_job=1, eval_tasks=3, services=3, preset_services=1,
    )
    target, other = catalog.keys("model_set")[:2]
    name = catalog.get("model_set", target)["modelSetName"]
    outside = set(catalog.get("model_set", other)["modelIds"])
    with fake_console(catalog) as server:
        assert sync(db_url, server, include_system=False).status == "success"
        job = catalog.add("fine_tuning_job", random.Random(12))
        service = catalog.keys("service")[0]
        catalog.remove("service", service)
        catalog.remove("model_set", other)
        scoped = sync(db_url, server, model_sets=[name], include_system=False)
    assert scoped.status == "success"
    stored = stored_rows(db_url)
    assert job in stored["fine_tuning_job"] and scoped.counts["fine_tuning_job_inserted"] == 1
    assert len([t for t in stored["fine_tuning_task"].values() if t["job_id"] == job]) == 1
    assert service not in stored["service"] and scoped.counts["service_deleted"] == 1
    assert other in stored["model_set"] and outside <= set(stored["model_version"])
    assert scoped.counts["model_set_deleted"] == scoped.counts["model_version_deleted"] == 0
    # every lifecycle kind as the fake serves it now
    want = tracked_only(expected_rows(catalog))
    for kind in ("fine_tuning_job", "fine_tuning_task", "eval_task", "eval_task_report",
                 "service"):
        assert stored[kind] == want[kind], kind


def test_scoped_sync_walks_only_that_model_set(db_url: str) -> None:
    catalog = FakeCatalog.generate(
        seed=10, model_sets=4, system_sets=0, comp_tasks=30, eval_exports=0
    )
    target = catalog.keys("model_set")[0]
    name = catalog.get("model_set", target)["modelSetName"]
    with fake_console(catalog) as server:
        summary = sync(db_url, server, model_sets=[name], include_system=False)
    stored = stored_rows(db_url)
    assert set(stored["model_set"]) == {target}
    versions = set(catalog.get("model_set", target)["modelIds"])
    assert set(stored["model_version"]) == versions
    assert {r["source_model_id"] for r in stored["compression_task"].values()} <= versions
    assert summary.status == "success"


def test_a_value_too_long_for_its_column_fails_that_entity_only(db_url: str) -> None:
    catalog = FakeCatalog.generate(seed=11, model_sets=2, comp_tasks=12, eval_exports=0)
    bad = catalog.keys("compression_task")[3]
    with catalog.lock:
        catalog._items["compression_task"][bad]["status"] = "s" * 200
    with fake_console(catalog) as server:
        summary = sync(db_url, server)
    assert summary.status == "partial"
    assert summary.errors == 1
    stored = stored_rows(db_url)["compression_task"]
    assert bad not in stored and len(stored) == 11


@contextmanager
def _counting_commits() -> Iterator[list[int]]:
    count = [0]

    def on_commit(_conn: object) -> None:
        count[0] += 1

    event.listen(Engine, "commit", on_commit)
    try:
        yield count
    finally:
        event.remove(Engine, "commit", on_commit)


def test_commits_are_paced_not_one_per_batch(sqlite_url: str) -> None:
    catalog = FakeCatalog.generate(seed=21, model_sets=3, comp_tasks=30)
    with fake_console(catalog) as server:
        with _counting_commits() as every_batch:
            assert sync(sqlite_url, server, batch_size=1, commit_interval=0).status == "success"
        with _counting_commits() as paced:
            assert sync(sqlite_url, server, batch_size=1, commit_interval=3600).status == "success"
    records = sum(len(rows) for rows in expected_rows(catalog).values())
    assert every_batch[0] > records  # one commit per one-row batch, and the run's own
    assert paced[0] < 10  # the run's own commits, and the last batches in one


def _timed_writes(
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[list[tuple[float, str, int]], list[float]]:
    """(when each batch was written, its kind, its rows) and when each API answer came."""
    from catalog.api.client import ConsoleClient
    from catalog.store import Store

    writes: list[tuple[float, str, int]] = []
    answered: list[float] = []
    real_write, real_send = Store.write_batch, ConsoleClient._send

    def write_batch(self: Store, kind: str, rows: Any) -> Any:
        writes.append((time.monotonic(), kind, len(rows)))
        return real_write(self, kind, rows)

    def send(self: ConsoleClient, *args: Any) -> Any:
        try:
            return real_send(self, *args)
        finally:
            answered.append(time.monotonic())

    monkeypatch.setattr(Store, "write_batch", write_batch)
    monkeypatch.setattr(ConsoleClient, "_send", send)
    return writes, answered


def test_a_batch_that_does_not_fill_is_written_once_commit_interval_old(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A paced sync writes as it goes: a kind's batch that has not filled is written once it is
    --commit-interval old, not held for the end of the walk. (With several accounts ending
    together on one database, the last partial batches of every kind, written after the last
    answer, took seconds.)"""
    writes, answered = _timed_writes(monkeypatch)
    create_schema(sqlite_url)  # the writer runs from the first answer, not after a migration
    catalog = FakeCatalog.generate(seed=23, model_sets=4, versions_per_set=3, comp_tasks=5)
    with fake_console(catalog, latency=0.03) as server:
        summary = sync(sqlite_url, server, workers=1, batch_size=1000, commit_interval=0.1)
    assert summary.status == "success"
    last_answer = max(answered)
    first_set = min(t for t, kind, _ in writes if kind == "model_set")
    assert first_set < last_answer  # written during the walk, not after it
    versions = [n for _, kind, n in writes if kind == "model_version"]
    assert len(versions) > 1 and sum(versions) == summary.kinds["model_version"].inserted


def test_commit_interval_zero_still_fills_batches(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--commit-interval 0 commits every batch; it does not make every record a batch of its
    own: an unfilled batch then waits a second, not nothing."""
    writes, _answered = _timed_writes(monkeypatch)
    catalog = FakeCatalog.generate(seed=24, model_sets=4, versions_per_set=3, comp_tasks=5)
    with fake_console(catalog) as server:
        summary = sync(sqlite_url, server, workers=1, batch_size=1000, commit_interval=0)
    assert summary.status == "success"
    versions = [n for _, kind, n in writes if kind == "model_version"]
    assert sum(versions) == summary.kinds["model_version"].inserted > 2
    assert len(versions) <= sum(versions) // 4  # a few batches, not one per record


def test_the_command_line_exits_without_running_the_cycle_collector() -> None:
    """Once the command is done, the interpreter's teardown does not walk what the sync left
    (``end_of_process``); ``atexit`` handlers still run, and the exit code is the command's."""
    import subprocess
    import sys

    code = (
        "import atexit, gc, sys\n"
        "from catalog.cli import main\n"
        "atexit.register(lambda: print('collector', gc.isenabled(), gc.get_freeze_count() > 0))\n"
        "sys.argv = ['qianfan-catalog', '--version']\n"
        "main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "collector False True"


def test_commit_pacer_commits_pending_work_once_the_interval_passed() -> None:
    commits: list[float] = []
    pacer = CommitPacer(lambda: commits.append(time.monotonic()), interval=0.05)
    pacer.idle()
    assert commits == []  # nothing written, nothing to commit
    pacer.wrote()
    assert commits == [] and pacer.pending  # within the interval: held
    time.sleep(0.06)
    pacer.idle()
    assert len(commits) == 1 and not pacer.pending
    pacer.wrote()
    pacer.now()
    assert len(commits) == 2 and not pacer.pending


def test_commit_interval_zero_commits_every_batch() -> None:
    commits: list[int] = []
    pacer = CommitPacer(lambda: commits.append(1), interval=0.0)
    for _ in range(3):
        pacer.wrote()
    assert len(commits) == 3


def test_a_run_quiets_the_cycle_collector_and_restores_it(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """During a run the collector neither runs every 700 allocations nor walks what existed
    before the run. The settings are the process's, so the run puts them back, even on an
    error."""
    import gc

    from catalog import sync as sync_module
    from catalog.collector import YOUNG_COLLECTION

    during: list[tuple[int, int]] = []
    real_drive = sync_module._Run.drive

    def drive(self: Any, *args: Any, **kw: Any) -> Any:
        during.append((gc.get_threshold()[0], gc.get_freeze_count()))
        return real_drive(self, *args, **kw)

    monkeypatch.setattr(sync_module._Run, "drive", drive)
    before = (gc.get_threshold(), gc.get_freeze_count())
    assert before[0][0] < YOUNG_COLLECTION and before[1] == 0
    catalog = FakeCatalog.generate(seed=61, model_sets=2, comp_tasks=5, eval_exports=0)
    with fake_console(catalog) as server:
        assert sync(sqlite_url, server).status == "success"
        (young, frozen), = during
        assert young == YOUNG_COLLECTION
        assert frozen > 1000  # the modules, SQLAlchemy's tables and the like
        assert (gc.get_threshold(), gc.get_freeze_count()) == before

        def failing(self: Any, *args: Any, **kw: Any) -> Any:
            raise RuntimeError("the writer failed")

        monkeypatch.setattr(sync_module._Run, "drive", failing)
        with pytest.raises(RuntimeError, match="the writer failed"):
            sync(sqlite_url, server)
    assert (gc.get_threshold(), gc.get_freeze_count()) == before


def _wait_for(server: FakeServer, action: str, timeout: float) -> bool:
    """Whether the fake gets a call of ``action`` within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(c.action == action for c in list(server.calls)):
            return True
        time.sleep(0.01)
    return False


@pytest.mark.empty_database
def test_a_new_database_is_walked_while_its_schema_is_created(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Creating the schema takes as long as dozens of paced calls; on an empty database (nothing
    tracked, bound or to repair) the walk goes on meanwhile. A version is described only once
    the set listing's pages are walked, so seeing one during the migration says the walk runs."""
    catalog = FakeCatalog.generate(seed=5, model_sets=4, comp_tasks=20)
    real_upgrade = db.upgrade
    walked: list[bool] = []

    def upgrade(connection: Any, revision: str = "head") -> None:
        walked.append(_wait_for(server, "DescribeModel", timeout=3.0))
        real_upgrade(connection, revision)

    monkeypatch.setattr(db, "upgrade", upgrade)
    with fake_console(catalog) as server:
        summary = sync(db_url, server)
        assert walked == [True]
        assert summary.status == "success"
        assert stored_rows(db_url) == tracked_only(expected_rows(catalog))
        again = sync(db_url, server)  # a database at the head: no migration, nothing early
    assert walked == [True]
    assert again.status == "success" and again.counts["model_version_inserted"] == 0


@pytest.mark.empty_database
def test_a_failed_migration_stops_the_walk_it_started(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing is written and no call is made once the sync has returned with the error."""
    catalog = FakeCatalog.generate(seed=6, model_sets=30, comp_tasks=400)

    def upgrade(connection: Any, revision: str = "head") -> None:
        assert _wait_for(server, "DescribeModel", timeout=3.0)
        raise db.DatabaseError("migration failed: disk full")

    monkeypatch.setattr(db, "upgrade", upgrade)
    with fake_console(catalog, latency=0.01) as server:
        with pytest.raises(db.DatabaseError, match="disk full"):
            sync(db_url, server, workers=2)
        time.sleep(0.1)  # the calls in flight when it returned
        made = len(server.calls)
        time.sleep(0.5)  # at 10 ms a call, a walk still going would make dozens
        assert len(server.calls) == made
        assert made < 100  # the walk was cut short, not finished
    engine = db.create_engine_for(db_url)
    with engine.connect() as conn:
        assert db.current_revision(conn) is None
    engine.dispose()


def test_a_finished_listing_asks_its_details_while_the_walk_goes_on(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Failed compression tasks are submitted for their details once their listing has ended,
    while versions are still being described, not once the whole walk has run dry (which left
    the workers idle while the writer wrote its last batches: a fifth of a second in a paced
    run)."""
    catalog = FakeCatalog.generate(seed=8, model_sets=30, versions_per_set=3, comp_tasks=150)
    described_then: list[int] = []
    real_detail = Walker.detail

    def detail(self: Walker, record: Any) -> None:
        if record.kind == "compression_task":
            described_then.append(sum(c.action == "DescribeModel" for c in list(server.calls)))
        real_detail(self, record)

    monkeypatch.setattr(Walker, "detail", detail)
    create_schema(db_url)  # so that the walk does not run during the migration
    with fake_console(catalog, latency=0.005) as server:
        summary = sync(db_url, server)
    assert summary.status == "success"
    assert len(described_then) == _failed_tasks(catalog) > 0
    # Before every version was described (a walk run dry would have described them all). Not
    # "before half of them": on a loaded machine the listing's two pages may take that long.
    assert described_then[0] < len(catalog.keys("model_version")), described_then


@pytest.mark.empty_database
def test_a_signal_during_the_migration_still_writes_what_was_fetched(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a new database the walk runs ahead of the writer; a stop (SIGTERM) that comes before
    the writer starts still writes every answer fetched before it, then deletes nothing."""
    catalog = FakeCatalog.generate(seed=9, model_sets=20, versions_per_set=2, comp_tasks=50)
    stop = threading.Event()
    before: list[str] = []
    real_upgrade = db.upgrade

    def upgrade(connection: Any, revision: str = "head") -> None:
        assert _wait_for(server, "DescribeModel", timeout=3.0)
        before.extend(c.body["modelId"] for c in list(server.calls) if c.action == "DescribeModel")
        stop.set()
        time.sleep(0.3)  # the answers on their way arrive and wait in the inbox
        real_upgrade(connection, revision)

    monkeypatch.setattr(db, "upgrade", upgrade)
    with fake_console(catalog, latency=0.005) as server, pytest.raises(Interrupted):
        run_sync(options(db_url, server, workers=2), stop=stop)
    stored = stored_rows(db_url)["model_version"]
    assert before and set(before) <= set(stored)
    assert len(stored) < len(catalog.keys("model_version"))  # stopped, not finished
