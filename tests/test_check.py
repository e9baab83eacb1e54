"""`check`: one line per check, a fix for each failure, exit 0 only when everything passes."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from catalog import logs
from catalog.cli import cli
from tests.helpers import AK, SK, fake_console


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    yield
    logs.setup("text")


def run_check(db_url: str, base_url: str, ak: str | None = AK, sk: str | None = SK) -> Result:
    env = {"CATALOG_DATABASE_URL": db_url, "QIANFAN_ACCESS_KEY": ak, "QIANFAN_SECRET_KEY": sk,
           "QIANFAN_CONSOLE_API_BASE_URL": base_url, "CATALOG_CONFIG": None}
    return CliRunner().invoke(cli, ["check"], env=env)


def lines(result: Result) -> dict[str, str]:
    return {line.split()[1]: line for line in result.stdout.splitlines()}


def upgrade(db_url: str) -> None:
    result = CliRunner().invoke(cli, ["--database-url", db_url, "db", "upgrade"],
                                env={"CATALOG_CONFIG": None})
    assert result.exit_code == 0, result.output


@contextmanager
def closed_port() -> Iterator[int]:
    """Bound and not listening while the block lasts: refused, and no other test's server can
    take the port meanwhile."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


def test_all_checks_pass(db_url: str) -> None:
    upgrade(db_url)
    with fake_console() as server:
        result = run_check(db_url, server.url)
    assert result.exit_code == 0, result.output
    got = lines(result)
    access = {"access"} if db_url.startswith("postgresql") else set()  # a role's privileges
    assert set(got) == {"api", "credentials", "database", "schema", "model_set",
                        "model_version", "compression_task", "model_export", *access}
    assert all(line.startswith("ok ") for line in got.values())
    # The details start in one column, after the longest name ("compression_task").
    starts = {len(line) - len(line[5 + len(name):].lstrip(" ")) for name, line in got.items()}
    assert starts == {5 + len("compression_task") + 1}
    assert "fix:" not in result.stdout
    assert SK not in result.output


@pytest.mark.postgresql
def test_a_read_only_role_fails_the_access_check_with_the_grant_to_give(pg_url: str) -> None:
    """A BI tool's role passed every check, and its sync then failed after the API's first
    calls. The access line says what the role lacks; reads stay the role's to do."""
    import uuid

    from sqlalchemy import create_engine, text

    upgrade(pg_url)
    role = f"bi_{uuid.uuid4().hex[:8]}"
    admin = create_engine(pg_url)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE ROLE {role} LOGIN"))
        conn.execute(text(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"))
    reader_url = pg_url.replace("://postgres@", f"://{role}@", 1)
    assert reader_url != pg_url
    try:
        with fake_console() as server:
            result = run_check(reader_url, server.url)
            assert result.exit_code != 0, result.output
            line = lines(result)["access"]
            assert line.startswith("FAIL") and f"role {role} lacks INSERT on " in line
            assert "UPDATE on " in line and "SELECT on" not in line
            assert f"GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO {role}" in line
            assert lines(result)["schema"].startswith("ok")  # reading works
            with admin.begin() as conn:
                conn.execute(text(f"GRANT INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO {role}"))
            result = run_check(reader_url, server.url)
            line = lines(result)["access"]  # the tables' grant alone: their ids' sequences
            assert line.startswith("FAIL") and "USAGE on " in line and "_seq" in line
            assert f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}" in line
            with admin.begin() as conn:
                conn.execute(text(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}"))
            result = run_check(reader_url, server.url)
            assert result.exit_code == 0, result.output
            assert lines(result)["access"] == (
                f"ok   access           role {role} may write the catalog")
            # What the check says is what a sync needs: it runs as that role.
            synced = CliRunner().invoke(
                cli, ["--database-url", reader_url, "sync", "--base-url", server.url, "--qps",
                      "0"], env={"QIANFAN_ACCESS_KEY": AK, "QIANFAN_SECRET_KEY": SK,
                                 "CATALOG_CONFIG": None})
            assert synced.exit_code == 0, synced.output
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP OWNED BY {role}"))
            conn.execute(text(f"DROP ROLE {role}"))
        admin.dispose()


def test_rejected_credentials_say_how_to_fix(db_url: str) -> None:
    upgrade(db_url)
    with fake_console() as server:
        result = run_check(db_url, server.url, sk="wrong-secret-key-value")
    assert result.exit_code == 5
    got = lines(result)
    assert got["api"].startswith("ok ")
    assert got["credentials"].startswith("FAIL") and "fix: check QIANFAN_ACCESS_KEY" in got[
        "credentials"]
    assert "wrong-secret-key-value" not in result.output


def test_unreachable_api(db_url: str) -> None:
    upgrade(db_url)
    with closed_port() as port:
        result = run_check(db_url, f"http://127.0.0.1:{port}")
    assert result.exit_code == 5
    got = lines(result)
    assert got["api"].startswith("FAIL") and "fix: check the network" in got["api"]
    assert got["credentials"].startswith("SKIP")
    assert got["database"].startswith("ok ") and got["schema"].startswith("ok ")


def test_a_web_server_at_the_base_url_is_the_api_failing_not_the_credentials(
    db_url: str,
) -> None:
    from tests._stub_http import Reply, StubServer

    upgrade(db_url)
    page = "<html><head><title>404 Not Found</title></head><body>nginx</body></html>"
    with StubServer([Reply(404, page, {"Content-Type": "text/html"})]) as server:
        result = run_check(db_url, server.url)
        asked = len(server.seen)
    assert result.exit_code == 5
    got = lines(result)
    assert got["api"].startswith("FAIL") and "'404 Not Found'" in got["api"]
    assert "fix: set --base-url" in got["api"] and "<" not in got["api"]
    assert got["credentials"].startswith("SKIP")
    assert asked == 1  # not retried: it would answer the same


def test_missing_credentials_is_a_config_failure(db_url: str) -> None:
    upgrade(db_url)
    result = run_check(db_url, "http://127.0.0.1:1", ak=None, sk=None)
    assert result.exit_code == 4
    assert "fix: set QIANFAN_ACCESS_KEY" in lines(result)["credentials"]


@pytest.mark.empty_database
def test_schema_behind_is_reported_with_the_upgrade_command(db_url: str) -> None:
    if db_url.startswith("sqlite"):
        Path(db_url.removeprefix("sqlite:///")).touch()  # an empty database file
    with fake_console() as server:
        result = run_check(db_url, server.url)
    assert result.exit_code == 6
    got = lines(result)
    assert got["database"].startswith("ok ")
    assert got["schema"].startswith("FAIL") and "qianfan-catalog db upgrade" in got["schema"]


def test_missing_sqlite_file_is_reported_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nope.db"
    with fake_console() as server:
        result = run_check(f"sqlite:///{path}", server.url)
    assert result.exit_code == 6
    assert "does not exist" in lines(result)["database"]
    assert not path.exists()


def test_an_unreadable_sqlite_file_gets_a_fix_about_files_not_servers(tmp_path: Path) -> None:
    path = tmp_path / "not-a-db.db"
    path.write_bytes(b"this is not an SQLite database, just text" * 100)
    with fake_console() as server:
        result = run_check(f"sqlite:///{path}", server.url)
    assert result.exit_code == 6, result.output
    line = lines(result)["database"]
    assert "file is not a database" in line
    assert "may read and write the file and its folder" in line and "server runs" not in line


def test_unreachable_postgresql_hides_the_password() -> None:
    with closed_port() as port, fake_console() as server:
        url = f"postgresql+psycopg://me:pw-secret-1@127.0.0.1:{port}/cat"
        result = run_check(url, server.url)
    assert result.exit_code == 6
    got = lines(result)
    assert got["database"].startswith("FAIL") and "fix: check that the server runs" in got[
        "database"]
    assert got["schema"].startswith("SKIP")
    assert "pw-secret-1" not in result.output


def test_a_hanging_name_lookup_is_bounded(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """requests' timeouts do not cover DNS; the check gives the whole API check a deadline."""
    import threading
    import time

    from catalog import check

    release = threading.Event()

    def slow_lookup(*args: object, **kwargs: object) -> list[object]:
        release.wait(30)  # a resolver that does not answer
        raise socket.gaierror("no answer")

    monkeypatch.setattr(socket, "getaddrinfo", slow_lookup)
    monkeypatch.setattr(check, "API_DEADLINE", 0.5)
    upgrade(sqlite_url)
    started = time.monotonic()
    result = run_check(sqlite_url, "https://qianfan.example.invalid")
    elapsed = time.monotonic() - started
    release.set()
    assert elapsed < 10, elapsed
    got = lines(result)
    assert got["api"].startswith("FAIL") and "within 0.5s" in got["api"]
    assert "fix: check DNS" in got["api"]
    assert got["credentials"].startswith("SKIP")
    assert got["database"].startswith("ok ")
    assert result.exit_code == 5


def test_a_web_server_at_the_base_url_is_not_blamed_on_a_model_set_or_an_export(
    db_url: str,
) -> None:
    from tests._stub_http import Reply, StubServer

    page = "<html><head><title>404 Not Found</title></head><body>nginx</body></html>"
    env = {"CATALOG_DATABASE_URL": db_url, "QIANFAN_ACCESS_KEY": AK, "QIANFAN_SECRET_KEY": SK,
           "CATALOG_CONFIG": None}
    with StubServer([Reply(404, page, {"Content-Type": "text/html"})]) as server:
        for args in (["sync", "--model-set", "foo"], ["eval", "track", "amemt-abc"]):
            result = CliRunner().invoke(cli, [*args, "--base-url", server.url], env=env)
            assert result.exit_code == 5, (args, result.output)
            assert "--base-url" in result.stderr and "unknown" not in result.stderr
