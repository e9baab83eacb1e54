"""The guarantees of the old kinds, held by the new ones (fine-tuning jobs and tasks, evaluation
tasks and their report units, services), on SQLite and PostgreSQL: a run that finds nothing new
writes nothing; detail calls only where an answer needs one; deletes only from complete
listings; a refused policy warns once and deletes nothing; ``--kinds`` leaves kinds and their
calls out; the delete guard counts them.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from sqlalchemy import func, select

from catalog import db
from catalog.errors import MassDeleteRefused
from catalog.fake.catalog import FakeCatalog
from catalog.fake.faults import FaultPlan
from catalog.fake.server import FakeServer, V2Error
from catalog.kinds import KINDS
from catalog.schema import SPECS, changes, sync_runs
from catalog.sync import run_sync
from tests.helpers import (
    expected_rows,
    failing,
    fake_console,
    options,
    stored_rows,
    sync,
    tracked_only,
)

NEW = ("fine_tuning_job", "fine_tuning_task", "eval_task", "eval_task_report", "service")
OLD = ("model_set", "model_version", "compression_task", "model_export", "eval_result_export")
NEW_ROUTES = {"/v2/finetuning", "/v2/eval", "/v2/service"}
#: REFERENCE.md section 7: the states after which an evaluation task's report is final.
EVAL_ENDED = ("Successed", "Failed", "Stopped")


def _catalog(seed: int) -> FakeCatalog:
    return FakeCatalog.generate(seed=seed, model_sets=3, system_sets=1, comp_tasks=8,
                                eval_exports=0, fine_tuning_jobs=3, tasks_per_job=2,
                                eval_tasks=4, services=3, preset_services=2)


def _ensure(catalog: FakeCatalog, kind: str, key: str, status: str) -> None:
    field = {"fine_tuning_task": "runStatus", "eval_task": "state", "service": "runStatus"}[kind]
    if catalog.get(kind, key)[field] != status:
        catalog.change(kind, key, random.Random(key), status=status)


def _bodies(server: FakeServer, since: int, action: str, key: str) -> list[Any]:
    """The ``key`` of each ``action`` call made after the first ``since`` calls."""
    return [c.body[key] for c in server.calls[since:] if c.action == action]


def _counts(db_url: str) -> dict[str, int]:
    """Rows per history table of the new kinds, and their rows in ``changes``."""
    engine = db.create_engine_for(db_url)
    out = {}
    with engine.connect() as conn:
        for kind in NEW:
            history = SPECS[kind].history
            out[history.name] = conn.execute(
                select(func.count()).select_from(history)).scalar_one()
            out[f"changes of {kind}"] = conn.execute(
                select(func.count()).select_from(changes).where(changes.c.kind == kind)
            ).scalar_one()
    engine.dispose()
    return out


def _whole_rows(db_url: str) -> dict[str, list[dict[str, Any]]]:
    """Every column of every row of the new kinds' tables, bookkeeping and ``raw`` included."""
    engine = db.create_engine_for(db_url)
    with engine.connect() as conn:
        out = {kind: [dict(r) for r in conn.execute(
            select(SPECS[kind].table).order_by(SPECS[kind].key_column)).mappings()]
            for kind in NEW}
    engine.dispose()
    return out


def _last_run_status(db_url: str) -> str:
    engine = db.create_engine_for(db_url)
    with engine.connect() as conn:
        status = conn.execute(
            select(sync_runs.c.status).order_by(sync_runs.c.run_id.desc()).limit(1)).scalar_one()
    engine.dispose()
    return str(status)


def test_a_run_that_finds_nothing_new_writes_nothing_for_the_new_kinds(db_url: str) -> None:
    """Even where the run asks again: a Running task's detail, every service's detail."""
    catalog = _catalog(51)
    _ensure(catalog, "fine_tuning_task", catalog.keys("fine_tuning_task")[0], "Running")
    with fake_console(catalog) as server:
        sync(db_url, server)
        before, rows = _counts(db_url), _whole_rows(db_url)
        assert all(rows[kind] for kind in NEW)
        n = len(server.calls)
        again = sync(db_url, server)
        assert _bodies(server, n, "DescribeFineTuningTask", "taskId")
        assert len(_bodies(server, n, "DescribeService", "serviceId")) == 3
    assert again.status == "success"
    for kind in NEW:
        # A report is not asked again while its task does not change.
        seen = 0 if kind == "eval_task_report" else len(rows[kind])
        assert again.counts[f"{kind}_seen"] == seen, kind
        for what in ("inserted", "updated", "deleted"):
            assert again.counts[f"{kind}_{what}"] == 0, (kind, what)
    assert _counts(db_url) == before
    assert _whole_rows(db_url) == rows  # not even rewritten (last_seen_run_id, raw)


def test_a_running_fine_tuning_task_is_described_every_run_a_done_one_when_it_changes(
    db_url: str,
) -> None:
    catalog = _catalog(52)
    running, done, *_ = catalog.keys("fine_tuning_task")
    _ensure(catalog, "fine_tuning_task", running, "Running")
    _ensure(catalog, "fine_tuning_task", done, "Done")
    still = {k for k in catalog.keys("fine_tuning_task")
             if catalog.get("fine_tuning_task", k)["runStatus"] == "Running"}
    with fake_console(catalog) as server:
        sync(db_url, server)
        assert sorted(_bodies(server, 0, "DescribeFineTuningTask", "taskId")) == sorted(
            catalog.keys("fine_tuning_task"))  # first run: every task is new
        n = len(server.calls)
        sync(db_url, server)
        assert sorted(_bodies(server, n, "DescribeFineTuningTask", "taskId")) == sorted(still)
        # Progress is in the detail only: the listing item does not move, the row must.
        catalog.patch("fine_tuning_task", running, fields={"runProgress": "77%"},
                      actions=["DescribeFineTuningTask"])
        n = len(server.calls)
        progressed = sync(db_url, server)
        assert sorted(_bodies(server, n, "DescribeFineTuningTask", "taskId")) == sorted(still)
        catalog.change("fine_tuning_task", done, random.Random(1), status="Failed")
        n = len(server.calls)
        failed = sync(db_url, server)
        assert sorted(_bodies(server, n, "DescribeFineTuningTask", "taskId")) == sorted(
            still | {done})
    assert progressed.counts["fine_tuning_task_updated"] == 1
    assert failed.counts["fine_tuning_task_updated"] == 1
    stored = stored_rows(db_url)["fine_tuning_task"]
    assert stored[running]["run_progress"] == "77%"
    assert stored[done]["run_status"] == "Failed" and stored[done]["metrics"] is None


def test_an_eval_report_is_fetched_for_a_task_new_or_changed_that_ended(db_url: str) -> None:
    catalog = _catalog(53)
    rng = random.Random(53)
    ended, renamed_live, reaching = (catalog.add("eval_task", rng) for _ in range(3))
    _ensure(catalog, "eval_task", ended, "Successed")
    _ensure(catalog, "eval_task", renamed_live, "Running")
    _ensure(catalog, "eval_task", reaching, "Queued")
    states = {k: catalog.get("eval_task", k)["state"] for k in catalog.keys("eval_task")}
    with fake_console(catalog) as server:
        sync(db_url, server)
        assert sorted(_bodies(server, 0, "DescribeEvalTask", "taskId")) == sorted(states)
        assert sorted(_bodies(server, 0, "DescribeEvalTaskReport", "taskId")) == sorted(
            k for k, state in states.items() if state in EVAL_ENDED)
        n = len(server.calls)
        quiet = sync(db_url, server)
        assert _bodies(server, n, "DescribeEvalTask", "taskId") == []
        assert _bodies(server, n, "DescribeEvalTaskReport", "taskId") == []
        catalog.change("eval_task", reaching, rng, status="Successed")  # its report appears
        for key in (ended, renamed_live):  # a new name: the listing item changes, the state not
            catalog.patch("eval_task", key, fields={"taskName": f"{key}-renamed"})
        catalog.change("eval_task_report", ended, rng)  # re-scored
        n = len(server.calls)
        changed = sync(db_url, server)
        described = sorted(_bodies(server, n, "DescribeEvalTask", "taskId"))
        reported = sorted(_bodies(server, n, "DescribeEvalTaskReport", "taskId"))
    assert quiet.status == changed.status == "success"
    assert described == sorted((ended, renamed_live, reaching))
    assert reported == sorted((ended, reaching))
    units = stored_rows(db_url)["eval_task_report"]
    want = tracked_only(expected_rows(catalog))["eval_task_report"]
    for task in (ended, reaching):
        mine = {k: v for k, v in units.items() if v["task_id"] == task}
        assert mine and mine == {k: v for k, v in want.items() if v["task_id"] == task}, task
    assert changed.counts["eval_task_report_inserted"] == sum(
        1 for v in want.values() if v["task_id"] == reaching)


def test_removing_a_job_deletes_it_and_its_tasks(db_url: str) -> None:
    catalog = _catalog(54)
    job = catalog.keys("fine_tuning_job")[0]
    tasks = {k for k in catalog.keys("fine_tuning_task")
             if catalog.get("fine_tuning_task", k)["jobId"] == job}
    with fake_console(catalog) as server:
        sync(db_url, server)
        catalog.remove("fine_tuning_job", job)
        summary = sync(db_url, server)
    assert summary.status == "success"
    assert summary.counts["fine_tuning_job_deleted"] == 1
    assert summary.counts["fine_tuning_task_deleted"] == len(tasks) >= 1
    everything, alive = stored_rows(db_url, current_only=False), stored_rows(db_url)
    assert job in everything["fine_tuning_job"] and job not in alive["fine_tuning_job"]
    assert tasks <= set(everything["fine_tuning_task"])
    assert not tasks & set(alive["fine_tuning_task"])
    assert alive == tracked_only(expected_rows(catalog))


@pytest.mark.parametrize(
    ("failing", "kind"),
    [("DescribeServices", "service"), ("DescribeFineTuningJobs", "fine_tuning_job"),
     ("DescribeFineTuningTasks", "fine_tuning_task"), ("DescribeEvalTasks", "eval_task")],
)
def test_a_listing_that_fails_deletes_nothing_it_would_have_named(
    db_url: str, failing: str, kind: str
) -> None:
    catalog = _catalog(55)
    gone = catalog.keys(kind)[0]
    preset = catalog.keys("preset_service")[0]
    with fake_console(catalog) as server:
        sync(db_url, server)
        before = stored_rows(db_url)[kind]
        catalog.remove(kind, gone)
        catalog.remove("preset_service", preset)  # its own listing completes
        server.faults = FaultPlan().rate("5xx", 1.0, actions=[failing])
        broken = sync(db_url, server)
        server.faults = None
        after_broken = stored_rows(db_url)
        mended = sync(db_url, server)
    assert broken.status == "partial" and broken.errors >= 1
    assert broken.counts[f"{kind}_deleted"] == (1 if kind == "service" else 0)
    assert {k: after_broken[kind][k] for k in before if k != preset} == {
        k: v for k, v in before.items() if k != preset}
    assert preset not in after_broken["service"]  # the complete preset listing deletes
    assert mended.status == "success" and mended.counts[f"{kind}_deleted"] == 1
    assert gone not in stored_rows(db_url)[kind]


def test_a_job_listing_that_fails_past_its_first_page_deletes_no_job(db_url: str) -> None:
    """Jobs are deleted only by a listing read to its last page. One whose later page failed
    named only the first page's jobs: read as complete, it would delete the others (and their
    tasks), here no more than the delete guard lets through, so nothing else stops it."""
    catalog = FakeCatalog.generate(seed=60, model_sets=1, system_sets=0, comp_tasks=1,
                                   eval_exports=0, fine_tuning_jobs=6, tasks_per_job=2,
                                   eval_tasks=0, services=0, preset_services=0)
    jobs = catalog.keys("fine_tuning_job")  # listed in this order, 3 a page below
    gone = jobs[-1]
    with fake_console(catalog) as server:
        assert sync(db_url, server, page_size=3).status == "success"
        before = stored_rows(db_url)
        assert set(before["fine_tuning_job"]) == set(jobs)
        catalog.remove("fine_tuning_job", gone)
        answer = failing(
            server,
            lambda route, action, body: action == "DescribeFineTuningJobs"
            and bool(body.get("marker")),
            V2Error(503, "ServiceUnavailable", "a later page failed"),
        )
        n = len(server.calls)
        broken = sync(db_url, server, page_size=3)
        first_pages = [c.body for c in server.calls[n:]
                       if c.action == "DescribeFineTuningJobs" and not c.body.get("marker")]
        server.answer = answer
        after_broken = stored_rows(db_url)
        mended = sync(db_url, server, page_size=3)
    assert len(first_pages) == 1  # the first page answered: its jobs were seen
    assert broken.status == "partial" and broken.errors >= 1
    assert broken.counts["fine_tuning_job_deleted"] == 0
    assert broken.counts["fine_tuning_task_deleted"] == 0
    for kind in ("fine_tuning_job", "fine_tuning_task"):
        assert after_broken[kind] == before[kind], kind
    assert mended.status == "success"
    assert mended.counts["fine_tuning_job_deleted"] == 1
    assert mended.counts["fine_tuning_task_deleted"] == 2
    assert stored_rows(db_url) == tracked_only(expected_rows(catalog))


def test_a_key_denied_describe_services_warns_once_and_keeps_services(db_url: str) -> None:
    catalog = _catalog(56)
    with fake_console(catalog) as server:
        sync(db_url, server)
    services = stored_rows(db_url)["service"]
    catalog.remove("service", catalog.keys("service")[0])
    catalog.remove("preset_service", catalog.keys("preset_service")[0])
    catalog.change("fine_tuning_job", catalog.keys("fine_tuning_job")[0], random.Random(4))
    with fake_console(catalog, denied_actions=["DescribeServices"]) as server:
        seen: list[tuple[str, dict[str, Any]]] = []
        summary = run_sync(options(db_url, server), observer=lambda n, d: seen.append((n, d)))
        detail_calls = server.call_count("DescribeService")
    assert summary.status == "partial" and summary.denied == ("service",)
    warnings = [d for n, d in seen if n == "error"]
    assert len(warnings) == 1, warnings
    assert "DescribeServices" in str(warnings[0]["message"])
    assert "QianfanDataFullControlAccessPolicy" in str(warnings[0]["message"])
    assert detail_calls == 0
    assert summary.counts["service_deleted"] == 0
    assert stored_rows(db_url)["service"] == services
    assert summary.counts["fine_tuning_job_updated"] == 1  # the other kinds went on
    assert "not allowed" in summary.line()


def test_kinds_without_the_new_ones_make_none_of_their_calls(db_url: str) -> None:
    catalog = _catalog(57)
    rng = random.Random(57)
    with fake_console(catalog) as server:
        sync(db_url, server)
        kept = stored_rows(db_url)
        for kind in ("fine_tuning_job", "eval_task", "service"):
            catalog.remove(kind, catalog.keys(kind)[0])
        catalog.change("fine_tuning_task", catalog.keys("fine_tuning_task")[-1], rng)
        n = len(server.calls)
        old_only = sync(db_url, server, kinds=OLD)
        old_routes = {c.route for c in server.calls[n:]}
        n = len(server.calls)
        ft_only = sync(db_url, server, kinds=("fine_tuning_job", "fine_tuning_task"))
        ft_routes = {c.route for c in server.calls[n:]}
    # and the opt-in kind, not named either
    assert old_only.status == "success" and set(old_only.skipped) == set(KINDS) - set(OLD)
    assert old_routes and not old_routes & NEW_ROUTES
    for kind in NEW:
        assert f"{kind} skipped" in old_only.line()
    assert ft_only.status == "success"
    assert ft_routes == {"/v2/finetuning"}
    assert ft_only.counts["fine_tuning_job_deleted"] == 1
    stored = stored_rows(db_url)
    for kind in ("eval_task", "eval_task_report", "service"):
        assert stored[kind] == kept[kind], kind


@pytest.mark.parametrize(
    ("kind", "removed"), [("fine_tuning_job", 2), ("eval_task", 3), ("service", 3)]
)
def test_the_delete_guard_counts_the_new_kinds(db_url: str, kind: str, removed: int) -> None:
    catalog = _catalog(58)
    with fake_console(catalog) as server:
        sync(db_url, server)
        before, counts = stored_rows(db_url, current_only=False), _counts(db_url)
        alive = len(before[kind])
        for key in catalog.keys(kind)[:removed]:
            catalog.remove(kind, key)
        with pytest.raises(MassDeleteRefused, match=f"{kind} {removed} of the {alive} "):
            sync(db_url, server)
        assert stored_rows(db_url, current_only=False) == before
        assert _counts(db_url) == counts
        assert _last_run_status(db_url) == "failed"
        allowed = sync(db_url, server, allow_mass_delete=True)
    assert allowed.counts[f"{kind}_deleted"] == removed
    assert stored_rows(db_url) == tracked_only(expected_rows(catalog))


@pytest.mark.parametrize(
    ("failing", "kind"),
    [
        pytest.param("DescribeEvalTaskReport", "eval_task_report"),
        pytest.param("DescribeFineTuningTask", "fine_tuning_task"),
    ],
)
def test_a_detail_that_failed_is_asked_again_next_run(
    db_url: str, failing: str, kind: str
) -> None:
    catalog = _catalog(59)
    want = tracked_only(expected_rows(catalog))[kind]
    # What only the failing call answers is there to be missed.
    assert any(r.get("metrics") or r.get("effect_metric") for r in want.values())
    with fake_console(catalog, faults=FaultPlan().rate("5xx", 1.0, actions=[failing])) as server:
        failed = sync(db_url, server)
        server.faults = None
        again = sync(db_url, server)
    assert failed.status == "partial" and again.status == "success"
    assert stored_rows(db_url)[kind] == want
