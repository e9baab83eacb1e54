"""Helpers shared by the sync-level tests: a fake console, options pointing at it, DB readers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import select

from catalog import db, normalize
from catalog.fake.catalog import FakeCatalog
from catalog.fake.faults import FaultPlan
from catalog.fake.server import FakeServer
from catalog.schema import SPECS
from catalog.sync import RunSummary, SyncOptions, run_sync

AK, SK = "test-ak", "test-secret-key-never-shown-0123456789"


@contextmanager
def fake_console(catalog: FakeCatalog | None = None, **kw: Any) -> Iterator[FakeServer]:
    catalog = catalog or FakeCatalog.generate(seed=1)
    with FakeServer(catalog, AK, SK, **kw) as server:
        yield server


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


def expected_rows(catalog: FakeCatalog) -> dict[str, dict[str, dict[str, Any]]]:
    """What the database should hold, per kind and key, for what the fake serves now."""
    snap = catalog.snapshot()
    out: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in SPECS}
    for obj in snap["model_set"].values():
        row = normalize.model_set_row(obj, is_system=obj.get("source") == "System")
        out["model_set"][row["model_set_id"]] = row
    for obj in snap["model_version"].values():
        row = normalize.model_version_row(obj)
        out["model_version"][row["model_id"]] = row
    for obj in snap["compression_task"].values():
        row = normalize.compression_task_row(obj)
        out["compression_task"][row["task_id"]] = row
    for model_id, obj in snap["model_export"].items():
        export = normalize.model_export_row(str(model_id), obj)
        if export is not None:
            out["model_export"][export["model_id"]] = export
    for obj in snap["eval_result_export"].values():
        row = normalize.eval_result_export_row(obj)
        out["eval_result_export"][str(row["export_id"])] = row
    return out


def stored_rows(db_url: str, current_only: bool = True) -> dict[str, dict[str, dict[str, Any]]]:
    """The tracked columns of every stored entity, per kind and key (as text)."""
    engine = db.create_engine_for(db_url)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    with engine.connect() as conn:
        for kind, spec in SPECS.items():
            stmt = select(spec.table)
            if current_only:
                stmt = stmt.where(spec.table.c.deleted_at.is_(None))
            out[kind] = {
                str(r[spec.key]): {c: r[c] for c in (spec.key, *spec.tracked)}
                for r in conn.execute(stmt).mappings()
            }
    engine.dispose()
    return out


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
    "FaultPlan",
    "expected_rows",
    "fake_console",
    "options",
    "stored_rows",
    "sync",
    "tracked_only",
]
