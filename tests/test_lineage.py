"""Lineage: the ``lineage_model_versions`` view and ``qianfan-catalog lineage``, on SQLite and
PostgreSQL, against a synced fake.

The expectations are worked out here from the fake's answers to the documented calls (which
task a version's ``sourceInfo`` names, which version a service runs, which versions a report's
units evaluated), not by the catalog's code: a wrong join, a wrong "latest" or a count of the
wrong services shows as a difference.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import random
from dataclasses import dataclass
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select, text

from catalog import db
from catalog.cli import cli
from catalog.fake.catalog import FakeCatalog
from catalog.fake.server import FakeServer
from catalog.kinds import KINDS
from catalog.schema import sync_runs
from tests.helpers import _answers, _listing, fake_console, sync

FT, EV, SV = "/v2/finetuning", "/v2/eval", "/v2/service"


@dataclass(frozen=True)
class Links:
    """The versions each test looks at, and the entities that link to them."""

    trained: str  # a Train version whose sourceInfo names a real fine-tuning task
    compressed: str  # the output of ``compressor``
    compressor: str  # a succeeded compression task
    served: str  # a version two or more custom services run, not all of them Serving
    services: tuple[str, ...]
    evaluated: str  # a version two evaluation tasks evaluated, at different times


def _set_status(catalog: FakeCatalog, kind: str, key: str, status: str) -> None:
    field = "runStatus" if kind == "service" else "status"
    if catalog.get(kind, key)[field] != status:
        catalog.change(kind, key, random.Random(key), status=status)


def linked_catalog(seed: int = 12) -> tuple[FakeCatalog, Links]:
    """A generated catalog, with the links the generator leaves to chance made certain."""
    catalog = FakeCatalog.generate(seed=seed, model_sets=5, system_sets=1, comp_tasks=20,
                                   eval_exports=0, services=3)
    rng = random.Random(seed)
    ft_tasks = set(catalog.keys("fine_tuning_task"))
    custom = [m for m in catalog.keys("model_version") if not catalog.is_preset_version(m)]
    trained = next(m for m in custom
                   if catalog.get("model_version", m)["sourceInfo"].get("trainTaskId") in ft_tasks)
    # A second service on the version the first one runs; one Serving, one not.
    served = catalog.get("service", catalog.keys("service")[0])["modelId"]
    catalog.add("service", rng, parent=served)
    services = tuple(k for k in catalog.keys("service")
                     if catalog.get("service", k)["modelId"] == served)
    _set_status(catalog, "service", services[0], "Serving")
    _set_status(catalog, "service", services[-1], "Stopped")
    # The generator's compression outputs are fresh ids; make one task's output a real version.
    compressed = next(m for m in custom if m not in (trained, served))
    compressor = catalog.keys("compression_task")[0]
    _set_status(catalog, "compression_task", compressor, "succeeded")
    catalog.patch("compression_task", compressor, fields={"modelId": compressed})
    # Two evaluations of the trained version, the second one created later.
    for _ in range(2):
        catalog.add("eval_task", rng, parent=trained)
    return catalog, Links(trained, compressed, compressor, served, services, trained)


def _time(text_value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text_value.replace("Z", "+00:00"))


def expected_lineage(catalog: FakeCatalog) -> dict[str, dict[str, Any]]:
    """``lineage_model_versions`` as the fake's answers say it should read, per version."""
    server = FakeServer(catalog)  # never started: only its answers are used
    versions: dict[str, dict[str, Any]] = {}
    set_names: dict[str, Any] = {}  # as the set listings name them (model_sets.model_set_name)
    for action, detail in (("DescribeCustomModelSets", "DescribeModel"),
                           ("DescribeSystemModelSets", "DescribeSystemModel")):
        for model_set in _listing(server, action, {}):
            set_names[model_set["modelSetId"]] = model_set.get("modelSetName")
            for model_id in model_set["modelIds"]:
                versions[model_id] = _answers(server, detail, {"modelId": model_id})
    jobs = {j["jobId"]: j for j in _listing(server, "DescribeFineTuningJobs", {}, FT)}
    ft_tasks = {
        t["taskId"]: _answers(server, "DescribeFineTuningTask", {"taskId": t["taskId"]}, FT)
        for job_id in jobs
        for t in _listing(server, "DescribeFineTuningTasks", {"jobId": job_id}, FT)
    }
    comp = _listing(server, "DescribeModelCompTasks", {})
    services = [_answers(server, "DescribeService", {"serviceId": s["serviceId"]}, SV)
                for s in _listing(server, "DescribeServices", {}, SV)]
    evaluations: dict[str, list[tuple[dt.datetime, str, dict[str, Any], dict[str, Any]]]] = {}
    for eval_type in ("manual", "auto"):
        for item in _listing(server, "DescribeEvalTasks", {"evalType": eval_type}, EV):
            task = {**item, **_answers(server, "DescribeEvalTask", {"taskId": item["taskId"]}, EV)}
            for unit in _answers(server, "DescribeEvalTaskReport", {"taskId": item["taskId"]}, EV):
                if unit["modelId"]:
                    evaluations.setdefault(unit["modelId"], []).append(
                        (_time(item["createTime"]), item["taskId"], task, unit))
    out = {}
    for model_id, v in versions.items():
        source = v.get("sourceInfo", {})
        task = ft_tasks.get(source.get("trainTaskId"))
        job = jobs.get(task["jobId"]) if task else None
        made_by = [t for t in comp if t.get("modelId") == model_id]
        export = None
        if not catalog.is_preset_version(model_id):
            answer = _answers(server, "DescribeModelExportTask", {"modelId": model_id})
            export = answer.get("state") if answer["hasRecord"] else None
        runs = [s for s in services if s["modelId"] == model_id]
        latest: dict[str, Any] = dict.fromkeys(
            ("latest_eval_task_id", "latest_eval_task_name", "latest_eval_state",
             "latest_eval_metric", "latest_eval_value"))
        if model_id in evaluations:
            _, eval_id, eval_task, unit = max(evaluations[model_id], key=lambda e: e[:2])
            # The headline: the first numeric metric by name (the key names are not documented).
            numeric = sorted((k, v) for k, v in unit["effectMetric"].items()
                             if isinstance(v, int | float) and not isinstance(v, bool))
            latest = {"latest_eval_task_id": eval_id,
                      "latest_eval_task_name": eval_task["taskName"],
                      "latest_eval_state": eval_task["state"],
                      "latest_eval_metric": numeric[0][0] if numeric else None,
                      "latest_eval_value": numeric[0][1] if numeric else None}
        out[model_id] = {
            "model_id": model_id,
            "model_name": v["modelName"],
            "model_set_id": v["modelSetId"],
            # A preset version's answer has no set name: the view takes its set's.
            "model_set_name": v.get("modelSetName") or set_names.get(v["modelSetId"]),
            "status": v["status"],
            "source_type": source.get("sourceType"),
            "fine_tuning_task_id": source.get("trainTaskId"),
            "fine_tuning_task_status": task["runStatus"] if task else None,
            "fine_tuning_job_id": task["jobId"] if task else None,
            "fine_tuning_job_name": job["name"] if job else None,
            "compressed_by_task_id": min((t["id"] for t in made_by), default=None),
            "compressed_from_model_id": min((t["sourceModelId"] for t in made_by), default=None),
            "compression_tasks_as_source": sum(1 for t in comp
                                               if t.get("sourceModelId") == model_id),
            "export_state": export,
            "services": len(runs),
            "services_serving": sum(1 for s in runs if s["runStatus"] == "Serving"),
            **latest,
        }
    return out


def view_rows(db_url: str) -> dict[str, dict[str, Any]]:
    engine = db.create_engine_for(db_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM lineage_model_versions")).mappings().all()
    engine.dispose()
    assert {r["account"] for r in rows} <= {"default"}
    return {r["model_id"]: {k: v for k, v in r.items() if k != "account"} for r in rows}


def _lineage_cli(db_url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--database-url", db_url, "lineage", *args],
                              env={"CATALOG_CONFIG": None})


def _chain(db_url: str, model_id: str, *args: str) -> list[dict[str, Any]]:
    result = _lineage_cli(db_url, model_id, "--format", "json", *args)
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def _steps(chain: list[dict[str, Any]], step: str) -> list[dict[str, Any]]:
    return [row for row in chain if row["step"] == step]


@pytest.fixture
def synced(db_url: str) -> tuple[str, FakeCatalog, Links]:
    catalog, links = linked_catalog()
    with fake_console(catalog) as server:
        assert sync(db_url, server).status == "success"
    return db_url, catalog, links


def test_the_view_reads_every_link_as_the_fake_answers_it(
    synced: tuple[str, FakeCatalog, Links],
) -> None:
    db_url, catalog, links = synced
    got, want = view_rows(db_url), expected_lineage(catalog)
    assert set(got) == set(want)
    for model_id, row in want.items():
        value = row.pop("latest_eval_value")
        assert got[model_id].pop("latest_eval_value") == pytest.approx(value), model_id
        assert got[model_id] == row, model_id
    # Each link is there, so the comparison above is not one of NULLs.
    trained = got[links.trained]
    assert trained["fine_tuning_job_id"] in catalog.keys("fine_tuning_job")
    assert trained["fine_tuning_task_status"] and trained["fine_tuning_job_name"]
    assert got[links.compressed]["compressed_by_task_id"] == links.compressor
    served = got[links.served]
    assert served["services"] == len(links.services) >= 2
    assert 1 <= served["services_serving"] < served["services"]
    assert got[links.evaluated]["latest_eval_metric"] is not None
    assert sum(1 for r in got.values() if r["latest_eval_task_id"]) >= 2


def test_the_views_task_columns_read_the_tasks_once_with_the_old_views_answers(
    synced: tuple[str, FakeCatalog, Links],
) -> None:
    """Migration 0011: the compression-task columns come from two aggregates of the tasks, not
    from subqueries run per version (which read every task of the account per version where
    no statistics were kept). Same rows as revision 0010's view, both ways."""
    db_url, _catalog, links = synced
    now = view_rows(db_url)
    assert now[links.compressed]["compressed_by_task_id"] == links.compressor
    assert any(row["compression_tasks_as_source"] for row in now.values())
    engine = db.create_engine_for(db_url)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                plan = [row[-1] for row in conn.execute(
                    text("EXPLAIN QUERY PLAN SELECT * FROM lineage_model_versions"))]
                per_row = [step for step in plan if step.startswith("SEARCH c ")]
                assert per_row == [], plan  # no lookup of the tasks per version
            db.downgrade(conn, "0010")
        assert view_rows(db_url) == now
        with engine.connect() as conn:
            db.upgrade(conn)
    finally:
        engine.dispose()
    assert view_rows(db_url) == now


def test_the_latest_evaluation_is_the_newest_task_not_another(
    synced: tuple[str, FakeCatalog, Links],
) -> None:
    """Two tasks evaluated the version; the later-created one and its own unit's metric win."""
    db_url, catalog, links = synced
    tasks = {k: catalog.get("eval_task", k) for k in catalog.keys("eval_task")}
    reports = {k: catalog.get("eval_task_report", k) for k in catalog.keys("eval_task_report")}
    mine = sorted((_time(tasks[k]["createTime"]), k) for k, r in reports.items()
                  if any(u["modelId"] == links.evaluated for u in r["units"]))
    assert len(mine) >= 2 and mine[-1][0] > mine[0][0]
    newest = mine[-1][1]
    unit = next(u for u in reports[newest]["units"] if u["modelId"] == links.evaluated)
    name = min(unit["effectMetric"])  # every metric the fake writes is a number
    row = view_rows(db_url)[links.evaluated]
    assert (row["latest_eval_task_id"], row["latest_eval_task_name"], row["latest_eval_state"],
            row["latest_eval_metric"]) == (newest, tasks[newest]["taskName"], "Successed", name)
    assert row["latest_eval_value"] == pytest.approx(unit["effectMetric"][name])


def test_report_lineage_prints_the_view(synced: tuple[str, FakeCatalog, Links]) -> None:
    db_url, _, links = synced
    result = CliRunner().invoke(cli, ["--database-url", db_url, "report", "lineage",
                                      "--format", "json"], env={"CATALOG_CONFIG": None})
    assert result.exit_code == 0, result.output
    printed = {r["model_id"]: r for r in json.loads(result.stdout)}
    assert printed.keys() == view_rows(db_url).keys()
    assert printed[links.compressed]["compressed_by_task_id"] == links.compressor


def test_lineage_command_prints_the_chain_in_every_format(
    synced: tuple[str, FakeCatalog, Links],
) -> None:
    db_url, catalog, links = synced
    version = catalog.get("model_version", links.trained)
    task = catalog.get("fine_tuning_task", version["sourceInfo"]["trainTaskId"])
    job = catalog.get("fine_tuning_job", task["jobId"])
    chain = _chain(db_url, links.trained)
    assert [(r["kind"], r["id"], r["name"]) for r in _steps(chain, "trained by job")] == [
        ("fine_tuning_job", job["jobId"], job["name"])]
    assert [(r["id"], r["state"]) for r in _steps(chain, "trained by task")] == [
        (task["taskId"], task["runStatus"])]
    assert [(r["id"], r["name"]) for r in _steps(chain, "version")] == [
        (links.trained, version["modelName"])]
    assert [r["id"] for r in _steps(chain, "in model set")] == [version["modelSetId"]]
    evaluated_by = {r["id"] for r in _steps(chain, "evaluated by")}
    assert len(evaluated_by) >= 2 and evaluated_by <= set(catalog.keys("eval_task"))
    # Where it came from first, then the version, then what became of it.
    steps = [r["step"] for r in chain]
    assert steps.index("trained by job") < steps.index("version") < steps.index("evaluated by")

    made = _chain(db_url, links.compressed)
    assert [(r["kind"], r["id"]) for r in _steps(made, "compressed from")] == [
        ("compression_task", links.compressor)]
    served = _chain(db_url, links.served)
    assert {(r["id"], r["state"]) for r in _steps(served, "runs as")} == {
        (s, catalog.get("service", s)["runStatus"]) for s in links.services}

    as_csv = _lineage_cli(db_url, links.trained, "--format", "csv")
    assert as_csv.exit_code == 0, as_csv.output
    parsed = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [(r["step"], r["id"]) for r in parsed] == [(r["step"], r["id"]) for r in chain]
    as_table = _lineage_cli(db_url, links.trained)
    assert as_table.exit_code == 0, as_table.output
    # Columns, or a block per row when they do not fit: either way each link, in order (a
    # cell too wide for its column is cut, so only an id's start is looked for).
    at = 0
    for row in chain:
        found = min(as_table.stdout.find(row["step"], at), as_table.stdout.find(row["id"][:10], at))
        assert found >= at, (row, as_table.stdout)
        at = found + 1


def test_lineage_of_an_unknown_version_exits_1(synced: tuple[str, FakeCatalog, Links]) -> None:
    db_url = synced[0]
    result = _lineage_cli(db_url, "amv-nosuchversion")
    assert result.exit_code == 1
    assert "no such model_version amv-nosuchversion" in result.output
    before = _lineage_cli(db_url, synced[2].trained, "--as-of", "2000-01-01T00:00:00Z")
    assert before.exit_code == 1 and "no such model_version" in before.output


def _started_at(db_url: str, run_id: int | None) -> str:
    """The run's timestamp to the microsecond: a time to the second means its whole second."""
    engine = db.create_engine_for(db_url)
    with engine.connect() as conn:
        started = conn.execute(
            select(sync_runs.c.started_at).where(sync_runs.c.run_id == run_id)).scalar_one()
    engine.dispose()
    return str(started.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))


def test_lineage_as_of_shows_the_chain_as_it_was(db_url: str) -> None:
    catalog, links = linked_catalog()
    serving = links.services[0]
    with fake_console(catalog) as server:
        first = sync(db_url, server)
        was_serving = view_rows(db_url)[links.served]["services_serving"]
        catalog.change("service", serving, random.Random(3), status="Failed")
        catalog.remove("compression_task", links.compressor)
        task = catalog.get("model_version", links.trained)["sourceInfo"]["trainTaskId"]
        job = catalog.get("fine_tuning_task", task)["jobId"]
        catalog.remove("fine_tuning_job", job)  # and its tasks
        second = sync(db_url, server)
    assert (first.status, second.status) == ("success", "success")
    assert second.counts["service_updated"] == 1 and second.counts["compression_task_deleted"] == 1
    assert second.counts["fine_tuning_job_deleted"] == 1
    then = _started_at(db_url, first.run_id)

    trained_then = _chain(db_url, links.trained, "--as-of", then)
    assert [r["id"] for r in _steps(trained_then, "trained by job")] == [job]
    assert [r["id"] for r in _steps(trained_then, "trained by task")] == [task]
    trained_now = _chain(db_url, links.trained)
    assert _steps(trained_now, "trained by job") == _steps(trained_now, "trained by task") == []

    old = _chain(db_url, links.compressed, "--as-of", then)
    assert [r["id"] for r in _steps(old, "compressed from")] == [links.compressor]
    assert _steps(_chain(db_url, links.compressed), "compressed from") == []

    def status_of(chain: list[dict[str, Any]]) -> Any:
        return next(r["state"] for r in _steps(chain, "runs as") if r["id"] == serving)

    assert status_of(_chain(db_url, links.served, "--as-of", then)) == "Serving"
    assert status_of(_chain(db_url, links.served)) == "Failed"
    # The view is the present: the task is gone and one fewer service is Serving.
    now = view_rows(db_url)
    assert now[links.compressed]["compressed_by_task_id"] is None
    assert now[links.served]["services_serving"] == was_serving - 1
    assert now[links.trained]["fine_tuning_task_id"] == task  # what the version says, still
    assert now[links.trained]["fine_tuning_job_id"] is None
    assert now == {k: {**v, "latest_eval_value": now[k]["latest_eval_value"]}
                   for k, v in expected_lineage(catalog).items()}


def test_lineage_shows_the_tracked_export_tasks_of_an_evaluation(db_url: str) -> None:
    """With eval_result_export_task on, an evaluation's tracked V2 export tasks follow it in
    the chain (``evalId`` -> the evaluation task); an untracked one is not there."""
    catalog, links = linked_catalog()
    rng = random.Random(21)
    evals = [k for k in catalog.keys("eval_task_report") if any(
        u["modelId"] == links.evaluated for u in catalog.get("eval_task_report", k)["units"])]
    tracked = catalog.add("eval_result_export_task", rng, parent=evals[0])
    untracked = catalog.add("eval_result_export_task", rng, parent=evals[0])
    with fake_console(catalog) as server:
        summary = sync(db_url, server, kinds=KINDS, eval_export_ids=[tracked])
    assert summary.status == "success"
    chain = _chain(db_url, links.evaluated)
    task = catalog.get("eval_result_export_task", tracked)
    assert [(r["kind"], r["id"], r["state"]) for r in _steps(chain, "results exported")] == [
        ("eval_result_export_task", tracked, task["state"])]
    steps = [(r["step"], r["id"]) for r in chain]
    assert steps.index(("evaluated by", evals[0])) < steps.index(("results exported", tracked))
    assert untracked not in {r["id"] for r in chain}
