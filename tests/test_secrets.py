"""The secret key never appears in output, logs, exceptions or the database.

Syncs that succeed, fail part-way, hit retries and fail outright are run both in-process (with
every log record captured at DEBUG and every exception's text kept) and as real CLI processes
(stdout and stderr, with and without ``--debug``); then every table is dumped. The secret must be
nowhere; the access key id appears in no table either (it is not needed there).
"""

from __future__ import annotations

import logging
import re

import pytest

from catalog.errors import ApiError, ExitCode
from catalog.fake.faults import FaultPlan
from catalog.sync import run_sync
from tests._proc import cli_env, dump_db, run_cli, run_statuses, sync_argv
from tests.helpers import AK, SK, fake_console, options, sync


def test_secret_key_appears_nowhere(db_url: str, caplog: pytest.LogCaptureFixture,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    plan = (FaultPlan().once("DescribeModel", "5xx", times=3).once("*", "429", retry_after=0)
            # Every export call, so some version surely fails on both attempts: with times=2
            # the two malformed answers could land on two versions whose retries then succeed.
            .once("DescribeModelExportTask", "malformed", times=1000))
    with fake_console(faults=plan) as server:
        summary = run_sync(options(db_url, server, max_attempts=2),
                           observer=lambda name, data: texts.append(f"{name} {data!r}"))
        assert summary.status == "partial" and summary.api_retries >= 1
        texts.append(repr(summary))
    with fake_console() as server:
        for kw, refusal in (({"secret_key": SK[::-1]}, "the request signature does not match"),
                            ({"access_key": "nobody"}, "the access key id does not exist")):
            with pytest.raises(ApiError) as info:
                sync(db_url, server, **kw)
            assert info.value.exit_code == ExitCode.API_UNREACHABLE
            assert str(info.value).startswith(f"DescribeCustomModelSets: {refusal}")
            texts += [str(info.value), repr(info.value), repr(info.value.__context__)]
        # Each CLI run must get as far as its own outcome: a summary line, or the one error.
        server.faults = FaultPlan().once("DescribeModel", "5xx", times=1000)  # every version
        partial = run_cli(sync_argv(db_url, server, debug=True))
        server.faults = None
        cli_runs = [
            (partial, ExitCode.PARTIAL, "run ", r"run \d+ partial: .*; [1-9]\d* errors$"),
            (run_cli(sync_argv(db_url, server, debug=True), env=cli_env(secret_key=SK[::-1] + SK)),
             ExitCode.API_UNREACHABLE, "Error: ",
             "Error: DescribeCustomModelSets: the request signature does not match "),
            (run_cli(sync_argv(db_url, server, "--secret-key", SK, debug=True), env=cli_env()),
             ExitCode.OK, "run ", r"run \d+ success: "),
            (run_cli(sync_argv(db_url, "http://127.0.0.1:9", "--max-attempts", "1", debug=True)),
             ExitCode.API_UNREACHABLE, "Error: ",
             "Error: DescribeCustomModelSets: cannot reach http://127.0.0.1:9"),
        ]
    for result, code, prefix, outcome in cli_runs:
        assert result.returncode == code, (result.returncode, result.stderr[-2000:])
        lines = [ln for ln in (result.stdout + result.stderr).splitlines() if ln.startswith(prefix)]
        assert len(lines) == 1 and re.match(outcome, lines[0]), (outcome, lines)
    assert "partial" in [s for _, s in run_statuses(db_url)]  # the faulty run wrote its row
    for result, *_ in cli_runs:
        texts += [result.stdout, result.stderr]
    captured = capsys.readouterr()
    texts += [captured.out, captured.err, caplog.text]
    texts += [repr(r.__dict__) for r in caplog.records]
    dump = repr(dump_db(db_url))
    for i, t in enumerate(texts):
        assert SK not in t, f"secret in output #{i}: {t[:300]}"
    assert SK not in dump and SK[::-1] not in dump
    assert AK not in dump  # the key id is not needed in the database


def test_tls_verification_is_on_by_default_and_reprs_hide_the_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from catalog.sync import SyncOptions, build_client

    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)  # else verify is that bundle's path
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    opts = SyncOptions(database_url="sqlite://", access_key=AK, secret_key=SK)
    assert opts.verify_tls is True
    assert SK not in repr(opts)
    client = build_client(opts)
    try:
        assert client._session.verify is True  # noqa: SLF001 - the session is the point
        assert SK not in repr(client) and SK not in repr(client._session.auth)  # noqa: SLF001
    finally:
        client.close()
