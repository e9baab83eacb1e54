"""PostgreSQL: a sync or `db upgrade` that must migrate, while a BI session holds a table open.

A session left 'idle in transaction' after reading ``sync_runs`` holds a lock that migration
0008's ALTER TABLE waits for. The wait used to have no bound: the sync printed nothing, a
SIGTERM did not end it, and every later reader of the table queued behind the ALTER. Now each
try gives way after ``locks.SCHEMA_TRY_MS``, readers go on between tries, a stop ends the tries,
and after ``locks.SCHEMA_WAIT`` the command fails (exit 6) naming the session.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Connection, create_engine, make_url, text

from catalog import db, locks
from catalog.cli import cli
from catalog.errors import DatabaseError, ExitCode, Interrupted, LockTimeout
from catalog.fake.catalog import FakeCatalog
from catalog.sync import run_sync
from tests._proc import cli_env, popen_cli, sync_argv
from tests.helpers import AK, SK, fake_console, options, sync

pytestmark = pytest.mark.postgresql

#: A revision whose next migration (0008) alters ``sync_runs``.
BEFORE_ALTER = "0007"


def _at_revision(url: str, revision: str) -> None:
    engine = db.create_engine_for(url)
    try:
        with engine.connect() as conn:
            db.upgrade(conn, revision)
    finally:
        engine.dispose()


def _revision(url: str) -> str | None:
    engine = db.create_engine_for(url)
    try:
        with engine.connect() as conn:
            return db.current_revision(conn)
    finally:
        engine.dispose()


@contextmanager
def idle_bi_session(url: str) -> Iterator[Connection]:
    """A BI tool's session: it read ``sync_runs`` and left its transaction open."""
    engine = create_engine(url, connect_args={"application_name": "bi-dashboard"})
    try:
        with engine.connect() as bi:
            bi.execute(text("SELECT count(*) FROM sync_runs")).scalar_one()
            yield bi  # idle in transaction until the test rolls it back
    finally:
        engine.dispose()


def test_a_migration_behind_an_idle_session_gives_way_and_readers_go_on(pg_url: str) -> None:
    _at_revision(pg_url, BEFORE_ALTER)
    engine = db.create_engine_for(pg_url)
    outcome: list[BaseException] = []
    with idle_bi_session(pg_url) as bi, engine.connect() as conn:
        bi_pid = bi.execute(text("SELECT pg_backend_pid()")).scalar_one()

        def migrate() -> None:
            try:
                db.ensure_schema(conn, migrate=True, wait=4.0)
            except BaseException as exc:  # noqa: BLE001 - judged by the test
                outcome.append(exc)

        started = time.monotonic()
        worker = threading.Thread(target=migrate)
        worker.start()
        time.sleep(1.5)  # the migration is trying
        # Another dashboard's query of the same table: served between two tries, not queued
        # behind the ALTER for as long as the idle session lasts.
        reader = db.create_engine_for(pg_url)
        try:
            with reader.connect() as other:
                other.execute(text("SET statement_timeout = 3000"))
                assert other.execute(text("SELECT count(*) FROM sync_runs")).scalar_one() == 0
        finally:
            reader.dispose()
        worker.join(timeout=30)
        elapsed = time.monotonic() - started
    engine.dispose()
    assert not worker.is_alive()
    (error,) = outcome
    assert isinstance(error, DatabaseError), error
    assert 4.0 <= elapsed < 15.0  # the wait, a last try and the message; not forever
    message = str(error)
    assert f"pid {bi_pid} (bi-dashboard, user " in message and "idle in transaction" in message
    assert "nothing was changed" in message and "pg_terminate_backend" in message
    assert _revision(pg_url) == BEFORE_ALTER  # rolled back whole


def test_a_stop_ends_the_wait_for_the_schema(pg_url: str) -> None:
    _at_revision(pg_url, BEFORE_ALTER)
    engine = db.create_engine_for(pg_url)
    stop = threading.Event()
    with idle_bi_session(pg_url), engine.connect() as conn:
        db.stop_waits(conn, stop)
        threading.Timer(1.0, stop.set).start()
        started = time.monotonic()
        with pytest.raises(Interrupted):
            db.ensure_schema(conn, migrate=True, wait=60.0)
        assert time.monotonic() - started < 5.0  # a try lasts a second at most
    engine.dispose()
    assert _revision(pg_url) == BEFORE_ALTER


def test_sync_and_db_upgrade_fail_in_one_line_then_migrate_once_the_session_ends(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _at_revision(pg_url, BEFORE_ALTER)
    monkeypatch.setattr(locks, "SCHEMA_WAIT", 2.0)
    env = {"QIANFAN_ACCESS_KEY": AK, "QIANFAN_SECRET_KEY": SK}
    with fake_console() as server:
        sync = ["--database-url", pg_url, "sync", "--base-url", server.url, "--qps", "0"]
        with idle_bi_session(pg_url) as bi:
            for args in (sync, ["--database-url", pg_url, "db", "upgrade"]):
                result = CliRunner().invoke(cli, args, env=env)
                assert result.exit_code == ExitCode.DATABASE, result.output
                (line,) = result.stderr.splitlines()[-1:]
                assert line.startswith("Error: the database schema could not be checked")
                assert "bi-dashboard" in line and "idle in transaction" in line
            assert _revision(pg_url) == BEFORE_ALTER
            bi.rollback()  # the dashboard's transaction ends
        result = CliRunner().invoke(cli, sync, env=env)
    assert result.exit_code == 0, result.output
    assert _revision(pg_url) == db.SCHEMA_HEAD


@pytest.mark.parametrize("start_at", [None, BEFORE_ALTER], ids=["empty", "at-0007"])
def test_two_db_upgrades_at_once_take_turns(pg_url: str, start_at: str | None) -> None:
    """`db upgrade` takes the schema lock as a sync does: run twice at once (or beside a sync
    that migrates) the second waits and finds the schema current. Without it one of them
    failed ("column ... already exists") every time."""
    if start_at is not None:
        _at_revision(pg_url, start_at)
    argv = [sys.executable, "-m", "catalog", "--database-url", pg_url, "db", "upgrade"]
    procs = [popen_cli(argv, env=cli_env()) for _ in range(2)]
    outcomes = [(proc.wait(timeout=60), proc.communicate()) for proc in procs]
    assert [code for code, _ in outcomes] == [0, 0], outcomes
    assert _revision(pg_url) == db.SCHEMA_HEAD


def _waits_on_a_lock(url: str, proc: Any, within: float = 30.0) -> bool:
    """Whether the catalog's session of ``proc`` is seen waiting for a lock (past its start and
    its first calls, trying the migration) before ``within`` s pass or it ends."""
    engine = create_engine(url)
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            with engine.connect() as conn:
                waiting = conn.execute(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND application_name = :name"), {"name": db.APPLICATION_NAME}).scalar_one()
            if waiting:
                return True
            time.sleep(0.1)
        return False
    finally:
        engine.dispose()


def test_sigterm_while_a_sync_waits_for_the_schema_is_exit_9_without_a_run(pg_url: str) -> None:
    _at_revision(pg_url, BEFORE_ALTER)
    with fake_console() as server, idle_bi_session(pg_url):
        proc = popen_cli(sync_argv(pg_url, server), env=cli_env())
        assert _waits_on_a_lock(pg_url, proc), proc.communicate()
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        _out, err = proc.communicate(timeout=30)
        stopped_in = time.monotonic() - started
    assert proc.returncode == ExitCode.INTERRUPTED, err
    assert stopped_in < 5.0  # a try is a second; a loaded machine's exit adds some
    assert "interrupted waiting for the schema's locks; nothing was written" in err
    assert _revision(pg_url) == BEFORE_ALTER


def test_the_catalogs_sessions_are_named_in_pg_stat_activity(pg_url: str) -> None:
    """So that a DBA, and the lock message above, can tell a sync's sessions from a BI tool's;
    a URL that names its own application keeps it."""
    for url, name in ((pg_url, db.APPLICATION_NAME), (f"{pg_url}?application_name=etl", "etl")):
        engine = db.create_engine_for(url)
        try:
            with engine.connect() as conn:
                shown = conn.execute(text("SELECT current_setting('application_name')"))
                assert shown.scalar_one() == name
        finally:
            engine.dispose()


def test_the_lock_message_names_no_session_of_another_database(pg_url: str) -> None:
    """Advisory locks conflict within one database: a sync migrating another catalog on the
    same server holds the schema lock there, and must not be named (with the advice to end it)
    for this one."""
    other_url = pg_url.rsplit("/", 1)[0] + "/postgres"
    other = create_engine(other_url, connect_args={"application_name": "other-catalog"})
    try:
        with other.connect() as elsewhere:
            elsewhere.execute(text("SELECT pg_advisory_xact_lock(:a, :b)"),
                              {"a": locks.SCHEMA_LOCK[0], "b": locks.SCHEMA_LOCK[1]})
            time.sleep(1.2)
            engine = db.create_engine_for(pg_url)
            try:
                with engine.connect() as conn:
                    message = locks._schema_locked(conn, 1.0)
            finally:
                engine.dispose()
    finally:
        other.dispose()
    assert "other-catalog" not in message and "Another sync may be migrating it" in message


def _database_setting(url: str, name: str, value: str) -> None:
    """``ALTER DATABASE ... SET``: what a DBA sets for every session of the catalog's database."""
    database = make_url(url).database
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            quoted = conn.dialect.identifier_preparer.quote(database)
            # a name from the fixture and a setting's name from this file: no user input
            conn.execute(text(f"ALTER DATABASE {quoted} SET {name} = '{value}'"))
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("server", "session"), [("300ms", "11s"), ("1h", "1h"), ("0", "0")], ids=str
)
def test_a_syncs_sessions_outlast_their_idle_transactions(
    pg_url: str, server: str, session: str
) -> None:
    """The writer waits for the API inside a transaction for up to ``--commit-interval``: its
    sessions raise a shorter ``idle_in_transaction_session_timeout`` to that and
    ``db.IDLE_SLACK``, and never lower a longer one or turn it on."""
    _database_setting(pg_url, "idle_in_transaction_session_timeout", server)
    for engine in (db.writer_engine(pg_url, 1.0), db.reader_engine(pg_url, 1.0)):
        try:
            with engine.connect() as conn:
                shown = conn.execute(text("SHOW idle_in_transaction_session_timeout"))
                assert shown.scalar_one() == session
        finally:
            engine.dispose()
    other = db.create_engine_for(pg_url)  # a read command's: the database's own setting
    try:
        with other.connect() as conn:
            shown = conn.execute(text("SHOW idle_in_transaction_session_timeout"))
            assert shown.scalar_one() == {"0": "0", "1h": "1h"}.get(server, server)
    finally:
        other.dispose()


def test_syncs_succeed_under_a_short_idle_in_transaction_timeout(pg_url: str) -> None:
    """A DBA's timeout of 300 ms (against BI sessions left open) ended every sync: the first
    in its migration, the next ones between two batches ("terminating connection due to
    idle-in-transaction timeout")."""
    _database_setting(pg_url, "idle_in_transaction_session_timeout", "300ms")
    catalog = FakeCatalog.generate(seed=1, model_sets=30, comp_tasks=600)
    with fake_console(catalog, latency=0.02) as server:
        first = sync(pg_url, server, workers=2)
        second = sync(pg_url, server, workers=2)
    assert (first.status, second.status) == ("success", "success")
    assert second.kinds["compression_task"].seen == 600


def test_a_sync_of_a_version_before_accounts_still_running_is_waited_for(pg_url: str) -> None:
    """Versions before accounts (schema before 0007) locked the database with one key, in
    another key space than the account's: an upgraded sync started while such a sync ran
    marked its live run ``aborted``, migrated and wrote beside it. It now waits for that lock
    while the schema is from before accounts."""
    _at_revision(pg_url, "0006")
    old = create_engine(pg_url, connect_args={"application_name": "qianfan-catalog-0.x"})
    try:
        with old.connect() as holder, fake_console(FakeCatalog.generate(seed=1)) as server:
            holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": locks.LEGACY_LOCK_KEY})
            holder.commit()
            with pytest.raises(LockTimeout, match="an earlier qianfan-catalog version is running"):
                sync(pg_url, server, lock_timeout=0.5)
            assert _revision(pg_url) == "0006"  # nothing migrated under the old sync
            holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": locks.LEGACY_LOCK_KEY})
            holder.commit()
            assert sync(pg_url, server, lock_timeout=0.5).status == "success"
    finally:
        old.dispose()
    assert _revision(pg_url) == db.SCHEMA_HEAD


def test_db_upgrade_waits_for_a_sync_of_a_version_before_accounts(pg_url: str) -> None:
    """`db upgrade` alone takes the older versions' lock as a sync does: migrated under such a
    sync, that run would go on writing rows of the old form into the new schema. It fails at
    once (exit 7, nothing migrated) by default, and waits up to ``--lock-timeout``."""
    _at_revision(pg_url, "0006")
    old = create_engine(pg_url, connect_args={"application_name": "qianfan-catalog-0.x"})
    runner = CliRunner()
    argv = ["--database-url", pg_url, "db", "upgrade"]
    try:
        with old.connect() as holder:
            holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": locks.LEGACY_LOCK_KEY})
            holder.commit()
            refused = runner.invoke(cli, argv)
            assert refused.exit_code == ExitCode.LOCKED, refused.output
            assert "an earlier qianfan-catalog version is running" in refused.output
            assert "Traceback" not in refused.output
            assert _revision(pg_url) == "0006"  # nothing migrated under the old sync

            def finish() -> None:  # the old sync ends a second later
                holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": locks.LEGACY_LOCK_KEY})
                holder.commit()

            timer = threading.Timer(1.0, finish)
            timer.start()
            started = time.monotonic()
            waited = runner.invoke(cli, [*argv, "--lock-timeout", "30"])
            timer.join()
            assert waited.exit_code == 0, waited.output
            assert time.monotonic() - started >= 0.9  # it waited for the old sync's end
    finally:
        old.dispose()
    assert _revision(pg_url) == db.SCHEMA_HEAD


def test_a_stop_ends_the_wait_for_a_sync_of_a_version_before_accounts(pg_url: str) -> None:
    """The wait for the older versions' lock ends at a signal (exit 9 at once, not at
    ``--lock-timeout``), and it shares ``--lock-timeout`` with the account's lock."""
    _at_revision(pg_url, "0006")
    old = create_engine(pg_url)
    stop = threading.Event()
    try:
        with old.connect() as holder, fake_console(FakeCatalog.generate(seed=1)) as server:
            holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": locks.LEGACY_LOCK_KEY})
            holder.commit()
            timer = threading.Timer(1.0, stop.set)
            timer.start()
            started = time.monotonic()
            with pytest.raises(Interrupted, match="waiting for another sync; nothing was written"):
                run_sync(options(pg_url, server, lock_timeout=60), stop=stop)
            assert time.monotonic() - started < 10
            timer.cancel()
    finally:
        old.dispose()
    assert _revision(pg_url) == "0006"


def test_an_endless_commit_interval_keeps_the_settings_largest_value(pg_url: str) -> None:
    """``--commit-interval`` takes any float, ``inf`` too: the idle timeout is then
    PostgreSQL's largest (an int of milliseconds), not an overflow."""
    _database_setting(pg_url, "idle_in_transaction_session_timeout", "300ms")
    engine = db.writer_engine(pg_url, float("inf"))
    try:
        with engine.connect() as conn:
            shown = conn.execute(text("SELECT setting FROM pg_settings WHERE name = :n"),
                                 {"n": "idle_in_transaction_session_timeout"}).scalar_one()
    finally:
        engine.dispose()
    assert int(shown) == 2**31 - 1
