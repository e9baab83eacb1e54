"""Each bad input: one ``Error:`` line on stderr, its documented exit code, no traceback (unless
``--debug``), and no change to the database (every table dumped before and after).

The database has been synced once first, so "no change" is a real claim about a real catalog.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from catalog import db
from catalog.cli import cli
from catalog.errors import ExitCode
from catalog.fake.server import FakeServer
from tests._proc import cli_env, dump_db, popen_cli, run_cli, sync_argv
from tests.helpers import AK, SK, fake_console, sync


@contextmanager
def _closed_port() -> Iterator[int]:
    """A port nothing answers on, for as long as the block lasts: bound and not listening, so
    a connection is refused and no other test's server can take it meanwhile (a port freed at
    once was once taken by a parallel test's fake console, which the sync then reached)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


@contextmanager
def _synced(db_url: str) -> Iterator[FakeServer]:
    with fake_console() as server:
        sync(db_url, server)
        yield server


def _assert_one_error(result: object, code: ExitCode, *words: str) -> str:
    stderr: str = result.stderr  # type: ignore[attr-defined]
    assert result.returncode == code, stderr  # type: ignore[attr-defined]
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, stderr
    for word in words:
        assert word in errors[0], errors[0]
    assert SK not in stderr and SK not in result.stdout  # type: ignore[attr-defined]
    return errors[0]


CASES = {
    "missing credentials": (dict(access_key=None, secret_key=None), [], ExitCode.CONFIG,
                            ["QIANFAN_SECRET_KEY"]),
    "wrong secret key": (dict(secret_key="wrong-secret-0000"), [], ExitCode.API_UNREACHABLE,
                         ["signature"]),
    "wrong access key": (dict(access_key="nobody"), [], ExitCode.API_UNREACHABLE,
                         ["access key"]),
    "unknown model set": ({}, ["--model-set", "no-such-set"], ExitCode.CONFIG,
                          ["no-such-set"]),
    "bad eval export id": ({}, ["--eval-export-id", "amx-12;drop"], ExitCode.CONFIG,
                           ["--eval-export-id"]),
}


def test_bad_input_changes_nothing(db_url: str) -> None:
    """All cases of CASES against one synced database, the processes side by side (for speed)."""
    with _synced(db_url) as server:
        before = dump_db(db_url)
        procs = {
            # side by side they queue on the writer lock rather than fail with LOCKED
            case: popen_cli(sync_argv(db_url, server, "--lock-timeout", "60", *extra),
                            env=cli_env(**env_kw))
            for case, (env_kw, extra, _, _) in CASES.items()
        }
        for case, proc in procs.items():
            out, err = proc.communicate(timeout=60)
            result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
            _, _, code, words = CASES[case]
            _assert_one_error(result, code, *words)
    assert dump_db(db_url) == before


def test_unreachable_api_changes_nothing(db_url: str) -> None:
    with _synced(db_url), _closed_port() as port:
        before = dump_db(db_url)
        url = f"http://127.0.0.1:{port}"
        result = run_cli(sync_argv(db_url, url, "--max-attempts", "2"))
        _assert_one_error(result, ExitCode.API_UNREACHABLE, "cannot reach", url)
    assert dump_db(db_url) == before


def test_schema_newer_than_the_code_changes_nothing(db_url: str) -> None:
    with _synced(db_url) as server:
        engine = db.create_engine_for(db_url)
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
        engine.dispose()
        before = dump_db(db_url)
        result = run_cli(sync_argv(db_url, server))
        _assert_one_error(result, ExitCode.DATABASE, "newer", "upgrade qianfan-catalog")
        debug = run_cli(sync_argv(db_url, server, debug=True))
        assert debug.returncode == ExitCode.DATABASE and "Traceback" in debug.stderr
        assert SK not in debug.stderr
    assert dump_db(db_url) == before


@pytest.mark.parametrize(
    ("url", "code", "word"),
    [
        ("not a url", ExitCode.CONFIG, "cannot parse database URL"),
        ("mysql://u:pw@localhost/x", ExitCode.CONFIG, "unsupported database"),
        ("sqlite:////no/such/folder/x.db", ExitCode.CONFIG, "does not exist"),
    ],
)
def test_malformed_database_url(url: str, code: ExitCode, word: str) -> None:
    result = run_cli(sync_argv(url, "http://127.0.0.1:9"))
    _assert_one_error(result, code, word)


def test_unreachable_postgresql() -> None:
    with _closed_port() as port:
        url = f"postgresql+psycopg://user:hunter2-db-pass@127.0.0.1:{port}/catalog"
        result = run_cli(sync_argv(url, "http://127.0.0.1:9"))
    line = _assert_one_error(result, ExitCode.DATABASE, "cannot connect")
    assert "hunter2-db-pass" not in result.stderr and "***" in line


def test_debug_shows_the_traceback_only_when_asked(sqlite_url: str) -> None:
    with _closed_port() as port:
        argv = sync_argv(sqlite_url, f"http://127.0.0.1:{port}", "--max-attempts", "1")
        plain = run_cli(argv)
        assert plain.returncode == ExitCode.API_UNREACHABLE and "Traceback" not in plain.stderr
        debug = run_cli(sync_argv(sqlite_url, f"http://127.0.0.1:{port}", "--max-attempts", "1",
                                  debug=True))
    assert debug.returncode == ExitCode.API_UNREACHABLE and "Traceback" in debug.stderr
    assert SK not in debug.stderr


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--qps", "-1"),  # no ceiling at all, where 0 is the documented "no ceiling"
        ("--max-delete-share", "1.5"),
        ("--timeout", "0"),
        ("--batch-size", "0"),
        ("--lock-timeout", "-5"),
        ("--commit-interval", "-1"),
        ("--max-attempts", "0"),
        ("--workers", "65"),
    ],
)
def test_a_value_out_of_range_is_a_usage_error(tmp_path: Path, flag: str, value: str) -> None:
    """README, exit 2: a malformed value is refused as click refuses it, naming the flag,
    before anything is opened: no database file, no call."""
    database = tmp_path / "c.db"
    argv = ["--database-url", f"sqlite:///{database}", "sync", "--base-url",
            "http://127.0.0.1:9", "--max-attempts", "1", flag, value]  # the last one wins
    result = CliRunner().invoke(cli, argv, env={"CATALOG_CONFIG": None,
                                                "QIANFAN_ACCESS_KEY": AK,
                                                "QIANFAN_SECRET_KEY": SK})
    assert result.exit_code == ExitCode.USAGE, result.output
    assert f"Error: Invalid value for '{flag}': " in result.stderr
    assert "is not in the range" in result.stderr
    assert not database.exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize("status", [401, 403])
def test_a_gateways_bare_401_or_403_names_what_to_check(tmp_path: Path, status: int) -> None:
    """A 401/403 with no service error code (a gateway in front of the console) refuses the
    credentials as a BCE code would: exit 5, and the line names what to check."""
    from tests._stub_http import Reply, StubServer

    database = tmp_path / "c.db"
    with StubServer([Reply(status, None)]) as server:
        result = CliRunner().invoke(
            cli, ["--database-url", f"sqlite:///{database}", "sync", "--base-url", server.url],
            env={"CATALOG_CONFIG": None, "QIANFAN_ACCESS_KEY": AK, "QIANFAN_SECRET_KEY": SK})
    assert result.exit_code == ExitCode.API_UNREACHABLE, result.output
    (line,) = result.stderr.splitlines()
    assert f"(HTTP {status})" in line and "check QIANFAN_ACCESS_KEY / QIANFAN_SECRET_KEY" in line
    assert SK not in result.output and not database.exists()


@pytest.mark.parametrize("account", ["", "x" * 65, "prod\tdev"], ids=["empty", "long", "tab"])
def test_a_bad_account_name_is_a_usage_error(tmp_path: Path, account: str) -> None:
    """An empty, over-long or unprintable --account is refused before anything is opened (an
    empty one is not the default account)."""
    database = tmp_path / "c.db"
    result = CliRunner().invoke(
        cli, ["--database-url", f"sqlite:///{database}", "--account", account, "sync",
              "--base-url", "http://127.0.0.1:9"],
        env={"CATALOG_CONFIG": None, "QIANFAN_ACCESS_KEY": AK, "QIANFAN_SECRET_KEY": SK})
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "Invalid value for '--account': an account name is 1 to 64 printable" in (
        result.stderr)
    assert not list(tmp_path.iterdir())
