"""Migrations: up from empty, no drift from the models (alembic check), and down again."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect

from catalog import db
from catalog.schema import metadata


@pytest.mark.empty_database
def test_upgrade_check_downgrade(db_url: str) -> None:
    engine = db.create_engine_for(db_url)
    with engine.connect() as conn:
        assert db.schema_state(conn) == "behind"
        db.upgrade(conn)
        assert db.schema_state(conn) == "current"
        tables = set(inspect(conn).get_table_names())
        assert set(metadata.tables) <= tables
        views = set(inspect(conn).get_view_names())
        assert {"current_model_sets", "current_compression_tasks"} <= views
        command.check(db.alembic_config(conn))  # raises if the models drifted from migrations
        db.downgrade(conn, "base")
        left = set(inspect(conn).get_table_names()) - {"alembic_version"}
        assert left == set()
        assert db.current_revision(conn) is None
    engine.dispose()


def test_a_catalog_with_data_goes_down_and_up_again(db_url: str) -> None:
    """Down to before the accounts (0007 rebuilds every table) and back, with a synced catalog:
    on SQLite the rebuild of ``sync_runs`` failed with its foreign keys on, part way, and left
    the file at no usable revision."""
    from sqlalchemy import func, select

    from catalog.schema import SPECS
    from tests.helpers import fake_console, sync

    with fake_console() as server:
        assert sync(db_url, server).status == "success"
    versions = SPECS["model_version"].table
    engine = db.create_engine_for(db_url)
    try:
        with engine.connect() as conn:
            stored = conn.execute(select(func.count()).select_from(versions)).scalar_one()
            db.downgrade(conn, "0006")
            assert db.current_revision(conn) == "0006"
            assert "lineage_model_versions" in inspect(conn).get_view_names()
            db.upgrade(conn)
            assert db.schema_state(conn) == "current"
            command.check(db.alembic_config(conn))
            assert conn.execute(select(func.count()).select_from(versions)).scalar_one() == stored
            if conn.dialect.name == "sqlite":
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1  # back on
    finally:
        engine.dispose()
    assert stored > 0


def test_two_db_upgrades_of_a_new_sqlite_file_take_turns(tmp_path: Path) -> None:
    """On SQLite `db upgrade` uses the writer's engine, whose transactions take the write lock
    at BEGIN: a second upgrade (or a sync creating the schema) waits and finds it current.
    With the ordinary engine one of two failed ("table ... already exists")."""
    import subprocess
    import sys

    from tests._proc import ROOT, cli_env

    url = f"sqlite:///{tmp_path / 'new.db'}"
    argv = [sys.executable, "-m", "catalog", "--database-url", url, "db", "upgrade"]
    procs = [subprocess.Popen(argv, env=cli_env(), cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outcomes = [(proc.wait(timeout=120), proc.communicate()) for proc in procs]
    assert [code for code, _ in outcomes] == [0, 0, 0], outcomes
    # One created the schema; each of the others says it found it current, having waited.
    said = sorted(out.strip().split(" (", 1)[1] for _, (out, _) in outcomes)
    assert said == ["already current: nothing to migrate)"] * 2 + [
        "created: the database held no catalog)"
    ], said
    engine = db.create_engine_for(url)
    with engine.connect() as conn:
        assert db.schema_state(conn) == "current"
    engine.dispose()


def test_the_known_head_is_alembics_head() -> None:
    """``db.SCHEMA_HEAD`` lets a current database skip Alembic; a new migration must move it."""
    assert db.head_revision() == db.SCHEMA_HEAD


def test_newer_schema_is_refused(db_url: str) -> None:
    from sqlalchemy import text

    from catalog.errors import DatabaseError

    engine = db.create_engine_for(db_url)
    with engine.connect() as conn:
        db.upgrade(conn)
        conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": "9999_future"})
        conn.commit()
        assert db.schema_state(conn) == "ahead"
        with pytest.raises(DatabaseError, match="newer"):
            db.ensure_schema(conn, migrate=True)
    engine.dispose()
