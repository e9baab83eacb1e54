"""A failed run's ``sync_runs`` row says what it left in the database, not what it tried."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from catalog import db, writer
from catalog.fake.catalog import FakeCatalog
from catalog.kinds import KINDS
from catalog.schema import changes, sync_runs
from tests.helpers import fake_console, sync, table_rows


def _fail_at_write(monkeypatch: pytest.MonkeyPatch, nth: int) -> None:
    """The ``nth`` batch written fails as a full disk does (SQLite's words)."""
    seen = {"n": 0}

    def reached(phase: str) -> None:
        if phase == "batch_written":
            seen["n"] += 1
            if seen["n"] == nth:
                raise OperationalError("INSERT ...", {}, Exception("database or disk is full"))

    monkeypatch.setattr(writer.killpoints, "reached", reached)


@pytest.mark.parametrize("committed", [False, True], ids=["nothing-committed", "some-committed"])
def test_a_run_failing_on_the_database_counts_only_what_it_committed(
    db_url: str, monkeypatch: pytest.MonkeyPatch, committed: bool
) -> None:
    catalog = FakeCatalog.generate(seed=41, model_sets=3, comp_tasks=40)
    with fake_console(catalog) as server:
        _fail_at_write(monkeypatch, nth=4)
        with pytest.raises(OperationalError):
            # An hour between commits: the batches before the failure wait uncommitted, and
            # are rolled back with it; every batch committed at once: they stay.
            sync(db_url, server, batch_size=5, commit_interval=0 if committed else 3600,
                 workers=1)
    (row,) = table_rows(db_url, sync_runs)
    assert row["status"] == "failed"
    assert row["error"] == "database error: database or disk is full"
    engine = db.create_engine_for(db_url)
    with engine.connect() as conn:
        by_kind = dict(conn.execute(
            select(changes.c.kind, func.count(changes.c.entity_id.distinct()))
            .where(changes.c.run_id == row["run_id"]).group_by(changes.c.kind)
        ).all())
    engine.dispose()
    claimed: dict[str, Any] = {
        kind: row[f"{kind}_inserted"] + row[f"{kind}_updated"] for kind in KINDS
    }
    assert claimed == {kind: by_kind.get(kind, 0) for kind in KINDS}
    assert (sum(claimed.values()) > 0) is committed


def test_a_database_failure_mid_run_is_exit_6_in_one_line(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from catalog.cli import cli
    from tests.helpers import AK, SK

    catalog = FakeCatalog.generate(seed=42, model_sets=2, comp_tasks=10)
    with fake_console(catalog) as server:
        _fail_at_write(monkeypatch, nth=2)
        result = CliRunner().invoke(
            cli, ["--database-url", f"sqlite:///{tmp_path}/c.db", "sync", "--qps", "0"],
            env={"QIANFAN_ACCESS_KEY": AK, "QIANFAN_SECRET_KEY": SK,
                 "QIANFAN_CONSOLE_API_BASE_URL": server.url, "CATALOG_CONFIG": None},
        )
    assert result.exit_code == 6, result.output
    assert result.stderr.splitlines()[-1] == "Error: database error: database or disk is full"
    assert "sqlalche.me" not in result.output


@pytest.mark.postgresql
def test_a_run_that_doubles_a_kinds_rows_leaves_its_tables_analysed(pg_url: str) -> None:
    """Without statistics PostgreSQL closed each batch's history rows by reading them all."""
    from sqlalchemy import text

    def analysed(db_url: str) -> dict[str, Any]:
        engine = db.create_engine_for(db_url)
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT relname, last_analyze FROM pg_stat_user_tables "
                "WHERE relname IN ('compression_tasks', 'compression_tasks_history', "
                "'model_sets')")).all()
        engine.dispose()
        return {str(name): when for name, when in rows}

    catalog = FakeCatalog.generate(seed=43, model_sets=2, comp_tasks=1200)
    with fake_console(catalog) as server:
        assert sync(pg_url, server).status == "success"
        first = analysed(pg_url)
        assert first["compression_tasks"] is not None
        assert first["compression_tasks_history"] is not None
        assert first["model_sets"] is None  # 2 sets: too few to be worth it
        assert sync(pg_url, server).status == "success"  # nothing new: not again
    assert analysed(pg_url) == first


def test_a_refused_mass_delete_keeps_the_runs_seen_counts(db_url: str) -> None:
    """The walk had ended: its seen counts are the store's, unchanged entities included (the
    committed rows alone read 0 for a run that wrote nothing)."""
    from catalog.errors import MassDeleteRefused

    catalog = FakeCatalog.generate(seed=44, model_sets=1, comp_tasks=20)
    with fake_console(catalog) as server:
        assert sync(db_url, server).status == "success"
        tasks = sorted(catalog.keys("compression_task"))
        for key in tasks[:15]:
            catalog.remove("compression_task", key)
        with pytest.raises(MassDeleteRefused):
            sync(db_url, server)
    refused = max(table_rows(db_url, sync_runs), key=lambda r: r["run_id"])
    assert refused["status"] == "failed"
    assert refused["compression_task_seen"] == 5
    assert refused["compression_task_deleted"] == 0
