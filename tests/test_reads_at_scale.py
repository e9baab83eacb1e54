"""Reads that must not scan whole tables as history grows (migration 0012), and exports that
stream, on SQLite and PostgreSQL.

A year of daily runs gives about a million ``changes`` rows; a read that scans them takes a
minute on SQLite. The tables here are small, so these tests read the query plans: what a read
is planned to use does not depend on how many rows there are. SQLite has no statistics (the
project never runs ANALYZE), as in a real catalog; PostgreSQL's planner is told to avoid
sequential scans (``enable_seqscan = off``) after ANALYZE (as autovacuum would have run), so
an index that can serve the read is used and one that cannot is not.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Connection, event, text

from catalog import db, lineage, output, queries, runs
from catalog.cli import cli
from catalog.fake.catalog import FakeCatalog
from tests.helpers import fake_console, sync

#: The view as revisions 0007 to 0011 defined it: a correlated MAX per change row.
OLD_LATEST_CHANGES = """
    SELECT c.account, c.run_id, r.started_at AS run_started_at, r.status AS run_status,
           c.kind, c.entity_id, c.operation, c.field, c.old_value, c.new_value, c.change_id
      FROM changes c
      JOIN sync_runs r ON r.run_id = c.run_id
     WHERE c.run_id = (SELECT MAX(l.run_id) FROM sync_runs l
                        WHERE l.account = c.account AND l.status <> 'running')
"""


@pytest.fixture
def two_accounts(db_url: str) -> tuple[str, FakeCatalog]:
    """Account ``a`` synced twice with changes between, ``b`` once; then a run of ``a`` that is
    still running (its changes are not the latest finished run's)."""
    catalog = FakeCatalog.generate(seed=12, model_sets=3, comp_tasks=20, eval_exports=1)
    rng = random.Random(3)
    with fake_console(catalog) as server:
        assert sync(db_url, server, account="a").status == "success"
        assert sync(db_url, server, account="b").status == "success"
        for key in catalog.keys("compression_task")[:4]:
            catalog.change("compression_task", key, rng)
        assert sync(db_url, server, account="a").status == "success"
    engine = db.create_engine_for(db_url)
    try:
        with engine.connect() as conn:
            runs.start_run(conn, {}, "a")  # running: its account's latest finished run stands
            conn.commit()
    finally:
        engine.dispose()
    return db_url, catalog


def test_the_latest_changes_view_answers_as_before(two_accounts: tuple[str, FakeCatalog]) -> None:
    """The rewritten view (the latest finished run of each account, joined once) gives the rows
    the correlated one gave, for each account, when no run was killed (test_crash has those)."""
    engine = db.create_engine_for(two_accounts[0])
    try:
        with engine.connect() as conn:
            new = {tuple(r) for r in conn.execute(text("SELECT * FROM report_latest_changes"))}
            old = {tuple(r) for r in conn.execute(text(OLD_LATEST_CHANGES))}
    finally:
        engine.dispose()
    assert new == old
    assert {r[0] for r in new} == {"a", "b"}
    assert {r[3] for r in new} == {"success"}
    assert any(r[6] == "update" for r in new if r[0] == "a")  # a's second run, not its first


def _plans(url: str, read: Callable[[Connection], Any]) -> list[str]:
    """The plan of each statement ``read`` runs, as one text per statement."""
    engine = db.create_engine_for(url)
    statements: list[tuple[str, Any]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def keep(conn: Any, cursor: Any, statement: str, params: Any, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, params))

    try:
        with engine.connect() as conn:
            read(conn)
            event.remove(engine, "before_cursor_execute", keep)
            plans = []
            postgres = conn.dialect.name == "postgresql"
            if postgres:
                conn.exec_driver_sql("ANALYZE")
                conn.exec_driver_sql("SET enable_seqscan = off")
            for statement, params in statements:
                prefix = "EXPLAIN " if postgres else "EXPLAIN QUERY PLAN "
                rows = conn.exec_driver_sql(prefix + statement, params).fetchall()
                plans.append("\n".join(str(r[-1]) for r in rows))
            conn.rollback()
            return plans
    finally:
        engine.dispose()


def _uses(plans: list[str], index: str) -> bool:
    return any(index in plan for plan in plans)


def _scans(plans: list[str], table: str) -> bool:
    """Whether a plan reads all of ``table``: SQLite's ``SCAN table``, PostgreSQL's seq scan."""
    return any(
        line.strip().startswith(f"SCAN {table}") or f"Seq Scan on {table} " in line
        for plan in plans for line in plan.splitlines()
    )


def test_the_latest_changes_view_reads_changes_by_run(
    two_accounts: tuple[str, FakeCatalog],
) -> None:
    plans = _plans(two_accounts[0], lambda conn: queries.report(conn, "latest_changes"))
    assert _uses(plans, "ix_changes_run_id"), plans
    assert not any("CORRELATED" in plan or "SubPlan" in plan for plan in plans), plans


@pytest.mark.parametrize("account", [None, "a"])
def test_changes_by_time_or_kind_use_an_index(
    two_accounts: tuple[str, FakeCatalog], account: str | None
) -> None:
    since = dt.datetime.now(dt.UTC)  # after every run: what a cron report of "today" asks
    url = two_accounts[0]
    by_time = _plans(url, lambda conn: queries.changes_query(conn, since=since, account=account))
    assert _uses(by_time, "ix_changes_account_changed_at"), by_time
    by_kind = _plans(
        url, lambda conn: queries.changes_query(conn, kind="compression_task", account=account)
    )
    assert _uses(by_kind, "ix_changes_kind_entity_id"), by_kind
    by_run = _plans(url, lambda conn: queries.changes_query(conn, run_id=1, account=account))
    assert _uses(by_run, "ix_changes_run_id"), by_run


def test_one_entitys_history_and_changes_use_the_key_without_an_account(
    two_accounts: tuple[str, FakeCatalog],
) -> None:
    url, catalog = two_accounts
    task = str(catalog.keys("compression_task")[0])
    plans = _plans(url, lambda conn: queries.history(conn, "compression_task", task))
    assert _uses(plans, "ix_compression_tasks_history_key_valid_to"), plans
    assert not _scans(plans, "compression_tasks_history"), plans
    plans = _plans(url, lambda conn: queries.entity_changes(conn, "compression_task", task))
    assert _uses(plans, "ix_changes_kind_entity_id"), plans
    # And the answers are each account's: the filter by accounts that ran loses none.
    engine = db.create_engine_for(url)
    try:
        with engine.connect() as conn:
            _, rows = queries.history(conn, "compression_task", task)
            assert {r[0] for r in rows} == {"a", "b"}
    finally:
        engine.dispose()


def test_lineage_finds_a_versions_compression_tasks_by_index(
    two_accounts: tuple[str, FakeCatalog],
) -> None:
    """Now, that is: ``--as-of`` reads history, which has no such index (every change writes
    to it; one command's lookup does not pay for that)."""
    url, catalog = two_accounts
    version = str(catalog.items("compression_task")[0]["sourceModelId"])
    plans = _plans(url, lambda conn: lineage.lineage(conn, version, None, "a"))
    assert _uses(plans, "ix_compression_tasks_source_model_id"), plans
    assert _uses(plans, "ix_compression_tasks_model_id"), plans
    assert not _scans(plans, "compression_tasks"), plans


# -- exports that stream ------------------------------------------------------------------


def test_a_streaming_connection_reads_rows_as_they_are_written(
    two_accounts: tuple[str, FakeCatalog],
) -> None:
    """CSV and JSON exports print rows as they are read: on PostgreSQL through a server-side
    cursor, so neither the driver nor the catalog holds the whole answer."""
    engine = db.create_engine_for(two_accounts[0])
    try:
        with engine.connect() as conn:
            _, listed = queries.changes_query(conn)
            total = len(list(listed))
            conn.execution_options(stream_results=True, yield_per=2)
            columns, rows = queries.changes_query(conn)
            assert not isinstance(rows, list)
            pieces = output.iter_csv(columns, rows)
            assert next(pieces).startswith("run_id,account,")
            next(pieces)  # the first row written
            if conn.dialect.name == "postgresql":
                open_cursors = conn.execute(
                    text("SELECT count(*) FROM pg_cursors WHERE statement LIKE :s"),
                    {"s": "%FROM changes%"},
                )
                assert open_cursors.scalar_one() == 1  # the export's, declared on the server
            assert sum(1 for _ in pieces) == total - 1  # the rest were still to read
    finally:
        engine.dispose()


@pytest.mark.parametrize("fmt", ["csv", "json", "table"])
def test_streamed_exports_print_what_a_whole_answer_would(
    two_accounts: tuple[str, FakeCatalog], fmt: str
) -> None:
    url = two_accounts[0]
    engine = db.create_engine_for(url)
    try:
        with engine.connect() as conn:
            expected = {
                "changes": output.render(*queries.changes_query(conn), fmt=fmt),
                "report": output.render(*queries.report(conn, "latest_changes"), fmt=fmt),
            }
    finally:
        engine.dispose()
    runner = CliRunner()
    for name, argv in (("changes", ["changes"]), ("report", ["report", "latest_changes"])):
        result = runner.invoke(cli, ["--database-url", url, *argv, "--format", fmt])
        assert result.exit_code == 0, result.output
        assert result.stdout == expected[name] + "\n"
        if fmt == "json":
            assert json.loads(result.stdout)  # one document, not empty


def test_a_table_whose_spool_cannot_be_written_says_what_to_do(
    two_accounts: tuple[str, FakeCatalog], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """A large table spools its rows to a file in TMPDIR: one that cannot be written there is
    one line naming the directory and the ways out, not an unexpected error."""
    import tempfile

    monkeypatch.setattr(output, "SPOOL_BYTES", 100)  # every answer goes to the file
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "gone"))
    result = CliRunner().invoke(cli, ["--database-url", two_accounts[0], "changes"])
    assert result.exit_code == 1, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("Error: cannot keep the table's rows in a temporary file in ")
    assert str(tmp_path / "gone") in line and "set TMPDIR" in line, line
    csv = CliRunner().invoke(
        cli, ["--database-url", two_accounts[0], "changes", "--format", "csv"]
    )
    assert csv.exit_code == 0 and csv.stdout.startswith("run_id,account,")  # needs no spool
