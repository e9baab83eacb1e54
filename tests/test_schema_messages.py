"""A database's state (no file, no catalog yet, an older or a newer schema) in the same words
from every command that meets it, each line saying what is wrong and how to fix it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import text

from catalog import db, logs
from catalog.cli import cli
from catalog.fake.catalog import FakeCatalog
from catalog.fake.server import FakeServer
from tests.helpers import AK, SK, fake_console

#: The first half of each state's line, as a user reads it, whichever command printed it.
WHAT = {
    "missing": "the database file {path} does not exist",
    "empty": "the database holds no catalog yet (no sync has created it)",
    "behind": "the database's schema is at revision 0010, older than this qianfan-catalog's "
    f"{db.SCHEMA_HEAD}",
    "ahead": "the database's schema is at revision 9999, newer than this qianfan-catalog knows "
    f"(its newest is {db.SCHEMA_HEAD})",
}
NO_MIGRATE_FIX = "run `qianfan-catalog db upgrade` first, or drop --no-migrate"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)  # no ./qianfan-catalog.toml is read
    yield
    logs.setup("text")


@pytest.fixture(scope="module")
def server() -> Iterator[FakeServer]:
    with fake_console(FakeCatalog.generate(seed=2, model_sets=1, comp_tasks=1)) as fake:
        yield fake


def run(server: FakeServer, url: str | None, *args: str) -> Result:
    """A command on the database at ``url`` (None: the config file's)."""
    env = {"CATALOG_DATABASE_URL": None, "CATALOG_CONFIG": None, "QIANFAN_ACCESS_KEY": AK,
           "QIANFAN_SECRET_KEY": SK, "QIANFAN_CONSOLE_API_BASE_URL": server.url}
    return CliRunner().invoke(cli, [*(["--database-url", url] if url else []), *args], env=env)


def error_line(result: Result, code: int) -> str:
    assert result.exit_code == code, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("Error: "), line
    return line.removeprefix("Error: ")


def check_line(result: Result, name: str) -> str:
    """``check``'s failure of ``name`` as the other commands print it: its detail, then its
    fix."""
    assert result.exit_code == 6, result.output
    (line,) = [x for x in result.stdout.splitlines() if x.split()[:2] == ["FAIL", name]]
    detail, fix = line.split(None, 2)[2].split(" -> fix: ")
    return f"{detail}: {fix}"


def database(tmp_path: Path, state: str) -> tuple[str, str]:
    """A database in ``state``: its URL, and the first half of its line."""
    path = tmp_path / "c.db"
    url = f"sqlite:///{path}"
    if state != "missing":
        path.touch()
    if state in ("behind", "ahead"):
        engine = db.create_engine_for(url)
        with engine.connect() as conn:
            db.upgrade(conn, "0010" if state == "behind" else "head")
            if state == "ahead":
                conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
                conn.commit()
        engine.dispose()
    return url, WHAT[state].format(path=path)


@pytest.mark.parametrize("state", list(WHAT))
def test_a_state_reads_the_same_from_every_command(
    tmp_path: Path, server: FakeServer, state: str
) -> None:
    url, what = database(tmp_path, state)
    line = error_line(run(server, url, "runs"), 6)
    assert line.startswith(what + ": "), line
    assert error_line(run(server, url, "report", "--html", "r.html"), 6) == line
    assert error_line(run(server, url, "eval", "untrack", "96"), 6) == line
    checked = run(server, url, "check")
    assert check_line(checked, "database" if state == "missing" else "schema") == line
    fix = line.removeprefix(what + ": ")
    if state == "ahead":  # only a newer qianfan-catalog can read it
        assert fix == "upgrade qianfan-catalog to a version that knows it"
        assert error_line(run(server, url, "sync"), 6) == line
        assert error_line(run(server, url, "db", "upgrade"), 6) == line
        assert error_line(run(server, url, "db", "current"), 6) == line
    elif state == "behind":
        assert "qianfan-catalog db upgrade" in fix
    else:
        assert fix.startswith("run `qianfan-catalog sync`"), fix
    assert not (tmp_path / "r.html").exists()
    assert (tmp_path / "c.db").exists() == (state != "missing")  # nothing created


@pytest.mark.parametrize("state", ["missing", "empty", "behind"])
def test_no_migrate_says_the_state_as_the_others_do_and_names_its_flag(
    tmp_path: Path, server: FakeServer, state: str
) -> None:
    url, what = database(tmp_path, state)
    where = f", or fix {db.URL_SETTING}" if state == "missing" else ""
    line = error_line(run(server, url, "sync", "--no-migrate"), 6)
    assert line == f"{what}: {NO_MIGRATE_FIX}{where}"
    assert error_line(run(server, url, "runs"), 6).startswith(what + ": ")


@pytest.mark.parametrize("state", ["behind", "ahead"])
def test_a_dry_run_says_the_state_as_the_others_do(
    tmp_path: Path, server: FakeServer, state: str
) -> None:
    """A dry run migrates nothing, so an older schema's fix is to upgrade it first; a newer
    one's is what every command says, with the same exit code (6, the database's)."""
    url, what = database(tmp_path, state)
    line = error_line(run(server, url, "sync", "--dry-run"), 6)
    if state == "ahead":
        assert line == error_line(run(server, url, "runs"), 6)
    else:
        fix = "run `qianfan-catalog db upgrade` first (a dry run migrates nothing)"
        assert line == f"{what}: {fix}"


def test_a_missing_file_named_by_the_config_file_is_fixed_there(
    tmp_path: Path, server: FakeServer
) -> None:
    (tmp_path / "qianfan-catalog.toml").write_text('database_url = "sqlite:///nothere.db"\n')
    line = error_line(run(server, None, "runs"), 6)
    assert line.endswith("or fix database_url in the config file qianfan-catalog.toml"), line
    assert check_line(run(server, None, "check"), "database") == line
    line = error_line(run(server, None, "sync", "--no-migrate"), 6)
    assert line.endswith("or fix database_url in the config file qianfan-catalog.toml"), line



def test_the_readme_quotes_the_fixes_as_they_are() -> None:
    readme = " ".join((Path(__file__).resolve().parent.parent / "README.md").read_text().split())
    for held_by in (None, "--no-migrate"):
        fix = db.schema_problem("behind", "0010", held_by).fix
        assert fix in readme, fix


@pytest.mark.parametrize(
    ("state", "said"),
    [
        ("empty", "(created: the database held no catalog)"),
        ("behind", "(migrated from 0010)"),
    ],
)
def test_db_upgrade_says_what_it_did(
    tmp_path: Path, server: FakeServer, state: str, said: str
) -> None:
    url, _ = database(tmp_path, state)
    first = run(server, url, "db", "upgrade")
    assert first.exit_code == 0, first.output
    assert first.stdout.strip() == f"schema at revision {db.SCHEMA_HEAD} {said}"
    again = run(server, url, "db", "upgrade")
    assert again.stdout.strip() == (
        f"schema at revision {db.SCHEMA_HEAD} (already current: nothing to migrate)"
    )


@pytest.mark.parametrize(
    ("state", "said"),
    [
        ("empty", "revision none (head {head}): behind, no catalog yet"),
        ("behind", "revision 0010 (head {head}): behind, migrations pending"),
    ],
)
def test_db_current_says_what_pending_means(
    tmp_path: Path, server: FakeServer, state: str, said: str
) -> None:
    url, _ = database(tmp_path, state)
    result = run(server, url, "db", "current")
    assert result.exit_code == 0, result.output  # pending migrations are the next sync's
    assert result.stdout.strip() == said.format(head=db.SCHEMA_HEAD) + (
        " (the next sync or `qianfan-catalog db upgrade` applies them)"
    )
