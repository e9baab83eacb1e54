"""The command line: every command has help, the version, and the basic flows."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from catalog import __version__
from catalog.cli import cli
from catalog.fake.catalog import FakeCatalog
from tests.helpers import AK, SK, fake_console


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, command in group.commands.items():
        out.append((*prefix, name))
        if isinstance(command, click.Group):
            out.extend(_commands(command, (*prefix, name)))
    return out


@pytest.mark.parametrize("path", _commands(cli), ids=lambda p: " ".join(p))
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "-h"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    assert command.get_short_help_str().strip(), f"{path} has no one-line help"


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_sync_then_db_current(db_url: str) -> None:
    with fake_console(FakeCatalog.generate(seed=2, model_sets=2, comp_tasks=5)) as server:
        env = {
            "QIANFAN_ACCESS_KEY": AK,
            "QIANFAN_SECRET_KEY": SK,
            "QIANFAN_CONSOLE_API_BASE_URL": server.url,
        }
        result = CliRunner().invoke(cli, ["--database-url", db_url, "sync", "--qps", "0"], env=env)
    assert result.exit_code == 0, result.output
    assert "run 1 success" in result.output
    assert SK not in result.output
    result = CliRunner().invoke(cli, ["--database-url", db_url, "db", "current"])
    assert result.exit_code == 0
    assert ": current" in result.output


@pytest.mark.empty_database
def test_no_migrate_refuses_on_an_empty_database(db_url: str) -> None:
    with fake_console() as server:
        env = {
            "QIANFAN_ACCESS_KEY": AK,
            "QIANFAN_SECRET_KEY": SK,
            "QIANFAN_CONSOLE_API_BASE_URL": server.url,
        }
        result = CliRunner().invoke(
            cli, ["--database-url", db_url, "sync", "--no-migrate"], env=env
        )
    assert result.exit_code == 6
    assert "db upgrade" in result.output
    assert "Traceback" not in result.output


def test_demo(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]
    # The demo's database is its own: not the one CATALOG_DATABASE_URL names for real syncs.
    real = f"sqlite:///{tmp_path}/real.db"
    result = CliRunner().invoke(cli, ["demo", "--model-sets", "3"],
                                env={"CATALOG_DATABASE_URL": real, "CATALOG_CONFIG": None})
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.glob("*.db")) == ["qianfan-demo.db"]
    assert "run 1 success" in result.output
    assert "model_sets" in result.output


@pytest.mark.empty_database
def test_wrong_secret_on_an_empty_database_creates_nothing(db_url: str) -> None:
    from sqlalchemy import inspect

    from catalog import db

    with fake_console() as server:
        env = {"QIANFAN_ACCESS_KEY": AK, "QIANFAN_SECRET_KEY": "wrong-secret",
               "QIANFAN_CONSOLE_API_BASE_URL": server.url}
        result = CliRunner().invoke(cli, ["--database-url", db_url, "sync"], env=env)
    assert result.exit_code == 5, result.output
    assert "SignatureDoesNotMatch" in result.output
    engine = db.create_engine_for(db_url)
    with engine.connect() as conn:
        assert inspect(conn).get_table_names() == []  # not even migrated
    engine.dispose()


def test_new_eval_export_ids_are_resolved_side_by_side() -> None:
    """Each new id is asked once before the run, all at once: a barrier that every call must
    reach before any returns would break (and fail the test) if they went one by one."""
    import threading

    from catalog.errors import ApiError, ConfigError
    from catalog.walk import Walker

    refs = ["11", "12", "amemt-x13", "14"]
    barrier = threading.Barrier(len(refs), timeout=10)
    asked: list[dict[str, object]] = []

    class Client:
        def call_v1(self, path: str, body: dict[str, object]) -> dict[str, object]:
            asked.append(body)
            barrier.wait()
            if body["exportID"] == 14:
                raise ApiError("no such export", call=path, code="500002", status=200)
            return {"exportID": body["exportID"], "state": "Done"}

    def resolve(refs: list[str]) -> dict[tuple[str, str], dict[str, object]]:
        walker = Walker(Client(), lambda task, depth: None, lambda event: None)  # type: ignore[arg-type]
        return walker.resolve_eval_exports(refs, workers=8)

    with pytest.raises(ConfigError, match="unknown --eval-export-id '14'"):
        resolve(refs)
    assert sorted(str(b["exportID"]) for b in asked) == sorted(refs)
    refs.pop()
    barrier = threading.Barrier(len(refs), timeout=10)
    found = resolve(refs)
    assert [ref for _kind, ref in found] == refs
    assert found[("eval_result_export", "12")] == {"exportID": 12, "state": "Done"}


def test_unknown_eval_export_id_is_refused_and_not_remembered(db_url: str) -> None:
    from sqlalchemy import func, select

    from catalog import db
    from catalog.schema import sync_runs, tracked_eval_exports

    with fake_console() as server:
        env = {"QIANFAN_ACCESS_KEY": AK, "QIANFAN_SECRET_KEY": SK,
               "QIANFAN_CONSOLE_API_BASE_URL": server.url}
        runner = CliRunner()
        assert runner.invoke(cli, ["--database-url", db_url, "sync", "--qps", "0"],
                             env=env).exit_code == 0
        result = runner.invoke(
            cli, ["--database-url", db_url, "sync", "--eval-export-id", "987654"], env=env
        )
    assert result.exit_code == 4, result.output
    assert "unknown --eval-export-id '987654'" in result.output
    engine = db.create_engine_for(db_url)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(tracked_eval_exports)).scalar() == 0
        assert conn.execute(select(func.count()).select_from(sync_runs)).scalar() == 1
    engine.dispose()
