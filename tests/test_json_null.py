"""A JSON column without a value holds SQL NULL (``IS NULL`` finds it), on both databases, and
migration 0010 turns the JSON ``null`` of older runs into it without a change being recorded."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

from sqlalchemy import JSON, func, select, text

from catalog import db
from catalog.fake.catalog import FakeCatalog
from catalog.schema import metadata, model_sets
from tests.helpers import fake_console, sync

MIGRATION = Path(__file__).resolve().parent.parent / "migrations" / "versions" / "0010_json_null.py"


def _migration() -> ModuleType:
    spec = importlib.util.spec_from_file_location("m0010", MIGRATION)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _is_json_null(column: Any, dialect: str) -> Any:
    return (func.jsonb_typeof if dialect == "postgresql" else func.json_type)(column) == "null"


def _counts(db_url: str) -> dict[str, tuple[int, int]]:
    """Per ``table.column``: (rows with SQL NULL, rows with the JSON ``null``)."""
    engine = db.create_engine_for(db_url)
    out = {}
    with engine.connect() as conn:
        for table, columns in _migration().JSON_COLUMNS.items():
            for name in (table, f"{table}_history"):
                t = metadata.tables[name]
                for column in columns:
                    out[f"{name}.{column}"] = (
                        conn.execute(
                            select(func.count()).where(t.c[column].is_(None))
                        ).scalar_one(),
                        conn.execute(select(func.count()).where(
                            _is_json_null(t.c[column], engine.dialect.name)
                        )).scalar_one(),
                    )
    engine.dispose()
    return out


def test_json_without_a_value_is_sql_null_and_0010_converts_the_old(db_url: str) -> None:
    catalog = FakeCatalog.generate(seed=11, model_sets=4, system_sets=2, comp_tasks=12)
    with fake_console(catalog) as server:
        first = sync(db_url, server, include_system=True, qps=0)
        assert first.status == "success"
        counts = _counts(db_url)
        assert all(json_null == 0 for _, json_null in counts.values()), counts
        # The fake's preset sets have no labels: what a BI "is empty" filter looks for.
        empty = counts["model_sets.labels"][0]
        assert empty > 0

        engine = db.create_engine_for(db_url)
        labels = model_sets.c.labels
        with engine.connect() as conn:
            db.downgrade(conn, "0009")  # what a database written before 0010 holds
            some = conn.execute(
                select(model_sets.c.model_set_id).where(labels.is_not(None)).order_by(
                    model_sets.c.model_set_id)
            ).scalars().first()
            conn.execute(model_sets.update().where(labels.is_(None)).values(labels=JSON.NULL))
            one = model_sets.c.model_set_id == some
            conn.execute(model_sets.update().where(one).values(labels="null"))
            conn.commit()
            assert _counts(db_url)["model_sets.labels"] == (0, empty)
            db.upgrade(conn)
            assert conn.execute(select(labels).where(one)).scalar_one() == "null"  # a value
            conn.execute(model_sets.update().where(one).values(labels=None, raw_hash=""))
            conn.commit()
        engine.dispose()
        assert _counts(db_url)["model_sets.labels"] == (empty + 1, 0)
        second = sync(db_url, server, include_system=True, qps=0)
    assert second.status == "success"
    # Only the set whose labels were wiped by hand comes back changed: NULL vs JSON null is
    # not a change.
    assert sum(k.updated for k in second.kinds.values()) == 1
    assert second.kinds["model_set"].updated == 1
    assert _counts(db_url) == counts


def test_task_durations_in_the_report_are_exact_on_both_databases(db_url: str) -> None:
    """SQLite's julianday difference was off by tens of microseconds (12843.99997740984 s for
    12844 s); it is rounded to SQLite's millisecond now, as exact as PostgreSQL's interval."""
    import pytest

    from catalog.schema import compression_tasks as tasks

    with fake_console(FakeCatalog.generate(seed=12, model_sets=2, comp_tasks=30)) as server:
        assert sync(db_url, server, qps=0).status == "success"
    engine = db.create_engine_for(db_url)
    with engine.connect() as conn:
        durations: dict[tuple[str, str, str], list[float]] = {}
        for account, status, strategy, start, end in conn.execute(select(
            tasks.c.account, tasks.c.status, tasks.c.strategy, tasks.c.create_time,
            tasks.c.finish_time,
        ).where(tasks.c.deleted_at.is_(None))):
            if start is not None and end is not None:
                key = (account, status, strategy)
                durations.setdefault(key, []).append((end - start).total_seconds())
        report = {
            (a, s, g): avg for a, s, g, avg in conn.execute(text(
                "SELECT account, status, strategy, avg_duration_seconds "
                "FROM report_compression_tasks_by_status"
            )) if avg is not None
        }
    engine.dispose()
    assert durations and report.keys() == durations.keys()
    assert any(d != int(d) or d > 1000 for ds in durations.values() for d in ds)
    for key, ds in durations.items():
        assert report[key] == pytest.approx(sum(ds) / len(ds), abs=1e-6), key
