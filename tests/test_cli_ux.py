"""Progress (TTY only), --quiet, the one summary line, JSON/text logs, secrets and the dry run."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner, Result

from catalog import logs, progress, redact
from catalog.cli import cli
from catalog.errors import ExitCode
from catalog.fake.catalog import FakeCatalog
from catalog.fake.server import FakeServer
from catalog.kinds import KINDS
from tests.helpers import AK, SK, Clock, FakeTTY, FaultPlan, fake_console, stored_rows


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    yield
    logs.setup("text")  # later tests must not inherit a JSON handler on a closed stream


def _env(server: FakeServer | None, db_url: str) -> dict[str, str | None]:
    return {
        "CATALOG_DATABASE_URL": db_url,
        "QIANFAN_ACCESS_KEY": AK if server else None,
        "QIANFAN_SECRET_KEY": SK if server else None,
        "QIANFAN_CONSOLE_API_BASE_URL": server.url if server else None,
        "CATALOG_CONFIG": None,
    }


def _sync(server: FakeServer, db_url: str, *args: str, group: tuple[str, ...] = ()) -> Result:
    argv = [*group, "sync", "--qps", "0", "--workers", "4", "--max-attempts", "3", *args]
    return CliRunner().invoke(cli, argv, env=_env(server, db_url))


# -- the progress display on its own ---------------------------------------------------------------


def test_progress_only_on_a_terminal_and_not_when_quiet() -> None:
    assert progress.Progress.for_stream(io.StringIO()) is None
    assert progress.Progress.for_stream(FakeTTY(), quiet=True) is None
    assert isinstance(progress.Progress.for_stream(FakeTTY()), progress.Progress)


def test_progress_line_counts_totals_rate_and_eta() -> None:
    clock = Clock()
    stream = FakeTTY()
    display = progress.Progress(stream, clock=clock, width=300)
    display("run_start", {"run_id": 1})
    display("total", {"kind": "model_set", "total": 1})  # the set listing has ended
    display("record", {"kind": "model_set", "row": {"model_ids": ["a", "b", "c", "d"]},
                       "api_calls": 2})
    clock.now += 2.0
    display("record", {"kind": "model_version", "row": {}, "api_calls": 6})
    line = display.line()
    assert "sets 1" in line
    assert "versions 1/4" in line  # total known from the set's modelIds
    assert "2.0 calls/s" in line  # 4 calls in the 2 s watched (2 were made before)
    assert "ETA 0:03" in line  # 3 versions left, two calls each, at 2 calls/s
    display("retry", {"call": "DescribeModel", "attempt": 1, "delay": 0.1, "error": "x"})
    assert "1 retries" in stream.getvalue()
    assert stream.getvalue().startswith("\r")
    display.clear()
    assert stream.getvalue().endswith("\r\x1b[K")


def test_progress_redraws_are_throttled() -> None:
    clock = Clock()
    stream = FakeTTY()
    display = progress.Progress(stream, clock=clock, width=200)
    for _ in range(50):
        display("record", {"kind": "compression_task"})
    assert stream.getvalue().count("\r") == 1  # same instant: drawn once
    clock.now += 1.0
    display("record", {"kind": "compression_task"})
    assert stream.getvalue().count("\r") == 2
    assert "tasks 51" in stream.getvalue()


# -- the sync command: TTY split, quiet, summary ---------------------------------------------------


def test_sync_not_a_tty_no_progress_one_summary_line(db_url: str) -> None:
    with fake_console() as server:
        result = _sync(server, db_url)
    assert result.exit_code == 0, result.output
    out = result.stdout.splitlines()
    assert len(out) == 1 and out[0].startswith("run 1 success:")
    assert "\r" not in result.stderr and "calls/s" not in result.stderr
    assert SK not in result.stdout + result.stderr


def test_sync_on_a_tty_draws_progress_and_clears_it(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tty = FakeTTY()
    monkeypatch.setattr(progress, "stderr_stream", lambda: tty)
    with fake_console() as server:
        result = _sync(server, db_url)
    assert result.exit_code == 0, result.output
    drawn = tty.getvalue()
    assert "calls/s" in drawn and "versions" in drawn
    assert drawn.endswith("\r\x1b[K")  # the summary starts on a clean line
    assert len(result.stdout.splitlines()) == 1  # summary on stdout either way


@pytest.mark.parametrize("tty", [False, True], ids=["cron", "terminal"])
def test_only_a_progress_display_is_told_of_each_answer(
    db_url: str, monkeypatch: pytest.MonkeyPatch, tty: bool
) -> None:
    """A run without a display (cron, a pipe, --quiet) hands its pages to the writer whole,
    without an event per answer that only a display counts: the command line's observer
    logs, and its logs ignored them, while the writer routed every answer one by one for it.
    A display still counts every answer the run recorded."""
    from catalog.writer import Writer

    told: list[str] = []
    call = progress.RunObserver.__call__

    def watched(self: progress.RunObserver, name: str, data: dict[str, Any]) -> None:
        told.append(name)
        call(self, name, data)

    one_by_one: list[str] = []
    route = Writer.route

    def routed(self: Writer, record: Any) -> None:
        one_by_one.append(record.kind)
        route(self, record)

    monkeypatch.setattr(progress.RunObserver, "__call__", watched)
    monkeypatch.setattr(Writer, "route", routed)
    if tty:
        monkeypatch.setattr(progress, "stderr_stream", lambda: FakeTTY())
    catalog = FakeCatalog.generate(seed=5, model_sets=2, comp_tasks=40, eval_exports=0)
    with fake_console(catalog) as server:
        result = _sync(server, db_url)
    assert result.exit_code == 0, result.output
    listed = len(catalog.keys("compression_task"))
    if tty:
        assert told.count("record") >= listed
        assert one_by_one.count("compression_task") >= listed  # a failed one twice: its detail
    else:
        assert "record" not in told and "run_start" in told
        assert one_by_one.count("compression_task") < listed  # only those a detail may need


def test_sync_quiet_on_a_tty_draws_nothing(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    tty = FakeTTY()
    monkeypatch.setattr(progress, "stderr_stream", lambda: tty)
    with fake_console() as server:
        result = _sync(server, db_url, group=("--quiet",))
    assert result.exit_code == 0, result.output
    assert tty.getvalue() == ""
    assert result.stdout.startswith("run 1 success:")
    assert result.stderr == ""  # quiet text mode: nothing routine on stderr


# -- logs -----------------------------------------------------------------------------------------


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_json_logs_parse_line_by_line_with_run_id_and_timestamps(db_url: str) -> None:
    plan = FaultPlan().once("DescribeModelCompTasks", "429", times=1, retry_after=0)
    plan.once("DescribeModel", "429", times=1, retry_after=0)
    # malformed on all three attempts of one version (one worker): it fails for good
    plan.once("DescribeModel", "malformed", times=3)
    with fake_console(faults=plan) as server:
        result = _sync(server, db_url, "--workers", "1", group=("--log-format", "json"))
    assert result.exit_code == 3, result.output  # partial: one entity failed
    records = _json_lines(result.stderr)  # every line is JSON, or this raises
    events = [r["event"] for r in records]
    # Retries may come first: on a new database the walk goes on while the schema is created.
    assert [e for e in events if e != "retry"][0] == "run_start" and events[-1] == "summary"
    assert events.count("retry") >= 2 and events.count("error") == 1
    for r in records:
        assert r["ts"].endswith("Z") and "T" in r["ts"]
        assert {"level", "message", "run_id"} <= set(r)
    after_start = [r for r in records if r["event"] != "retry" or r["run_id"] is not None]
    assert all(r["run_id"] == 1 for r in after_start if r["event"] != "retry")
    summary = records[-1]
    assert summary["status"] == "partial" and summary["errors"] == 1
    custom = [o for o in server.catalog.items("model_set") if o.get("source") != "System"]
    assert summary["counts"]["model_set_seen"] == len(custom)
    assert SK not in result.stderr and SK not in result.stdout
    assert len(result.stdout.splitlines()) == 1


#: A log line's ts: UTC, to the millisecond (README: log lines alone carry milliseconds).
TS_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_json_summary_is_the_summary_line_with_its_figures_even_when_quiet(db_url: str) -> None:
    """--quiet quiets text mode only: a JSON log keeps every event. The summary record's
    message is the line printed on stdout, and its fields are that line's figures."""
    plan = FaultPlan().once("DescribeModel", "429", times=1, retry_after=0)
    with fake_console(faults=plan) as server:
        result = _sync(server, db_url, group=("--quiet", "--log-format", "json"))
    assert result.exit_code == 0, result.output
    records = _json_lines(result.stderr)
    events = [r["event"] for r in records]
    assert "run_start" in events and "retry" in events and events[-1] == "summary"
    assert all(TS_MS.match(r["ts"]) for r in records), [r["ts"] for r in records]
    summary = records[-1]
    assert summary["message"] == result.stdout.strip()
    assert (summary["account"], summary["status"], summary["dry_run"], summary["errors"]) == (
        "default", "success", False, 0)
    assert summary["api_retries"] >= 1
    assert f"; {summary['api_calls']} API calls ({summary['api_retries']} retries" in (
        result.stdout)


def test_quiet_text_mode_keeps_each_entity_error(db_url: str) -> None:
    """--quiet leaves errors: a failed entity is one line on stderr, and the summary line
    counts it."""
    plan = FaultPlan().once("DescribeModel", "malformed", times=3)  # all three attempts
    with fake_console(faults=plan) as server:
        result = _sync(server, db_url, "--workers", "1", group=("--quiet",))
    assert result.exit_code == ExitCode.PARTIAL, result.output
    (line,) = result.stderr.splitlines()
    assert re.match(r"\S+Z error run 1: DescribeModel: ", line), line
    (summary,) = result.stdout.splitlines()
    assert summary.startswith("run 1 partial:") and summary.endswith("; 1 errors")


def test_a_dry_runs_json_lines_name_no_run(db_url: str) -> None:
    """A dry run's run row is rolled back (on SQLite the next run takes its id): no line of
    its log may name that id, or two runs' summaries would carry the same run_id."""
    with fake_console() as server:
        dry = _sync(server, db_url, "--dry-run", group=("--log-format", "json"))
    assert dry.exit_code == 0, dry.output
    records = _json_lines(dry.stderr)
    assert [records[0]["event"], records[-1]["event"]] == ["run_start", "summary"]
    assert records[-1]["dry_run"] is True
    assert [r for r in records if r["run_id"] is not None] == []


def test_text_logs_show_retries_not_the_summary_twice(db_url: str) -> None:
    plan = FaultPlan().once("DescribeModel", "429", times=1, retry_after=0)
    with fake_console(faults=plan) as server:
        result = _sync(server, db_url)
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert any("info run 1: run started" in line for line in lines)
    # On a new database the walk may retry before the run has its id (during the migration).
    assert any(re.search(r"warning( run 1)?: retry DescribeModel", line) for line in lines)
    assert "success:" not in result.stderr  # the summary is on stdout only
    with pytest.raises(json.JSONDecodeError):
        json.loads(lines[0])


def test_json_mode_fatal_error_is_one_json_line(tmp_path: Any) -> None:
    env = _env(None, f"sqlite:///{tmp_path}/c.db")
    result = CliRunner().invoke(cli, ["--log-format", "json", "sync"], env=env)
    assert result.exit_code == 4
    (record,) = _json_lines(result.stderr)
    assert record["event"] == "fatal" and record["exit_code"] == 4
    assert "missing credentials" in record["message"]


def test_secret_mask_filter_scrubs_messages_and_fields() -> None:
    stream = io.StringIO()
    logs.setup("json", stream=stream)
    redact.add("s3cr3t-value-xyz")
    logs.event(logging.ERROR, "error", "upstream said: bad key s3cr3t-value-xyz", 7,
               detail={"echo": ["s3cr3t-value-xyz"]})
    logs.logger().warning("plain %s", "s3cr3t-value-xyz")
    text = stream.getvalue()
    assert "s3cr3t-value-xyz" not in text
    first, second = _json_lines(text)
    assert first["message"] == "upstream said: bad key ****"
    assert first["detail"] == {"echo": ["****"]} and first["run_id"] == 7
    assert second["message"] == "plain ****"


def test_database_password_is_masked_in_logs() -> None:
    result = CliRunner().invoke(
        cli, ["--database-url", "postgresql+psycopg://u:hunter2-pw@127.0.0.1:1/x", "--log-format",
              "json", "runs"], env={"CATALOG_CONFIG": None})
    assert result.exit_code == ExitCode.DATABASE  # README: the database could not be reached
    assert "hunter2-pw" not in result.stderr + result.stdout
    [fatal] = _json_lines(result.stderr)
    assert fatal["event"] == "fatal" and fatal["exit_code"] == ExitCode.DATABASE
    assert fatal["message"].startswith("cannot connect to postgresql+psycopg://u:***@127.0.0.1:1/x:")


def test_connect_error_shows_the_url_as_given_not_the_application_name_added() -> None:
    own = "postgresql+psycopg://u@127.0.0.1:1/x?application_name=bi"
    for url, shown in [("postgresql://u@127.0.0.1:1/x", "postgresql://u@127.0.0.1:1/x:"),
                       (own, own + ":")]:
        result = CliRunner().invoke(cli, ["--database-url", url, "runs"],
                                    env={"CATALOG_CONFIG": None})
        assert result.exit_code == ExitCode.DATABASE
        assert f"cannot connect to {shown}" in result.stderr


# -- dry run --------------------------------------------------------------------------------------


def test_dry_run_prints_the_plan_and_writes_nothing(db_url: str) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "upgrade"], env=_env(None, db_url)).exit_code == 0
    with fake_console() as server:
        result = _sync(server, db_url, "--include-system", "--dry-run")
        expected = {k: len(server.catalog.keys(k)) for k in ("model_set", "model_version",
                                                             "compression_task")}
    assert result.exit_code == 0, result.output
    out = result.stdout.splitlines()
    assert out[0].startswith("planned changes (dry run")
    table = {line.split()[0]: line.split()[1:] for line in out[2:2 + len(KINDS)]}
    for kind, n in expected.items():
        seen, insert, update, delete = map(int, table[kind])
        assert (seen, insert, update, delete) == (n, n, 0, 0), kind
    assert out[-1].startswith("dry run (nothing written)")
    assert all(not rows for rows in stored_rows(db_url).values())
    runs = runner.invoke(cli, ["runs", "--format", "json"], env=_env(None, db_url))
    assert runs.exit_code == 0 and json.loads(runs.stdout) == []


def test_json_mode_other_libraries_warnings_are_json_lines_too() -> None:
    """psycopg logs 'error ignored terminating <Pipeline>' when the server goes away mid-run;
    it came out as a bare line between the JSON ones."""
    import subprocess
    import sys

    # A process of its own: pytest takes Python's warnings over inside a test.
    script = (
        "import logging, warnings\n"
        "from catalog import logs\n"
        "logs.setup('json')\n"
        "from catalog import redact; redact.add('s3cr3t-value-xyz')\n"
        "logging.getLogger('psycopg').warning('error ignored terminating %s', '<Pipeline>')\n"
        "logging.getLogger('some.lib').info('chatter that is not a warning')\n"
        "warnings.warn('deprecated s3cr3t-value-xyz', UserWarning, stacklevel=1)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=True)
    records = [json.loads(line) for line in done.stderr.splitlines()]  # every line is JSON
    assert len(records) == 2, done.stderr
    assert records[0]["logger"] == "psycopg" and records[0]["level"] == "warning"
    assert records[0]["message"] == "error ignored terminating <Pipeline>"
    assert records[1]["logger"] == "py.warnings" and "****" in records[1]["message"]
    assert "s3cr3t" not in done.stderr


def test_json_mode_fatal_line_names_the_run_that_failed(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from catalog import writer

    def reached(phase: str) -> None:
        if phase == "batch_written":
            raise ValueError("boom")

    monkeypatch.setattr(writer.killpoints, "reached", reached)
    with fake_console() as server:
        result = _sync(server, db_url, "--log-format", "json")
    assert result.exit_code == 1, result.output
    records = _json_lines(result.stderr)
    start = next(r for r in records if r["event"] == "run_start")
    fatal = records[-1]
    assert fatal["event"] == "fatal" and fatal["run_id"] == start["run_id"] is not None
    assert fatal["message"].startswith("unexpected ValueError: boom")


@pytest.mark.parametrize("content", ["workers = 0\n", "no_such_key = 1\n", "[sync\n"],
                         ids=["refused-value", "unknown-key", "not-toml"])
@pytest.mark.parametrize("how", ["flag", "flag=", "env"])
def test_json_mode_config_file_errors_are_a_fatal_json_line(
    tmp_path: Any, content: str, how: str
) -> None:
    """The file is read before the logs are set up (it may choose their format): its errors
    were a bare 'Error:' line in a JSON log."""
    config = tmp_path / "bad.toml"
    config.write_text(content.replace("workers", "[sync]\nworkers"), encoding="utf-8")
    fmt = {"flag": ["--log-format", "json"], "flag=": ["--log-format=json"], "env": []}[how]
    env = {**_env(None, f"sqlite:///{tmp_path}/c.db"), "CATALOG_LOG_FORMAT": "json"
           if how == "env" else None}
    result = CliRunner().invoke(cli, [*fmt, "--config", str(config), "sync"], env=env)
    assert result.exit_code == 4, result.output
    (record,) = _json_lines(result.stderr)
    assert record["event"] == "fatal" and record["exit_code"] == 4
    assert "bad.toml" in record["message"]
    assert not any(line.startswith("Error:") for line in result.stderr.splitlines())


def test_an_unexpected_error_is_one_masked_line_and_debug_adds_the_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An error no code path expected (a library's): exit 1, the first line of its message
    with the database password masked, and how to see more; --debug shows the traceback,
    masked too."""
    from catalog import settings

    password = "pw-unexpected-6f1c"  # registered by the run itself, from --database-url

    def broken(*_args: Any) -> None:
        raise ValueError(f"login with {password} refused\nsecond line of the driver's text")

    monkeypatch.setattr(settings, "effective", broken)
    argv = ["--database-url", f"postgresql+psycopg://u:{password}@127.0.0.1:1/x", "config",
            "show"]
    result = CliRunner().invoke(cli, argv, env={"CATALOG_CONFIG": None})
    assert result.exit_code == ExitCode.FAILED, result.output
    assert result.stderr.splitlines() == [
        "Error: unexpected ValueError: login with **** refused (run with --debug for details)"]
    debug = CliRunner().invoke(cli, ["--debug", *argv], env={"CATALOG_CONFIG": None})
    assert debug.exit_code == ExitCode.FAILED
    assert "Traceback" in debug.stderr and "ValueError: login with **** refused" in debug.stderr
    assert password not in debug.output


@pytest.mark.parametrize("raised", ["DatabaseError", "OperationalError"])
def test_a_database_error_is_exit_6_and_masks_the_password_it_quotes(
    monkeypatch: pytest.MonkeyPatch, raised: str
) -> None:
    """The project's DatabaseError and a driver's error escaping as SQLAlchemy's: exit 6 (not
    1), one line, and the database password masked though the message quotes it."""
    from sqlalchemy.exc import OperationalError

    from catalog import settings
    from catalog.errors import DatabaseError

    password = "pw-driver-quote-52ad"
    said = f"password {password} rejected"
    error: Exception = (DatabaseError(said) if raised == "DatabaseError"
                        else OperationalError("SELECT 1", {}, Exception(said)))

    def broken(*_args: Any) -> None:
        raise error

    monkeypatch.setattr(settings, "effective", broken)
    argv = ["--database-url", f"postgresql+psycopg://u:{password}@127.0.0.1:1/x", "config",
            "show"]
    result = CliRunner().invoke(cli, argv, env={"CATALOG_CONFIG": None})
    assert result.exit_code == ExitCode.DATABASE, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("Error: ") and line.endswith("password **** rejected")
    assert password not in result.output
