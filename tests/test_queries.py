"""Report views, read-only queries, output formats, the reading CLI commands and the SQL examples
of docs/schema.md, on a known catalog, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import random
import re
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, make_url, select, table, text

from catalog import db, output, queries, runs
from catalog.cli import cli
from catalog.errors import ExitCode
from catalog.fake.catalog import FakeCatalog
from catalog.kinds import KINDS
from catalog.schema import sync_runs
from tests.helpers import expected_rows, fake_console, sync
from tests.pg import PostgresServer

DOC = Path(__file__).resolve().parent.parent / "docs" / "schema.md"


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)],
    ids=["sqlite", "postgresql"],
)
def known_db(request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One database per backend for this module's read-only tests (like ``db_url``, shared)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('queries')}/catalog.db"
        return
    server: PostgresServer = request.getfixturevalue("pg_server")
    with server.fresh_database() as url:
        yield url


@pytest.fixture(scope="module")
def known(known_db: str) -> tuple[str, FakeCatalog, list[int]]:
    """A catalog synced twice; the second run sees a changed version, a changed task and a new
    model set without versions. Tests using it only read."""
    db_url = known_db
    catalog = FakeCatalog.generate(seed=31, model_sets=3, system_sets=1, comp_tasks=12,
                                   eval_exports=2, export_share=0.7)
    rng = random.Random(5)
    with fake_console(catalog) as server:
        first = sync(db_url, server, workers=2)
        catalog.change("model_version", catalog.keys("model_version")[0], rng)
        catalog.change("compression_task", catalog.keys("compression_task")[0], rng)
        empty = catalog.add("model_set", rng)
        for model_id in catalog.get("model_set", empty)["modelIds"]:
            catalog.remove("model_version", model_id)  # a set without versions
        second = sync(db_url, server, workers=2)
    assert first.run_id is not None and second.run_id is not None
    return db_url, catalog, [first.run_id, second.run_id]


def _rows(db_url: str, fn: Any, *args: Any, **kw: Any) -> list[dict[str, Any]]:
    engine = db.create_engine_for(db_url)
    with engine.connect() as conn:
        columns, rows = fn(conn, *args, **kw)
    engine.dispose()
    return [dict(zip(columns, row, strict=True)) for row in rows]


# -- report views ---------------------------------------------------------------------------


def test_report_views_have_the_declared_columns(known: tuple[str, FakeCatalog, list[int]]) -> None:
    db_url = known[0]
    engine = db.create_engine_for(db_url)
    with engine.connect() as conn:
        for view, _order in queries.REPORTS.values():
            result = conn.execute(select(text("*")).select_from(table(view.name)))
            assert list(result.keys()) == [c.name for c in view.columns], view.name
    engine.dispose()


def test_versions_by_model_set(known: tuple[str, FakeCatalog, list[int]]) -> None:
    db_url, catalog, _ = known
    exp = expected_rows(catalog)
    per_set: dict[str, list[str]] = defaultdict(list)
    for model_id, v in exp["model_version"].items():
        per_set[v["model_set_id"]].append(model_id)
    want = set()
    for set_id, s in exp["model_set"].items():
        for model_id in per_set.get(set_id) or [None]:  # type: ignore[list-item]
            v = exp["model_version"].get(model_id or "", {})
            e = exp["model_export"].get(model_id or "", {})
            want.add(("default", set_id, s["model_set_name"], s["is_system"],
                      len(per_set.get(set_id, [])),
                      model_id, v.get("model_name"), v.get("status"), v.get("source_type"),
                      v.get("create_time"), e.get("export_id"), e.get("state"),
                      e.get("file_size")))
    got = {tuple(r.values()) for r in _rows(db_url, queries.report, "versions_by_model_set")}
    assert got == want
    assert any(w[5] is None for w in want)  # the empty set has its one row
    assert any(w[10] is not None for w in want) and any(w[10] is None for w in want)


def test_compression_tasks_by_status(known: tuple[str, FakeCatalog, list[int]]) -> None:
    db_url, catalog, _ = known
    groups: dict[tuple[Any, Any], list[dict[str, Any]]] = defaultdict(list)
    for t in expected_rows(catalog)["compression_task"].values():
        groups[(t["status"], t["strategy"])].append(t)
    got = {(r["status"], r["strategy"]): r
           for r in _rows(db_url, queries.report, "compression_tasks_by_status")}
    assert set(got) == set(groups)
    for key, tasks in groups.items():
        done = [(t["finish_time"] - t["create_time"]).total_seconds()
                for t in tasks if t["finish_time"] and t["create_time"]]
        assert got[key]["tasks"] == len(tasks)
        assert got[key]["finished"] == sum(1 for t in tasks if t["finish_time"])
        if done:
            assert got[key]["avg_duration_seconds"] == pytest.approx(sum(done) / len(done),
                                                                     abs=0.01)
        else:
            assert got[key]["avg_duration_seconds"] is None
    assert any(r["avg_duration_seconds"] for r in got.values())


def test_exports_report(known: tuple[str, FakeCatalog, list[int]]) -> None:
    db_url, catalog, _ = known
    exp = expected_rows(catalog)
    want = {
        model_id: ("default", model_id, exp["model_version"][model_id]["model_name"],
                   exp["model_version"][model_id]["model_set_id"],
                   exp["model_version"][model_id]["model_set_name"], e["export_id"], e["state"],
                   e["file_name"], e["file_type"], e["file_size"], e["md5"], e["download_url"])
        for model_id, e in exp["model_export"].items()
    }
    got = {r["model_id"]: tuple(r.values()) for r in _rows(db_url, queries.report, "exports")}
    assert got == want
    assert any(r[6] == "Done" and r[9] and r[10] for r in got.values())


def test_latest_changes_report_is_the_second_runs_changes(
    known: tuple[str, FakeCatalog, list[int]],
) -> None:
    db_url, _, (first, second) = known
    latest = _rows(db_url, queries.report, "latest_changes")
    of_run = _rows(db_url, queries.changes_query, run_id=second)
    assert latest and {r["run_id"] for r in latest} == {second}
    assert [(r["kind"], r["entity_id"], r["operation"], r["field"]) for r in latest] == [
        (r["kind"], r["entity_id"], r["operation"], r["field"]) for r in of_run]
    kinds = {r["kind"] for r in latest}
    assert {"model_version", "compression_task", "model_set"} <= kinds
    assert "insert" in {r["operation"] for r in latest}


def test_runs_and_changes_filters(known: tuple[str, FakeCatalog, list[int]]) -> None:
    db_url, _, (first, second) = known
    runs = _rows(db_url, queries.recent_runs, limit=1)
    assert [r["run_id"] for r in runs] == [second]
    assert runs[0]["status"] == "success" and runs[0]["changed"] >= 2 and runs[0]["new"] >= 1
    assert runs[0]["seconds"] is not None and runs[0]["seconds"] >= 0
    engine = db.create_engine_for(db_url)
    with engine.connect() as conn:
        second_ts = conn.execute(
            select(sync_runs.c.started_at).where(sync_runs.c.run_id == second)).scalar_one()
    engine.dispose()
    since = _rows(db_url, queries.changes_query, since=second_ts)
    assert since == _rows(db_url, queries.changes_query, run_id=second)
    until = _rows(db_url, queries.changes_query, until=second_ts)
    assert until == _rows(db_url, queries.changes_query, run_id=first)
    only = _rows(db_url, queries.changes_query, kind="compression_task", run_id=second)
    assert only and {r["kind"] for r in only} == {"compression_task"}
    with pytest.raises(queries.QueryError, match="unknown kind"):
        _rows(db_url, queries.changes_query, kind="nope")


# -- the CLI --------------------------------------------------------------------------------


def _cli(db_url: str, *args: str) -> Any:
    return CliRunner().invoke(cli, ["--database-url", db_url, *args])


def test_cli_reading_commands(known: tuple[str, FakeCatalog, list[int]]) -> None:
    db_url, catalog, (first, second) = known
    result = _cli(db_url, "runs", "--format", "json")
    assert result.exit_code == 0, result.output
    assert [r["run_id"] for r in json.loads(result.output)] == [second, first]

    result = _cli(db_url, "changes", "--run", str(second), "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert rows and {r["run_id"] for r in rows} == {str(second)}

    result = _cli(db_url, "as-of", "2100-01-01", "model_set", "--format", "json")
    assert result.exit_code == 0, result.output
    assert {r["model_set_id"] for r in json.loads(result.output)} == set(catalog.keys("model_set"))
    result = _cli(db_url, "as-of", "2000-01-01T00:00:00Z", "model_set")
    assert result.exit_code == 0 and result.output.strip() == "(no rows)"

    version = catalog.keys("model_version")[0]
    result = _cli(db_url, "history", "model_version", version, "--format", "json")
    assert result.exit_code == 0, result.output
    versions = json.loads(result.output)
    assert len(versions) == 2 and versions[0]["valid_to"] == versions[1]["valid_from"]

    for name in queries.REPORT_NAMES:
        result = _cli(db_url, "report", name)
        assert result.exit_code == 0, (name, result.output)
        assert all(output.display_width(line) <= 80 for line in result.output.splitlines())

    result = _cli(db_url, "report", "compression_tasks_by_status")
    assert "avg_duration_seconds" in result.output.splitlines()[0]


def test_cli_errors_are_one_line_with_the_documented_code(
    known: tuple[str, FakeCatalog, list[int]],
) -> None:
    """A wrong flag or value exits 2 (README, exit codes) with one ``Error:`` line naming it."""
    db_url = known[0]
    cases = [
        (("as-of", "yesterday-ish", "model_set"), "cannot parse timestamp 'yesterday-ish'"),
        (("as-of", "2024-01-01", "widget"), "'widget' is not one of"),
        (("history", "widget", "x"), "'widget' is not one of"),
        (("history", "eval_result_export", "abc"), "eval_result_export ids are integers"),
        (("changes", "--since", "2024-13-45"), "cannot parse timestamp '2024-13-45'"),
        (("changes", "--run", "1", "--since", "2024-01-01"),
         "use either --run or --since/--until, not both"),
        (("report", "nope"), "'nope' is not one of"),
    ]
    for args, needle in cases:
        result = _cli(db_url, *args)
        assert result.exit_code == ExitCode.USAGE, (args, result.exit_code, result.output)
        errors = [line for line in result.output.splitlines() if "Error" in line]
        assert len(errors) == 1 and errors[0].startswith("Error: "), (args, result.output)
        assert needle in errors[0], (args, errors)


def test_cli_on_a_database_without_catalog_says_so(tmp_path: Path) -> None:
    """A read command on a missing SQLite file exits 6 (README), says how to make one and
    creates nothing."""
    path = tmp_path / "empty.db"
    result = _cli(f"sqlite:///{path}", "runs")
    assert result.exit_code == ExitCode.DATABASE, result.output
    assert result.output.splitlines() == [
        f"Error: the database file {path} does not exist: run `qianfan-catalog sync` (or "
        "`qianfan-catalog db upgrade`) to create it, or fix --database-url / CATALOG_DATABASE_URL"]
    assert not path.exists()


# -- docs/schema.md examples ----------------------------------------------------------------


def _doc_examples(dialect: str) -> list[str]:
    blocks = re.findall(r"```sql( \w+)?\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    return [sql for tag, sql in blocks if tag.strip() in ("", dialect)]


def test_schema_doc_examples_run(known: tuple[str, FakeCatalog, list[int]]) -> None:
    db_url = known[0]
    engine = db.create_engine_for(db_url)
    examples = _doc_examples(engine.dialect.name)
    assert len(examples) >= 9
    with engine.connect() as conn:
        results = [conn.execute(text(sql)).all() for sql in examples]
        n_versions = conn.execute(
            select(func.count()).select_from(table("current_model_versions"))).scalar_one()
    engine.dispose()
    assert all(results[:4]), "per account / what exists now / state at a date / changes"
    assert len(results[2]) == n_versions  # as of 2030: everything current now
    durations = next(r for r, sql in zip(results, examples, strict=True) if "seconds" in sql)
    assert durations and all(float(row.seconds) >= 0 for row in durations)
    weekly = next(r for r, sql in zip(results, examples, strict=True) if "exports_done" in sql)
    assert weekly and sum(row.exports_done for row in weekly) >= 1


def _example(dialect: str, needle: str) -> str:
    (sql,) = [sql for sql in _doc_examples(dialect) if needle in sql]
    return sql


def test_schema_doc_lifecycle_examples_return_what_the_fake_says(db_url: str) -> None:
    """"Versions in production never evaluated" and "fine-tuning jobs whose versions were all
    deleted", on a catalog arranged so that each example has rows to return and rows to leave
    out; the expected rows are worked out from the fake's answers."""
    catalog = FakeCatalog.generate(seed=33, model_sets=5, system_sets=0, comp_tasks=6,
                                   eval_exports=0, services=2)
    rng = random.Random(33)
    # Jobs: the one that trained the first Train version loses every version it trained.
    trained = {m: catalog.get("model_version", m)["sourceInfo"].get("trainTaskId")
               for m in catalog.keys("model_version")}
    job_of = {t: catalog.get("fine_tuning_task", t)["jobId"]
              for t in catalog.keys("fine_tuning_task")}
    per_job: dict[str, list[str]] = defaultdict(list)
    for model_id, task in trained.items():
        if task in job_of:
            per_job[job_of[task]].append(model_id)
    assert len(per_job) >= 2  # one job loses its versions, another keeps them
    doomed = next(iter(per_job))
    # Services: one on a version never evaluated, one Stopped, one on a version evaluated.
    reports = [catalog.get("eval_task_report", k) for k in catalog.keys("eval_task_report")]
    evaluated = {u["modelId"] for r in reports for u in r["units"]}
    chat = [m for m in catalog.keys("model_version")
            if catalog.get("model_version", m)["modelApplicationType"] in ("chat", "completion")
            and m not in evaluated and m not in per_job[doomed]]
    never, stopped, checked = chat[:3]
    catalog.add("eval_task", rng, parent=checked)  # evaluated: left out even when Serving
    for model_id, status in ((never, "Serving"), (stopped, "Stopped"), (checked, "Serving")):
        service = catalog.add("service", rng, parent=model_id)
        if catalog.get("service", service)["runStatus"] != status:
            catalog.change("service", service, rng, status=status)
    with fake_console(catalog) as server:
        sync(db_url, server)
        for model_id in per_job[doomed]:
            catalog.remove("model_version", model_id)
        assert sync(db_url, server).status == "success"
        served: dict[str, int] = defaultdict(int)
        for service in catalog.keys("service"):
            answer = server.answer("/v2/service", "DescribeService", {"serviceId": service}, None)
            if answer["runStatus"] == "Serving":
                served[answer["modelId"]] += 1
        units = {u["modelId"] for t in catalog.keys("eval_task_report")
                 for u in server.answer("/v2/eval", "DescribeEvalTaskReport", {"taskId": t}, None)}
    alive = expected_rows(catalog)["model_version"]
    want_serving = sorted(
        ("default", m, alive[m]["model_set_name"], alive[m]["model_name"], n)
        for m, n in served.items() if m in alive and m not in units)
    assert ("default", never, alive[never]["model_set_name"], alive[never]["model_name"],
            1) in want_serving
    assert served[checked] and checked not in {w[1] for w in want_serving}
    job = catalog.get("fine_tuning_job", doomed)
    engine = db.create_engine_for(db_url)
    dialect = engine.dialect.name
    with engine.connect() as conn:
        serving = [tuple(r) for r in conn.execute(text(_example(dialect, "current_services")))]
        jobs = conn.execute(text(_example(dialect, "current_fine_tuning_jobs"))).all()
    engine.dispose()
    assert serving == want_serving
    assert [(r.account, r.job_id, r.name, r.versions) for r in jobs] == [
        ("default", doomed, job["name"], len(per_job[doomed]))]
    assert jobs[0].last_deleted_at is not None


# -- the examples with several accounts, a session time zone, a run on the second ------------


def _at(monkeypatch: pytest.MonkeyPatch, moment: str) -> None:
    """The runs started from now on take ``moment`` (UTC) as their timestamp."""
    when = dt.datetime.fromisoformat(moment).replace(tzinfo=dt.UTC)
    monkeypatch.setattr(runs, "utcnow", lambda: when)


def _answers(db_url: str, examples: Sequence[str],
             setup: str | None = None) -> list[tuple[list[str], list[tuple[Any, ...]]]]:
    """Each example's column names and rows, on one connection (``setup`` run first)."""
    engine = db.create_engine_for(db_url)
    out = []
    try:
        with engine.connect() as conn:
            if setup:
                conn.execute(text(setup))
            for sql in examples:
                result = conn.execute(text(sql))
                out.append((list(result.keys()), [tuple(r) for r in result]))
    finally:
        engine.dispose()
    return out


def _accounts_catalog() -> FakeCatalog:
    """The same catalog (same ids) at every call, arranged so that every example has rows: a
    preset set, done and doing exports, a tracked V2 export task, a version never evaluated
    that a service is ``Serving``."""
    catalog = FakeCatalog.generate(seed=37, model_sets=4, system_sets=1, comp_tasks=6,
                                   eval_exports=1, export_share=1.0, eval_export_tasks=1)
    rng = random.Random(37)
    evaluated = {u["modelId"] for k in catalog.keys("eval_task_report")
                 for u in catalog.get("eval_task_report", k)["units"]}
    never = next(m for m in catalog.keys("model_version")
                 if catalog.get("model_version", m)["modelApplicationType"] in ("chat",
                                                                               "completion")
                 and not catalog.is_preset_version(m)
                 and m not in evaluated and m not in _trained(catalog))
    service = catalog.add("service", rng, parent=never)
    if catalog.get("service", service)["runStatus"] != "Serving":
        catalog.change("service", service, rng, status="Serving")
    return catalog


def _trained(catalog: FakeCatalog) -> dict[str, str]:
    """Version -> the fine-tuning job whose task its ``sourceInfo`` names."""
    job_of = {t: catalog.get("fine_tuning_task", t)["jobId"]
              for t in catalog.keys("fine_tuning_task")}
    out = {}
    for model_id in catalog.keys("model_version"):
        task = catalog.get("model_version", model_id)["sourceInfo"].get("trainTaskId")
        if task in job_of:
            out[model_id] = job_of[task]
    return out


def _accounts_changes(catalog: FakeCatalog) -> None:
    """The same changes to every copy: a job loses all its versions, the exports doing are
    done, a version changes status."""
    rng = random.Random(38)
    trained = _trained(catalog)
    doomed = next(iter(trained.values()))
    for model_id, job in trained.items():
        if job == doomed:
            catalog.remove("model_version", model_id)
    for model_id in catalog.keys("model_export"):
        if catalog.get("model_export", model_id)["state"] == "Doing":
            catalog.change("model_export", model_id, rng, status="Done")
    version = next(m for m in catalog.keys("model_version") if not catalog.is_preset_version(m))
    was = catalog.get("model_version", version)["status"]
    catalog.change("model_version", version, rng, status="Fail" if was != "Fail" else "Ready")


def _by_account(columns: list[str], rows: list[tuple[Any, ...]],
                run_rank: dict[Any, int]) -> dict[Any, list[tuple[Any, ...]]]:
    """Rows per account, without the account, a run id as the run's rank in its account (no
    ``account`` column: all rows under None)."""
    at = columns.index("account") if "account" in columns else -1
    out: dict[Any, list[tuple[Any, ...]]] = defaultdict(list)
    for row in rows:
        values = tuple(run_rank[v] if c == "run_id" else v
                       for i, (c, v) in enumerate(zip(columns, row, strict=True)) if i != at)
        out[row[at] if at >= 0 else None].append(values)
    return dict(out)


def _run_ranks(db_url: str) -> dict[Any, int]:
    engine = db.create_engine_for(db_url)
    with engine.connect() as conn:
        ids = conn.execute(
            select(sync_runs.c.run_id, sync_runs.c.account).order_by(sync_runs.c.run_id)).all()
    engine.dispose()
    seen: dict[str, int] = defaultdict(int)
    ranks = {}
    for run_id, account in ids:
        seen[account] += 1
        ranks[run_id] = seen[account]
    return ranks


def test_schema_doc_examples_answer_per_account(
    db_url: str, request: pytest.FixtureRequest, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two accounts synced from copies of one catalog (the same ids) into one database, run by
    run at the same times: each example's answer, per account (its ``account`` column), is the
    answer of a database holding that catalog alone; an example that reads one account
    (``'default'``) gives that answer as it is."""
    with ExitStack() as stack:
        if db_url.startswith("sqlite"):
            alone_url = f"sqlite:///{tmp_path}/alone.db"
        else:
            server: PostgresServer = request.getfixturevalue("pg_server")
            alone_url = stack.enter_context(server.fresh_database())
        targets = [(db_url, "default"), (db_url, "b"), (alone_url, "default")]
        catalogs = [_accounts_catalog() for _ in targets]
        consoles = [stack.enter_context(fake_console(c)) for c in catalogs]
        for phase, moment in enumerate(("2026-01-04T20:00:00", "2026-01-05T10:00:00")):
            _at(monkeypatch, moment)
            for (url, account), catalog, console in zip(targets, catalogs, consoles,
                                                        strict=True):
                if phase:
                    _accounts_changes(catalog)
                refs = [*(str(k) for k in catalog.keys("eval_result_export")),
                        *catalog.keys("eval_result_export_task")]
                summary = sync(url, console, account=account, kinds=KINDS,
                               eval_export_ids=refs, workers=1)
                assert summary.status == "success", (account, summary)
        examples = _doc_examples(make_url(db_url).get_backend_name())
        both, alone = _answers(db_url, examples), _answers(alone_url, examples)
        both_ranks, alone_ranks = _run_ranks(db_url), _run_ranks(alone_url)
    failures = []
    for sql, (columns, rows), (alone_columns, alone_rows) in zip(examples, both, alone,
                                                                 strict=True):
        first = " ".join(sql.split())[:70]
        assert alone_rows, f"no rows to compare: {first}"
        got = _by_account(columns, rows, both_ranks)
        want = _by_account(alone_columns, alone_rows, alone_ranks)
        if "'default'" in sql:  # reads one account
            if got != want:
                failures.append(f"not that account's answer: {first}")
        elif "account" not in columns:
            (mixed,), (one,) = got.values(), want.values()
            added = sorted(mixed, key=repr) != sorted(one * 2, key=repr)
            failures.append(f"no account column{' (accounts added up)' * added}: {first}")
        elif got != {"default": want["default"], "b": want["default"]}:
            failures.append(f"not the one account's answer per account: {first}")
    assert not failures, "\n".join(failures)


def test_schema_doc_weeks_are_utc_mondays_in_any_session_time_zone(
    db_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Exports first seen done on a Sunday evening (Monday morning in Shanghai), and in the last
    half millisecond of the next Sunday (Monday in Shanghai, and what SQLite rounds to Monday):
    each counts in the week of its Monday in UTC, on both backends, and on PostgreSQL under a
    session time zone of Asia/Shanghai (as BI tools set) as under UTC."""
    catalog = FakeCatalog.generate(seed=39, model_sets=4, system_sets=0, comp_tasks=0,
                                   eval_exports=0, export_share=1.0)
    rng = random.Random(39)
    with fake_console(catalog) as server:
        _at(monkeypatch, "2026-01-04T20:00:00")
        sync(db_url, server)
        doing = [m for m in catalog.keys("model_export")
                 if catalog.get("model_export", m)["state"] == "Doing"]
        done = len(catalog.keys("model_export")) - len(doing)
        for model_id in doing:
            catalog.change("model_export", model_id, rng, status="Done")
        _at(monkeypatch, "2026-01-11T23:59:59.999700")
        sync(db_url, server)
    assert done and doing
    want = [("default", "2025-12-29", str(done)), ("default", "2026-01-05", str(len(doing)))]
    dialect = make_url(db_url).get_backend_name()
    sql = _example(dialect, "exports_done")
    for zone in ("UTC", "Asia/Shanghai") if dialect == "postgresql" else (None,):
        ((_, rows),) = _answers(db_url, [sql], zone and f"SET TIME ZONE '{zone}'")
        assert [tuple(str(v) for v in row) for row in rows] == want, zone


def test_schema_doc_state_at_a_date_on_a_run_started_on_that_second(
    db_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run started at 2030-01-01 00:00:00 exactly (stored on SQLite as
    '2030-01-01 00:00:00.000000'): the state at that date is the one this run left, on both
    backends; changes until that date (exclusive) leave the run out."""
    catalog = FakeCatalog.generate(seed=3, model_sets=2, system_sets=0, comp_tasks=2,
                                   eval_exports=0)
    rng = random.Random(1)
    with fake_console(catalog) as server:
        _at(monkeypatch, "2029-12-31T12:00:00")
        first = sync(db_url, server, include_system=False)
        version = catalog.keys("model_version")[0]
        status = "Fail" if catalog.get("model_version", version)["status"] != "Fail" else "Ready"
        catalog.change("model_version", version, rng, status=status)
        _at(monkeypatch, "2030-01-01T00:00:00")
        assert sync(db_url, server, include_system=False).status == "success"
    want = sorted((m, v["status"]) for m, v in expected_rows(catalog)["model_version"].items())
    assert (version, status) in want
    dialect = make_url(db_url).get_backend_name()
    (columns, state), (changes_columns, changed) = _answers(
        db_url, [_example(dialect, "valid_from <="), _example(dialect, "changed_at >=")])
    at = {c: columns.index(c) for c in ("model_id", "status")}
    assert [(r[at["model_id"]], r[at["status"]]) for r in state] == want
    assert {r[changes_columns.index("run_id")] for r in changed} == {first.run_id}


def test_schema_doc_compression_durations_are_exact(db_url: str) -> None:
    """The seconds a compression task took, as the API's times give them: SQLite's float day
    counts rounded to the millisecond give PostgreSQL's exact interval."""
    catalog = FakeCatalog.generate(seed=31, model_sets=3, system_sets=0, comp_tasks=20,
                                   eval_exports=0)
    with fake_console(catalog) as server:
        sync(db_url, server)
    want = sorted(
        (((t["finish_time"] - t["create_time"]).total_seconds(), k, t["name"], t["status"])
         for k, t in expected_rows(catalog)["compression_task"].items()
         if t["finish_time"] and t["create_time"]),
        key=lambda w: (-w[0], w[1]))  # the example's order: longest first, then by task id
    assert len(want) >= 5
    dialect = make_url(db_url).get_backend_name()
    ((columns, rows),) = _answers(db_url, [_example(dialect, "AS seconds")])
    at = {c: columns.index(c) for c in ("seconds", "task_id", "name", "status")}
    got = [(float(r[at["seconds"]]), r[at["task_id"]], r[at["name"]], r[at["status"]])
           for r in rows]
    assert got == want


def test_schema_doc_what_exists_now_names_preset_versions_in_one_order(
    known: tuple[str, FakeCatalog, list[int]],
) -> None:
    """Preset versions (their answer has no set name) are shown with their set's name, and
    the order is the same on both backends (no NULL in the sort key)."""
    db_url, catalog, _ = known
    exp = expected_rows(catalog)
    assert any(v["model_set_name"] is None for v in exp["model_version"].values())
    keyed = []
    for model_id, v in exp["model_version"].items():
        name = v["model_set_name"] or exp["model_set"][v["model_set_id"]]["model_set_name"]
        keyed.append((("default", name or "", v["model_name"] or "", model_id),
                      ("default", name, v["model_name"], v["status"])))
    dialect = make_url(db_url).get_backend_name()
    sql = next(sql for sql in _doc_examples(dialect) if "model_name" in sql)
    ((_, rows),) = _answers(db_url, [sql])
    assert rows == [row for _, row in sorted(keyed)]


def test_every_table_and_view_is_documented() -> None:
    from catalog.schema import metadata

    doc = DOC.read_text(encoding="utf-8")
    for t in metadata.sorted_tables:
        assert f"### `{t.name}`" in doc, t.name
        if not t.name.endswith("_history"):
            for c in t.columns:
                if not re.match(r"\w+_(seen|inserted|updated|deleted)$", c.name):
                    assert f"`{c.name}`" in doc, (t.name, c.name)
    for view, _ in queries.REPORTS.values():
        assert f"### `{view.name}`" in doc
        for c in view.columns:
            assert f"`{c.name}`" in doc or c.name in doc, (view.name, c.name)


# -- output and parsing, no database ----------------------------------------------------------


def test_parse_timestamp_forms() -> None:
    utc = dt.UTC
    assert queries.parse_timestamp("2024-06-01") == dt.datetime(2024, 6, 1, tzinfo=utc)
    assert queries.parse_timestamp("2024-06-01T12:00:00Z") == dt.datetime(2024, 6, 1, 12,
                                                                         tzinfo=utc)
    assert queries.parse_timestamp("2024-06-01 20:00:00+08:00") == dt.datetime(2024, 6, 1, 12,
                                                                              tzinfo=utc)
    for bad in ("", "yesterday", "2024-13-01", "12:00"):
        with pytest.raises(queries.QueryError):
            queries.parse_timestamp(bad)


def test_table_output_fits_80_columns() -> None:
    columns = ["id", "name", "description", "value"]
    rows = [("am-1", "客服助手客服助手客服助手", "x" * 200, 1.5), ("am-2", None, "short", None)]
    rendered = output.render(columns, rows, "table")
    lines = rendered.splitlines()
    assert all(output.display_width(line) <= 80 for line in lines)
    assert lines[0].split()[:2] == ["id", "name"] and "…" in rendered
    # many columns: one block per row, still within 80 columns, no value lost in its column
    wide = [f"column_{i}" for i in range(14)]
    block = output.render(wide, [tuple(range(14))], "table")
    assert block.startswith("-- row 1") and "column_13: 13" in block
    assert all(output.display_width(line) <= 80 for line in block.splitlines())
    assert output.render(columns, [], "table") == "(no rows)"


def test_csv_and_json_keep_values_whole() -> None:
    moment = dt.datetime(2024, 6, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)
    columns = ["id", "when", "labels", "text"]
    rows = [(1, moment, ["a", "b"], "x" * 300), (2, None, None, 'comma, "quote"')]
    parsed = list(csv.reader(io.StringIO(output.render(columns, rows, "csv"))))
    assert parsed[0] == columns and parsed[1][3] == "x" * 300 and parsed[2][3] == 'comma, "quote"'
    # times in the one printed form (UTC, Z, to the second), as in tables
    assert parsed[1][1] == "2024-06-01T12:00:00Z" and parsed[1][2] == '["a","b"]'
    data = json.loads(output.render(columns, rows, "json"))
    assert data[0] == {"id": 1, "when": "2024-06-01T12:00:00Z", "labels": ["a", "b"],
                       "text": "x" * 300}
    assert data[1]["when"] is None
    with pytest.raises(ValueError):
        output.render(columns, rows, "xml")
