"""What a newcomer trips on (issue 13): the demo's own database, global options after the command,
read commands on a missing file, unknown ids, report names, auth hints, progress and time forms."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from catalog import logs, progress, queries
from catalog.cli import cli
from catalog.fake.catalog import FakeCatalog
from catalog.fake.server import FakeServer
from catalog.sync import run_sync
from tests.helpers import AK, SK, Clock, FakeTTY, fake_console, options, stored_rows

README = Path(__file__).resolve().parent.parent / "README.md"
GLOBAL_OPTIONS = ("--database-url", "--config", "--log-format", "--quiet", "--debug")
#: Any printed time: ISO 8601, UTC, ``Z``, to the second.
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)  # stray files land here, and no ./qianfan-catalog.toml is read
    yield
    logs.setup("text")


def _env(server: FakeServer | None = None, **extra: str | None) -> dict[str, str | None]:
    env: dict[str, str | None] = {
        "CATALOG_DATABASE_URL": None,
        "CATALOG_CONFIG": None,
        "QIANFAN_ACCESS_KEY": AK if server else None,
        "QIANFAN_SECRET_KEY": SK if server else None,
        "QIANFAN_CONSOLE_API_BASE_URL": server.url if server else None,
    }
    env.update(extra)
    return env


def run(*args: str, server: FakeServer | None = None, **env: str | None) -> Result:
    return CliRunner().invoke(cli, list(args), env=_env(server, **env))


def _small() -> FakeCatalog:
    return FakeCatalog.generate(seed=2, model_sets=2, comp_tasks=5, eval_exports=0)


def _runs(db_url: str) -> list[dict[str, Any]]:
    result = run("--database-url", db_url, "runs", "--format", "json")
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


# -- 1. the demo's own database -------------------------------------------------------------------


def test_demo_writes_its_own_file_not_the_default_database(tmp_path: Path) -> None:
    result = run("demo", "--model-sets", "2")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "qianfan-demo.db").is_file()
    assert not (tmp_path / "catalog.db").exists()
    assert "qianfan-demo.db" in result.stdout
    # Its table of what the database holds lines up, the longest table name included.
    counts = [line for line in result.stdout.splitlines() if line.startswith("  ")]
    assert len(counts) > 10 and len({line.index(" current rows") for line in counts
                                     if " current rows" in line}) == 1


def test_demo_ignores_the_real_database_from_env_but_not_an_explicit_flag(tmp_path: Path) -> None:
    real = f"sqlite:///{tmp_path}/real.db"
    result = run("demo", "--model-sets", "2", CATALOG_DATABASE_URL=real)
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "real.db").exists() and (tmp_path / "qianfan-demo.db").is_file()
    for argv in (["--database-url", "sqlite:///before.db", "demo"],
                 ["demo", "--database-url", "sqlite:///after.db"]):
        result = run(*argv, "--model-sets", "2")
        assert result.exit_code == 0, result.output
    assert (tmp_path / "before.db").is_file() and (tmp_path / "after.db").is_file()
    assert "after.db" in result.stdout


# -- 3. global options after the command ----------------------------------------------------------


def _leaf_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            out.extend(_leaf_commands(command, (*prefix, name)))
        elif name != "fake-server":
            out.append((*prefix, name))
    return out


@pytest.mark.parametrize("path", _leaf_commands(cli), ids=" ".join)
def test_global_options_show_in_each_commands_help(path: tuple[str, ...]) -> None:
    result = run(*path, "--help")
    assert result.exit_code == 0, result.output
    for option in GLOBAL_OPTIONS:
        assert option in result.stdout, (path, option)
    if path != ("demo",):
        assert "CATALOG_DATABASE_URL" in result.stdout


def test_sync_with_database_url_after_the_command(db_url: str) -> None:
    with fake_console(_small()) as server:
        result = run("sync", "--qps", "0", "--database-url", db_url, server=server)
    assert result.exit_code == 0, result.output
    assert "run 1 success" in result.stdout
    assert stored_rows(db_url)["model_set"]


def test_after_the_command_wins_over_before_and_over_env(tmp_path: Path) -> None:
    with fake_console(_small()) as server:
        assert run("--database-url", "sqlite:///a.db", "sync", "--qps", "0",
                   server=server).exit_code == 0
    missing = f"sqlite:///{tmp_path}/nope.db"
    # before the command: nope.db; after it: a.db, which wins
    result = run("--database-url", missing, "runs", "--database-url", "sqlite:///a.db")
    assert result.exit_code == 0, result.output
    assert "success" in result.stdout
    result = run("runs", "--database-url", "sqlite:///a.db", CATALOG_DATABASE_URL=missing)
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "nope.db").exists()


def test_log_format_quiet_and_debug_after_the_command(tmp_path: Path) -> None:
    result = run("sync", "--log-format", "json", "--database-url", "sqlite:///x.db")
    assert result.exit_code == 4  # no credentials
    record = json.loads(result.stderr.splitlines()[0])
    assert record["event"] == "fatal" and record["exit_code"] == 4
    with fake_console(_small()) as server:
        result = run("sync", "--qps", "0", "--quiet", "--database-url", "sqlite:///x.db",
                     server=server)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""  # --quiet: no "run started" line
    with fake_console(_small()) as server:
        result = run("sync", "--qps", "0", "--database-url", "sqlite:///y.db", server=server)
    assert "run started" in result.stderr  # without it there is one
    result = run("runs", "--debug", "--database-url", "postgresql+psycopg://u@127.0.0.1:1/x")
    assert result.exit_code == 6 and "Traceback" in result.stderr


def test_config_after_the_command_gives_values_below_env_and_flags(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('database_url = "sqlite:///from-file.db"\n[sync]\nworkers = 3\n')
    result = run("config", "show", "--config", str(cfg))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"config file: {cfg}")
    shown = {line.split(" = ")[0].strip(): line for line in result.stdout.splitlines()[1:]}
    assert "sqlite:///from-file.db" in shown["database_url"]
    assert f"file {cfg}" in shown["database_url"] and f"file {cfg}" in shown["sync workers"]
    assert len([n for n in shown if n.endswith("database_url")]) == 1  # listed once

    result = run("config", "show", "--config", str(cfg),
                 CATALOG_DATABASE_URL="sqlite:///from-env.db")
    shown = {line.split(" = ")[0].strip(): line for line in result.stdout.splitlines()[1:]}
    assert "from-env.db" in shown["database_url"] and "env CATALOG_DATABASE_URL" in (
        shown["database_url"])

    result = run("runs", "--config", str(cfg))  # the file's database, which does not exist
    assert result.exit_code == 6 and "from-file.db" in result.stderr


# -- 5. read commands on a missing file, unknown ids, report names --------------------------------


READ_COMMANDS = [
    ("runs",),
    ("changes",),
    ("as-of", "2024-01-01", "model_set"),
    ("history", "model_set", "am-x"),
    ("report", "exports"),
    ("report", "--html", "r.html"),
    ("db", "current"),
]


@pytest.mark.parametrize("args", READ_COMMANDS, ids=" ".join)
def test_read_commands_on_a_missing_sqlite_file_create_nothing(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    result = run("--database-url", f"sqlite:///{tmp_path}/missing.db", *args)
    assert result.exit_code == 6, result.output
    assert result.stderr.count("\n") == 1 and "does not exist" in result.stderr
    assert "missing.db" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_history_of_an_id_never_seen_is_an_error(db_url: str) -> None:
    with fake_console(_small()) as server:
        assert run("--database-url", db_url, "sync", "--qps", "0", "--include-system",
                   server=server).exit_code == 0
        known = server.catalog.keys("model_set")[0]
    result = run("--database-url", db_url, "history", "model_set", "am-never-seen")
    assert result.exit_code == 1, result.output
    assert result.stderr.strip() == "Error: no such model_set am-never-seen"
    assert result.stdout == ""
    result = run("--database-url", db_url, "history", "model_set", str(known))
    assert result.exit_code == 0 and str(known) in result.stdout


def test_report_without_a_name_lists_the_reports() -> None:
    result = run("report")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == list(queries.REPORT_NAMES)
    assert all(len(line.split()) > 3 and len(line) <= 80 for line in lines)  # a description
    assert not list(Path.cwd().iterdir())  # listing the reports opens no database


def test_html_report_section_is_recent_changes_not_latest(db_url: str, tmp_path: Path) -> None:
    assert run("--database-url", db_url, "db", "upgrade").exit_code == 0
    out = tmp_path / "r.html"
    result = run("--database-url", db_url, "report", "--html", str(out))
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    assert "Recent changes" in page and "Latest changes" not in page
    assert "no changes recorded yet" in page  # not "by the latest run": it spans runs


# -- 6. messages that stop short, the exit-code table ---------------------------------------------


def test_sync_rejected_credentials_name_the_variables_to_check(db_url: str) -> None:
    with fake_console(_small()) as server:
        result = run("--database-url", db_url, "sync", server=server,
                     QIANFAN_SECRET_KEY="wrong-secret-0000")
    assert result.exit_code == 5, result.output
    (line,) = result.stderr.splitlines()
    assert "SignatureDoesNotMatch" in line
    for name in ("QIANFAN_ACCESS_KEY", "QIANFAN_SECRET_KEY", "QIANFAN_CONSOLE_API_BASE_URL"):
        assert name in line


def _exit_code_table() -> dict[int, str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("### Exit codes", 1)[1].split("\n\n", 2)[1]
    return {int(m[1]): m[2] for m in re.finditer(r"^\| (\d+) \| (.*) \|$", section, re.M)}


def test_exit_code_table_matches_what_bad_values_exit_with(db_url: str) -> None:
    table = _exit_code_table()
    assert "--model-set" in table[4] and "--eval-export-id" in table[4]
    assert "value" not in table[2] or "click" in table[2]
    with fake_console(_small()) as server:
        unknown = run("--database-url", db_url, "sync", "--model-set", "no-such-set",
                      server=server)
        usage = run("--database-url", db_url, "sync", "--workers", "0", server=server)
    assert unknown.exit_code == 4 and usage.exit_code == 2
    assert "history" in table[1]  # documented: an id never seen


# -- 7. progress ----------------------------------------------------------------------------------




def test_progress_shows_no_eta_and_no_total_before_the_sets_are_counted() -> None:
    clock = Clock()
    display = progress.Progress(FakeTTY(), clock=clock, width=300)
    display("run_start", {"run_id": 1})
    for n in range(25):  # 25 of 200 sets described, their versions (nearly) all done
        display("record", {"kind": "model_set", "row": {"model_ids": [f"{n}a", f"{n}b"]}})
        display("record", {"kind": "model_version", "row": {}})
        if n:
            display("record", {"kind": "model_version", "row": {}})
    clock.now += 10
    line = display.line()
    assert "ETA" not in line
    assert "sets 25 " in line and "versions 49 " in line  # no total: 50 is not the total


def test_progress_shows_done_of_total_and_an_eta_once_it_means_something() -> None:
    """The sets' own progress gives no ETA (it read 0:00 with most of a run ahead): the ETA is
    the versions' calls left at the current pace, once their total is known."""
    clock = Clock()
    display = progress.Progress(FakeTTY(), clock=clock, width=300)
    display("run_start", {"run_id": 1, "kinds": list(progress.KINDS)})
    display("total", {"kind": "model_set", "total": 200})
    calls = 0
    for _ in range(199):  # all but one set described, at 10 calls/s
        calls += 1
        clock.now += 0.1
        display("record", {"kind": "model_set", "row": {"model_ids": ["a", "b"]},
                           "api_calls": calls})
    line = display.line()
    assert "sets 199/200" in line and "ETA" not in line  # the versions' total is not known
    calls += 1
    clock.now += 0.1
    display("record", {"kind": "model_set", "row": {"model_ids": ["a"]}, "api_calls": calls})
    assert "versions 0/399" in display.line()  # every set counted: the version total is known
    assert "ETA 1:20" in display.line()  # 399 versions, two calls each, at 10 calls/s
    for _ in range(100):  # the task listing takes the pace; no version is recorded meanwhile
        calls += 1
        clock.now += 0.1
        display("record", {"kind": "compression_task", "row": {}, "api_calls": calls})
    assert "ETA 1:20" in display.line()  # not longer because the versions stalled
    for _ in range(300):
        calls += 2
        clock.now += 0.2
        display("record", {"kind": "model_version", "row": {}, "api_calls": calls})
    assert "versions 300/399" in display.line() and "ETA 0:20" in display.line()


def test_progress_eta_counts_one_call_a_version_when_the_run_leaves_out_export_states() -> None:
    clock = Clock()
    display = progress.Progress(FakeTTY(), clock=clock, width=300)
    kinds = [k for k in progress.KINDS if k != "model_export"]
    display("run_start", {"run_id": 1, "kinds": kinds})
    display("total", {"kind": "model_set", "total": 1})
    display("record", {"kind": "model_set", "row": {"model_ids": ["v"] * 50}, "api_calls": 1})
    clock.now += 5.0
    display("record", {"kind": "model_version", "row": {}, "api_calls": 51})
    assert "versions 1/50" in display.line() and "ETA 0:05" in display.line()  # 49 at 10/s


def test_a_sync_tells_the_display_its_kinds(tmp_path: Path) -> None:
    """What the ETA's calls per version come from: the run's kinds, in its run_start event."""
    seen: list[tuple[str, dict[str, Any]]] = []
    kinds = ("model_set", "model_version")
    with fake_console(_small()) as server:
        run_sync(options(f"sqlite:///{tmp_path / 'k.db'}", server, kinds=kinds),
                 observer=lambda name, data: seen.append((name, data)))
    (start,) = [data for name, data in seen if name == "run_start"]
    display = progress.Progress(FakeTTY(), width=300)
    display("run_start", start)
    assert display.calls_per_version == 1


def test_readme_fake_server_example_lifts_the_rate_limit() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("## The fake console API", 1)[1].split("\n## ", 1)[0]
    example, after = section.split("```bash", 1)[1].split("```", 1)
    (command,) = [c for c in example.replace("\\\n", " ").splitlines() if " sync " in c]
    qps = float(re.search(r"--qps (\d+)", command)[1])  # type: ignore[index]
    assert qps == 0 or qps >= 100
    assert "--qps" in after  # and the text says why


# -- 8. one time form, Chromium in the README -----------------------------------------------------


def test_times_print_in_one_iso_form_in_table_csv_and_json(db_url: str) -> None:
    with fake_console(_small()) as server:
        assert run("--database-url", db_url, "sync", "--qps", "0", server=server).exit_code == 0
    (row,) = _runs(db_url)
    assert ISO_Z.match(row["started_at"]) and ISO_Z.match(row["finished_at"])
    result = run("--database-url", db_url, "changes", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert rows and all(ISO_Z.match(r["changed_at"]) for r in rows)
    result = run("--database-url", db_url, "runs")
    assert row["started_at"] in result.stdout


def test_a_printed_run_time_given_to_as_of_shows_what_that_run_left(db_url: str) -> None:
    import random

    catalog = _small()
    with fake_console(catalog) as server:
        for n in (1, 2):
            assert run("--database-url", db_url, "sync", "--qps", "0", "--include-system",
                       server=server).exit_code == 0
            key = catalog.keys("model_set")[0]
            if n == 1:
                catalog.change("model_set", key, random.Random(1))
    table = run("--database-url", db_url, "runs").stdout.splitlines()
    run_id, second = table[2].split()[:2]  # newest first, as printed
    assert run_id == "2"
    result = run("--database-url", db_url, "as-of", second, "model_set", "--format", "json")
    history = run("--database-url", db_url, "history", "model_set", str(key), "--format", "json")
    versions = json.loads(history.stdout)
    assert len(versions) == 2
    (state,) = [r for r in json.loads(result.stdout) if str(r["model_set_id"]) == str(key)]
    assert state == {k: v for k, v in versions[1].items() if k in state}


def test_readme_says_the_html_test_needs_chromium() -> None:
    text = README.read_text(encoding="utf-8")
    development = text.split("## Development", 1)[1]
    assert "Chromium" in development and "CI=true" in development


def test_progress_counts_a_failed_set_towards_the_sets_total() -> None:
    display = progress.Progress(FakeTTY(), clock=Clock(), width=300)
    display("total", {"kind": "model_set", "total": 2})
    display("record", {"kind": "model_set", "row": {"model_ids": ["a", "b", "c"]}})
    assert "versions 0 " in display.line()  # one set still to come: no version total yet
    display("error", {"kind": "model_set", "entity_id": "am-1", "call": "x", "message": "bad"})
    assert "versions 0/3" in display.line()


# -- 9. what the second newcomer walk found ------------------------------------------------------


def test_a_database_url_from_the_config_file_is_named_as_such(tmp_path: Path) -> None:
    (tmp_path / "qianfan-catalog.toml").write_text('database_url = "sqlite:///nothere.db"\n')
    result = run("runs")
    assert result.exit_code == 6
    assert "fix database_url in the config file qianfan-catalog.toml" in result.stderr
    assert "--database-url" not in result.stderr


def test_a_folder_for_a_database_file_is_named_as_a_folder(tmp_path: Path) -> None:
    (tmp_path / "adir").mkdir()
    result = run("--database-url", "sqlite:///adir", "runs")
    assert result.exit_code == 6 and "adir is a folder, not a database file" in result.stderr
    with fake_console(_small()) as server:
        result = run("--database-url", "sqlite:///adir", "sync", server=server)
    assert result.exit_code == 4 and "is a folder, not an SQLite database file" in result.stderr
    assert sorted(p.name for p in (tmp_path / "adir").iterdir()) == []


def test_a_schema_newer_than_the_code_asks_for_a_newer_qianfan_catalog(tmp_path: Path) -> None:
    from sqlalchemy import text

    from catalog import db

    url = f"sqlite:///{tmp_path / 'new.db'}"
    with fake_console(_small()) as server:
        assert run("--database-url", url, "sync", server=server).exit_code == 0
    engine = db.create_engine_for(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    for command in (["runs"], ["report", "exports"]):
        result = run("--database-url", url, *command)
        assert result.exit_code == 6
        (line,) = result.stderr.splitlines()
        assert "schema is at revision 9999, newer than this qianfan-catalog knows" in line
        assert "upgrade qianfan-catalog" in line and "db upgrade" not in line
    result = run("--database-url", url, "db", "current")
    assert result.exit_code == 6, result.output
    assert "(head " in result.stdout and result.stdout.rstrip().endswith(": ahead")
    assert "upgrade qianfan-catalog" in result.stderr


def test_check_without_keys_points_at_the_environment() -> None:
    result = run("--database-url", "sqlite:///c.db", "check")
    line = next(x for x in result.stdout.splitlines() if " credentials " in x)
    assert "QIANFAN_SECRET_KEY in the environment" in line and "secret_key in" not in line


def test_a_dry_runs_log_names_no_run(tmp_path: Path) -> None:
    with fake_console(_small()) as server:
        assert run("--database-url", "sqlite:///d.db", "sync", server=server).exit_code == 0
        result = run("--database-url", "sqlite:///d.db", "--log-format", "json", "sync",
                     "--dry-run", server=server)
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    start = next(e for e in events if e["event"] == "run_start")
    assert start.get("run_id") is None and "dry run started" in start["message"]
    assert [r["run_id"] for r in _runs("sqlite:///d.db")] == [1]


def test_a_refused_base_url_creates_no_database_and_an_empty_one_says_so(tmp_path: Path) -> None:
    result = run("--database-url", "sqlite:///new.db", "sync", "--base-url",
                 "http://127.0.0.1:1/v2", QIANFAN_ACCESS_KEY=AK, QIANFAN_SECRET_KEY=SK)
    assert result.exit_code == 4 and "which each call adds" in result.stderr
    assert not (tmp_path / "new.db").exists()
    # An empty file (left by a first sync of an older version that failed): read commands say
    # that no sync created the catalog, not that a schema is out of date.
    (tmp_path / "new.db").touch()
    result = run("--database-url", "sqlite:///new.db", "runs")
    assert result.exit_code == 6
    assert "holds no catalog yet (no sync has created it)" in result.stderr


@pytest.mark.parametrize("case", ["unreachable", "wrong-key", "unknown-set", "unknown-export"])
def test_a_first_sync_refused_by_the_api_creates_no_database_file(
    tmp_path: Path, case: str
) -> None:
    """Its first calls come before the new file is created: a refused first sync left an empty
    catalog.db that read commands then had to explain."""
    with fake_console(_small()) as server:
        args: list[str] = {
            "unreachable": ["--base-url", "http://127.0.0.1:1", "--max-attempts", "1"],
            "wrong-key": [],
            "unknown-set": ["--model-set", "no-such-set"],
            "unknown-export": ["--eval-export-id", "amemt-nosuchexport"],
        }[case]
        env = {"QIANFAN_SECRET_KEY": "wrong-secret"} if case == "wrong-key" else {}
        result = run("--database-url", "sqlite:///new.db", "sync", *args, server=server, **env)
        assert result.exit_code == (5 if case in ("unreachable", "wrong-key") else 4), \
            result.output
        # Only the account's lock file, taken before the calls (never removed: a sync waiting
        # on it must find the same file).
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("new.db")) == [
            "new.db.lock"]
        result = run("--database-url", "sqlite:///new.db", "runs")
        assert result.exit_code == 6 and "does not exist" in result.stderr
        # The same first sync with nothing wrong creates the file and succeeds.
        result = run("--database-url", "sqlite:///new.db", "sync", server=server)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "new.db").stat().st_size > 0


def test_record_creates_its_folder_only_once_the_database_is_open(tmp_path: Path) -> None:
    bad_db = f"sqlite:///{tmp_path / 'missing' / 'x.db'}"
    with fake_console(_small()) as server:
        result = run("--database-url", bad_db, "sync", "--record", str(tmp_path / "rec"),
                     server=server)
        assert result.exit_code == 4 and "missing for the SQLite database" in result.stderr
        assert not (tmp_path / "rec").exists()
        (tmp_path / "afile").write_text("")
        good_db = f"sqlite:///{tmp_path / 'x.db'}"
        result = run("--database-url", good_db, "sync", "--record",
                     str(tmp_path / "afile" / "rec"), server=server)
        assert result.exit_code == 4 and "afile is not a folder" in result.stderr
        assert not (tmp_path / "x.db").exists()  # refused before the database was opened
        result = run("--database-url", good_db, "sync", "--record",
                     str(tmp_path / "new" / "rec"), server=server)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "new" / "rec" / "calls.jsonl").stat().st_size > 0


@pytest.mark.parametrize("command", [["sync"], ["check"], ["eval", "track", "96"]])
def test_a_key_with_a_windows_line_end_is_named_and_never_printed(
    tmp_path: Path, command: list[str]
) -> None:
    """A CRLF env file left a carriage return on the key: requests refused the header with an
    error quoting it whole, signature included (sync: exit 1; check: a thread's traceback)."""
    with fake_console(_small()) as server:
        result = run("--database-url", "sqlite:///k.db", *command, server=server,
                     QIANFAN_ACCESS_KEY=AK + "\r")
    assert result.exit_code == 4, result.output
    assert "QIANFAN_ACCESS_KEY (or its flag) ends with a line break" in result.output
    assert "Traceback" not in result.output and "bce-auth-v1" not in result.output
    assert AK not in result.output and SK not in result.output
    assert not (tmp_path / "k.db").exists()


def test_a_key_with_a_space_inside_is_refused_with_where() -> None:
    from catalog.api.auth import key_problem

    assert key_problem(AK, SK) is None
    why = key_problem(AK, SK[:3] + " " + SK[3:])
    assert why is not None and "QIANFAN_SECRET_KEY" in why and "position 4" in why
    assert SK[:3] not in why
    assert "white space" in (key_problem(" " + AK, SK) or "")
    assert "non-ASCII" in (key_problem(AK + "é", SK) or "")


def test_an_unexpected_error_never_prints_a_signature_or_a_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from catalog import sync as sync_module

    header = f"bce-auth-v1/{AK}/2026-12-03T00:00:00Z/1800/host;x-bce-date/0123abcd"

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ValueError(f"Invalid header value b'{header}' for secret {SK}")

    monkeypatch.setattr(sync_module, "run_sync", broken)
    with fake_console(_small()) as server:
        for log_format in ("text", "json"):
            result = run("--log-format", log_format, "--database-url", "sqlite:///u.db", "sync",
                         server=server)
            assert result.exit_code == 1, result.output
            assert "unexpected ValueError: Invalid header value" in result.output
            assert "0123abcd" not in result.output and SK not in result.output


@pytest.mark.parametrize("command", [["sync"], ["runs"], ["check"], ["db", "current"]])
def test_a_port_that_is_not_a_number_is_a_bad_url_with_its_password_masked(
    command: list[str],
) -> None:
    """SQLAlchemy raises ValueError, not ArgumentError, for it: it was 'unexpected' (exit 1)."""
    url = "postgresql+psycopg://u:s3cr3t-pw@127.0.0.1:notaport/db"
    with fake_console(_small()) as server:
        result = run("--database-url", url, *command, server=server)
    assert result.exit_code == 4, result.output
    assert "cannot parse database URL 'postgresql+psycopg://u:***@127.0.0.1:notaport/db'" in \
        result.output
    assert "s3cr3t" not in result.output and "unexpected" not in result.output


def test_no_migrate_on_a_new_file_is_refused_before_any_call(tmp_path: Path) -> None:
    with fake_console(_small()) as server:
        result = run("--database-url", "sqlite:///new.db", "sync", "--no-migrate", server=server)
        assert server.call_count() == 0
    assert result.exit_code == 6, result.output
    assert "new.db does not exist" in result.stderr and "drop --no-migrate" in result.stderr
    assert "db upgrade` first" in result.stderr
    assert not (tmp_path / "new.db").exists()


def test_an_unparseable_url_masks_a_password_holding_an_at_sign() -> None:
    result = run("--database-url", "postgresql+psycopg://user:s3cr@t@host:5x32/db", "runs")
    assert result.exit_code == 4, result.output
    assert "'postgresql+psycopg://user:***@host:5x32/db'" in result.stderr
    assert "s3cr" not in result.output
