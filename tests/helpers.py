"""Helpers shared by the sync-level tests: a fake console, options pointing at it, DB readers."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import select

from catalog import db
from catalog.fake.catalog import FakeCatalog
from catalog.fake.faults import FaultPlan
from catalog.fake.server import FakeServer
from catalog.kinds import (
    compression_tasks,
    eval_result_export_tasks,
    eval_result_exports,
    eval_task_reports,
    eval_tasks,
    fine_tuning_jobs,
    fine_tuning_tasks,
    model_exports,
    model_sets,
    model_versions,
    services,
)
from catalog.schema import SPECS
from catalog.sync import RunSummary, SyncOptions, run_sync

AK, SK = "test-ak", "test-secret-key-never-shown-0123456789"


@contextmanager
def fake_console(catalog: FakeCatalog | None = None, **kw: Any) -> Iterator[FakeServer]:
    catalog = catalog or FakeCatalog.generate(seed=1)
    with FakeServer(catalog, AK, SK, **kw) as server:
        yield server


def failing(
    server: FakeServer, when: Callable[[str, str, dict[str, Any]], bool], error: Exception
) -> Callable[..., Any]:
    """Make the fake answer ``error`` to the calls ``when`` picks (route, action, body); returns
    the answer it replaced, for the caller to put back."""
    answer = server.answer

    def patched(route: str, action: str, body: dict[str, Any], fault: Any) -> Any:
        if when(route, action, body):
            raise error
        return answer(route, action, body, fault)

    server.answer = patched  # type: ignore[method-assign]
    return answer


def create_schema(db_url: str) -> None:
    """The schema at head before a sync: the fixtures' templates, and tests that need the
    schema to exist before their sync starts."""
    engine = db.create_engine_for(db_url)
    try:
        with engine.connect() as conn:
            db.upgrade(conn)
    finally:
        engine.dispose()  # SQLite: the WAL is folded into the file, which can then be copied


def options(db_url: str, server: FakeServer, **kw: Any) -> SyncOptions:
    defaults: dict[str, Any] = dict(
        database_url=db_url,
        access_key=AK,
        secret_key=SK,
        base_url=server.url,
        include_system=True,
        qps=0,
        workers=4,
        max_attempts=3,
        timeout=(2.0, 5.0),
        eval_export_ids=[str(k) for k in server.catalog.keys("eval_result_export")],
    )
    defaults.update(kw)
    return SyncOptions(**defaults)


def sync(db_url: str, server: FakeServer, **kw: Any) -> RunSummary:
    return run_sync(options(db_url, server, **kw))


def _answers(
    server: FakeServer, action: str, body: dict[str, Any], route: str = "/v2/model"
) -> Any:
    return server.answer(route, action, body, None)


def _listing(
    server: FakeServer, action: str, body: dict[str, Any], route: str = "/v2/model"
) -> list[dict[str, Any]]:
    """Every item of a listing, paged as the sync pages it."""
    items: list[dict[str, Any]] = []
    marker = None
    while True:
        paging = {"maxKeys": 100, **({"marker": marker} if marker else {})}
        page = _answers(server, action, {**body, **paging}, route)
        items.extend(next(v for k, v in page.items() if k != "pageInfo"))
        if not page["pageInfo"]["isTruncated"]:
            return items
        marker = page["pageInfo"]["nextMarker"]


def expected_rows(
    catalog: FakeCatalog, export_tasks: Iterable[str] = ()
) -> dict[str, dict[str, dict[str, Any]]]:
    """What the database should hold, per kind and key, for what the fake serves now.

    Built from the fake's answers to the documented calls the sync makes (sets from their
    listings, a preset set's creation time from its describe call, versions from the custom or
    preset describe call, a failed task's reason from its detail call), so it follows what the
    API says, not how the fake stores it. ``export_tasks``:
    the tracked ``amemt-`` refs a sync with eval_result_export_task on reads (V2 call).
    """
    server = FakeServer(catalog, AK, SK)  # never started: only its answers are used
    out: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in SPECS}
    for system, action in ((False, "DescribeCustomModelSets"), (True, "DescribeSystemModelSets")):
        for item in _listing(server, action, {}):
            if "createTime" not in item:  # a preset listing item: its describe call answers it
                body = {"modelSetId": item["modelSetId"]}
                item = {**item, **_answers(server, model_sets.SET_ACTIONS[system], body)}
            row = model_sets.row(item, is_system=system)
            for column in model_sets.CARRIED:  # answered by no call of a full run: never learnt
                row.setdefault(column, None)
            out["model_set"][row["model_set_id"]] = row
            for model_id in row["model_ids"]:
                call = "DescribeSystemModel" if system else "DescribeModel"
                version = model_versions.row(_answers(server, call, {"modelId": model_id}))
                out["model_version"][model_id] = version
                if system:
                    continue
                export = model_exports.row(
                    model_id, _answers(server, "DescribeModelExportTask", {"modelId": model_id})
                )
                if export is not None:
                    out["model_export"][model_id] = export
    for item in _listing(server, "DescribeModelCompTasks", {}):
        if item.get("status") == "failed":
            detail = _answers(server, "DescribeModelCompTask", {"modelCompTaskId": item["id"]})
            item = {**item, **detail}
        row = compression_tasks.row(item)
        row.setdefault("failed_reason", None)
        out["compression_task"][row["task_id"]] = row
    for obj in catalog.snapshot()["eval_result_export"].values():
        row = eval_result_exports.row(obj)
        out["eval_result_export"][str(row["export_id"])] = row
    _lifecycle_rows(server, out)
    for ref in export_tasks:
        answer = _answers(server, "DescribeEvalResultExportTask", {"taskId": ref}, "/v2/eval")
        out["eval_result_export_task"][ref] = eval_result_export_tasks.row(answer)
    return out


def _lifecycle_rows(server: FakeServer, out: dict[str, dict[str, dict[str, Any]]]) -> None:
    """Fine-tuning, evaluation and services, as the fake answers their documented calls."""
    ft, ev, sv = "/v2/finetuning", "/v2/eval", "/v2/service"
    for job in _listing(server, "DescribeFineTuningJobs", {}, ft):
        out["fine_tuning_job"][job["jobId"]] = fine_tuning_jobs.row(job)
        for task in _listing(server, "DescribeFineTuningTasks", {"jobId": job["jobId"]}, ft):
            detail = _answers(server, "DescribeFineTuningTask", {"taskId": task["taskId"]}, ft)
            row = fine_tuning_tasks.row({**task, **detail}, detailed=True)
            out["fine_tuning_task"][task["taskId"]] = row
    for eval_type in ("manual", "auto"):
        for task in _listing(server, "DescribeEvalTasks", {"evalType": eval_type}, ev):
            detail = _answers(server, "DescribeEvalTask", {"taskId": task["taskId"]}, ev)
            row = eval_tasks.row({**task, **detail}, eval_type)
            out["eval_task"][task["taskId"]] = row
            if row["state"] in eval_tasks.FINAL:
                for unit in _answers(server, "DescribeEvalTaskReport",
                                     {"taskId": task["taskId"]}, ev):
                    unit_row = eval_task_reports.row(unit)
                    out["eval_task_report"][unit_row["unit_id"]] = unit_row
    for item in _listing(server, "DescribeServices", {}, sv):
        detail = _answers(server, "DescribeService", {"serviceId": item["serviceId"]}, sv)
        out["service"][item["serviceId"]] = services.row({**item, **detail}, False, True)
    for item in _answers(server, "DescribePresetServices", {}, sv)["serviceList"]:
        out["service"][item["serviceId"]] = services.row(item, True, True)


def stored_rows(
    db_url: str, current_only: bool = True, account: str = "default"
) -> dict[str, dict[str, dict[str, Any]]]:
    """The tracked columns of every stored entity of ``account``, per kind and key (as text)."""
    engine = db.create_engine_for(db_url)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    with engine.connect() as conn:
        for kind, spec in SPECS.items():
            stmt = select(spec.table).where(spec.table.c.account == account)
            if current_only:
                stmt = stmt.where(spec.table.c.deleted_at.is_(None))
            out[kind] = {
                str(r[spec.key]): {c: r[c] for c in (spec.key, *spec.tracked)}
                for r in conn.execute(stmt).mappings()
            }
    engine.dispose()
    return out


class FakeTTY(io.StringIO):
    """A stream that says it is a terminal, so the progress display draws on it."""

    def isatty(self) -> bool:
        return True


class Clock:
    """A clock the test moves by hand (``now``)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def table_rows(db_url: str, table: Any) -> list[dict[str, Any]]:
    """Every row of ``table`` (any table: ``sync_errors``, ``api_drift``...), as dicts."""
    engine = db.create_engine_for(db_url)
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(select(table)).mappings()]
    engine.dispose()
    return rows


def tracked_only(
    rows: dict[str, dict[str, dict[str, Any]]],
) -> dict[str, dict[str, dict[str, Any]]]:
    return {
        kind: {k: {c: v for c, v in row.items() if c != "raw"} for k, row in by_key.items()}
        for kind, by_key in rows.items()
    }


__all__ = [
    "AK",
    "SK",
    "Clock",
    "FakeTTY",
    "FaultPlan",
    "expected_rows",
    "fake_console",
    "options",
    "stored_rows",
    "sync",
    "table_rows",
    "tracked_only",
]
