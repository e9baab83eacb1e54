"""The secret key never appears in output, logs, exceptions or the database.

Syncs that succeed, fail part-way, hit retries and fail outright are run both in-process (with
every log record captured at DEBUG and every exception's text kept) and as real CLI processes
(stdout and stderr, with and without ``--debug``); then every table is dumped. The secret must be
nowhere; the access key id appears in no table either (it is not needed there).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from catalog.cli import cli
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


# -- answers and settings that quote a credential (the 2026-12-03 secrets audit) ----------------

#: A signature as a request's Authorization header carries it, for answers that echo it.
ECHOED = f"bce-auth-v1/{AK}/2026-12-03T08:24:34Z/1800/content-type;host;x-bce-date/0e5c09a7d56"


def _echoing(monkeypatch: pytest.MonkeyPatch, actions: dict[str, int]) -> None:
    """The fake answers each of ``actions`` with an error (of that HTTP status) whose message
    quotes both keys and the request's signature, as a gateway echoing the request might."""
    from catalog.fake.server import FakeServer, V2Error

    answer = FakeServer.answer

    def echo(self: FakeServer, route: str, action: str, body: Any, fault: Any) -> Any:
        if action in actions:
            raise V2Error(actions[action], "SignatureDoesNotMatch" if actions[action] == 403
                          else "InvalidParameter",
                          f"bad request, key {AK} header Authorization: {ECHOED} secret {SK}")
        return answer(self, route, action, body, fault)

    monkeypatch.setattr(FakeServer, "answer", echo)


def _leaks(text: str) -> list[str]:
    return [s for s in (AK, SK, "bce-auth-v1/" + AK, "0e5c09a7d56") if s in text]


def test_api_errors_quoting_the_keys_are_stored_and_printed_masked(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error answer quoting the keys and the signature: the detail call's failure is stored
    (``sync_errors``) and the listing's ends the run (``sync_runs.error``), both masked, and
    ``runs``, ``check``, ``--debug``'s traceback and ``--record`` show no key either."""
    _echoing(monkeypatch, {"DescribeModel": 400})
    record = tmp_path / "rec"
    with fake_console() as server:
        partial = sync(db_url, server, max_attempts=1, record_dir=str(record))
        assert partial.status == "partial"
        _echoing(monkeypatch, {"DescribeModelCompTasks": 403})
        runner = CliRunner()
        env = {"QIANFAN_ACCESS_KEY": AK, "QIANFAN_SECRET_KEY": SK, "CATALOG_CONFIG": None}
        failed = runner.invoke(cli, ["--database-url", db_url, "--debug", "sync", "--base-url",
                                     server.url, "--qps", "0", "--max-attempts", "1"], env=env)
        assert failed.exit_code == ExitCode.FAILED, failed.output  # a listing failed mid-run
        _echoing(monkeypatch, {"DescribeCustomModelSets": 401})
        checked = runner.invoke(cli, ["--database-url", db_url, "check", "--base-url", server.url],
                                env=env)
    assert "credentials" in checked.stdout and "SignatureDoesNotMatch" not in _leaks(checked.stdout)
    assert checked.exit_code != 0
    shown = runner.invoke(cli, ["--database-url", db_url, "runs", "--format", "json"],
                          env={"CATALOG_CONFIG": None})
    dump = repr(dump_db(db_url))
    assert "Authorization: bce-auth-v1/****" in dump  # the message is kept, the secret is not
    assert "Traceback" in failed.stderr  # --debug printed it, scrubbed
    recorded = (record / "calls.jsonl").read_text(encoding="utf-8")
    for where, text in [("database", dump), ("runs", shown.stdout), ("check", checked.stdout),
                        ("--debug", failed.stdout + failed.stderr), ("--record", recorded)]:
        assert _leaks(text) == [], (where, _leaks(text))


def test_a_signed_link_anywhere_in_an_answer_is_never_stored(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pre-signed link in any field (here a version's ``sourceInfo``, a typed column) loses
    its query before the answer is hashed or stored; signed afresh, it is no change."""
    from catalog.fake.server import FakeServer

    answer = FakeServer.answer
    signature = {"n": 0}

    def signed(self: FakeServer, route: str, action: str, body: Any, fault: Any) -> Any:
        result = answer(self, route, action, body, fault)
        if action == "DescribeModel":
            signature["n"] += 1
            result.setdefault("sourceInfo", {})["importModelVersionBosUrl"] = (
                "https://bj.bcebos.com/b/m.tar?authorization=bce-auth-v1%2F"
                f"{AK}%2F2026-12-03T00%3A00%3A00Z%2F3600%2Fhost%2F{signature['n']:032x}"
            )
        return result

    monkeypatch.setattr(FakeServer, "answer", signed)
    with fake_console() as server:
        first = sync(db_url, server)
        again = sync(db_url, server)
    assert first.status == again.status == "success"
    assert signature["n"] > 0 and first.kinds["model_version"].inserted > 0
    assert sum(c.updated + c.inserted for c in again.kinds.values()) == 0  # signed afresh
    dump = repr(dump_db(db_url))
    assert "https://bj.bcebos.com/b/m.tar" in dump
    assert "authorization" not in dump.lower() and "bce-auth-v1" not in dump


def test_database_passwords_are_masked_wherever_the_url_holds_them(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"CATALOG_CONFIG": None}
    in_query = "postgresql+psycopg://cat@127.0.0.1:1/catalog?password=pwLEAKCANARY"
    for argv in (["runs"], ["config", "show"], ["db", "current"]):
        result = runner.invoke(cli, ["--database-url", in_query, *argv], env=env)
        assert "pwLEAKCANARY" not in result.output, argv
    assert "password=***" in runner.invoke(cli, ["--database-url", in_query, "runs"],
                                           env=env).stderr
    # Unparseable (a port that is no number), with a '/' in the password.
    broken = "postgresql+psycopg://cat:pw/LEAKCANARY@127.0.0.1:5432x/catalog"
    result = runner.invoke(cli, ["--database-url", broken, "runs"], env=env)
    assert result.exit_code == ExitCode.CONFIG and "LEAKCANARY" not in result.output
    assert "postgresql+psycopg://cat:***@127.0.0.1:5432x/catalog" in result.stderr


def test_help_and_config_errors_never_show_a_key_or_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        'database-url = "postgresql+psycopg://cat:pwLEAKCANARY@127.0.0.1:1/catalog"\n'
        'access-key = "AKLEAKCANARY1234"\nsecret-key = "SKLEAKCANARY5678"\n'
        'base-url = "http://gw:pwLEAKCANARY@127.0.0.1:1"\n', encoding="utf-8")
    runner = CliRunner()
    env = {"CATALOG_CONFIG": str(config)}
    for argv in (["--help"], ["sync", "--help"], ["fake-server", "--help"], ["check", "--help"],
                 ["config", "show"]):
        out = runner.invoke(cli, argv, env=env).output
        assert "LEAKCANARY" not in out and "SKLEAK" not in out, (argv, out)
    # The keys shown as config show shows them: the access key's first characters only.
    assert "AKLE****" in runner.invoke(cli, ["fake-server", "--help"], env=env).output
    # A user or password in --base-url is refused before anything is sent or stored.
    db_file = tmp_path / "x.db"
    result = runner.invoke(cli, ["--database-url", f"sqlite:///{db_file}", "sync"], env=env)
    assert result.exit_code == ExitCode.CONFIG, result.output
    assert "user name or password" in result.stderr and "LEAKCANARY" not in result.output
    assert not db_file.exists()
    # A key pasted where its variable's name belongs is not echoed; a variable's name is.
    for name, shown in (("SKLEAKCANARY5678", False), ("PROD_QIANFAN_SK", True)):
        config.write_text(f'[accounts.prod]\nsecret-key-env = "{name}"\n', encoding="utf-8")
        monkeypatch.delenv(name, raising=False)
        result = runner.invoke(cli, ["--account", "prod", "sync"],
                               env={**env, "QIANFAN_ACCESS_KEY": "ak-12345"})
        assert result.exit_code == ExitCode.CONFIG and "is not set" in result.stderr
        assert (name in result.output) is shown, result.output
        listed = runner.invoke(cli, ["--account", "prod", "config", "show"], env=env).output
        assert (name in listed) is shown, listed
    # A refused value of a key option is not echoed either.
    config.write_text('access-key = ["AKLEAKCANARY1234"]\n', encoding="utf-8")
    result = runner.invoke(cli, ["sync"], env={**env, "QIANFAN_SECRET_KEY": "sk-12345"})
    assert result.exit_code == ExitCode.CONFIG and "access-key" in result.stderr, result.output
    assert "LEAKCANARY" not in result.output
    # A user name alone in --base-url may be a token: masked too.
    config.write_text('base-url = "https://ghp_T0kenLEAKCANARY@api.example"\n', encoding="utf-8")
    for argv in (["sync", "--help"], ["config", "show"]):
        assert "LEAKCANARY" not in runner.invoke(cli, argv, env=env).output, argv


def test_an_api_error_scrubs_every_field_it_prints() -> None:
    from catalog import redact

    redact.add(AK, SK)
    err = ApiError(f"denied {SK}", call="DescribeModel", code=f"bce-auth-v1/{AK}/x",
                   status=403, request_id=f"rid-{AK}")
    assert _leaks(str(err)) == [] and _leaks(err.code + err.request_id) == []


# -- redact's rules one by one (the 2026-12-03 mutation audit: each was changed unseen) ---------


def test_a_secret_holding_another_is_masked_whole() -> None:
    """Longest first: masking the shorter secret first left the longer one's tail shown."""
    from catalog import redact

    short, long = "pwPREFIXcanary", "pwPREFIXcanary-AND-ITS-TAIL"
    redact.add(short, long)
    assert redact.scrub(f"a {long} b {short}") == f"a {redact.MASK} b {redact.MASK}"


def test_secrets_of_the_minimum_length_are_masked() -> None:
    from catalog import redact

    four = "Q7#z"
    assert len(four) == redact.MIN_SECRET_LENGTH
    redact.add(four, "xyz")  # "xyz" is shorter: kept, or every "xyz" in a message would go
    assert redact.scrub("p=Q7#z xyz") == f"p={redact.MASK} xyz"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        # a link's signature query parameter, in any case, without "bce-auth-v1" in clear
        ("GET https://b.example/x?authorization=abc123sig&e=1 failed",
         "GET https://b.example/x?authorization=****&e=1 failed"),
        ("see https://b.example/x?Authorization=abc123sig", "see https://b.example/x?Authorization=****"),
        ("header BCE-AUTH-V1/ak/2026/1800/host/abc123sig end", "header BCE-AUTH-V1/**** end"),
    ],
)
def test_scrub_masks_every_spelling_of_a_signature(text: str, shown: str) -> None:
    from catalog import redact

    assert redact.scrub(text) == shown


def test_log_fields_in_tuples_are_scrubbed() -> None:
    from catalog import redact

    redact.add(SK)
    assert redact.scrub_value({"args": (f"k={SK}", 1), "l": [SK]}) == {
        "args": [f"k={redact.MASK}", 1], "l": [redact.MASK]
    }


@pytest.mark.parametrize(
    "link",
    [
        "https://b.example/m.tar?authorization=abc123sig&expires=1",  # no "bce-auth-v1" in it
        "https://b.example/m.tar?Authorization=abc123sig",
    ],
)
def test_signed_links_are_unsigned_in_lists_and_however_spelled(link: str) -> None:
    """A signed link in a list (``exportContent``-like fields, ``labels``) or spelled with a
    capital ``Authorization=`` loses its query like any other."""
    from catalog import redact

    answer = {"files": [link, {"u": link}], "u": link}
    assert redact.content_looks_signed(repr(answer).encode())
    assert redact.unsigned(answer) == {
        "files": ["https://b.example/m.tar", {"u": "https://b.example/m.tar"}],
        "u": "https://b.example/m.tar",
    }


def test_links_inside_text_lose_their_query() -> None:
    """The whole query goes, not only the signature: its ``expires`` changes on every call,
    which would record a change each run."""
    from catalog import redact

    text = "ready: https://b.example/m.tar?authorization=abc123sig&expires=1700000000 (1 GB)"
    assert redact.unsign_text(text) == "ready: https://b.example/m.tar (1 GB)"
    # text that starts with the link: the words after it are kept
    text = "https://b.example/m.tar?authorization=abc123sig&expires=1 is ready"
    assert redact.unsign_text(text) == "https://b.example/m.tar is ready"
    assert redact.unsign_text("https://b.example/m.tar?token=x", is_url=True) == (
        "https://b.example/m.tar"
    )
    assert redact.unsign_text("https://b.example/m.tar?token=x") == (
        "https://b.example/m.tar?token=x"  # not a signed link, not a download link: as it is
    )


def test_a_signature_outside_any_link_is_masked_in_answers() -> None:
    """An answer field quoting a signature with no link around it (an echoed header) keeps its
    words and loses the signature, as a message does."""
    from catalog import redact

    answer = {"note": "sent Authorization: bce-auth-v1/ak-9/2026-12-03T00:00:00Z/1800/host/0e5c"}
    assert redact.unsigned(answer) == {"note": "sent Authorization: bce-auth-v1/****"}


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        # a signed link's query alone, or a link quoted inside another's: percent-encoded
        ("token=bce-auth-v1%2Fak-9%2F2026-12-03T00%3A00%3A00Z%2F3600%2Fhost%2F0e5c09a7d56",
         "token=bce-auth-v1%2F****"),
        ("NoSuchKey: /b/m.tar%3Fauthorization%3Dbce-auth-v1%252Fak%252F0e5c09a7d56 end",
         "NoSuchKey: /b/m.tar%3Fauthorization%3D**** end"),
    ],
)
def test_a_percent_encoded_signature_is_masked(text: str, shown: str) -> None:
    """``bce-auth-v1%2F...`` and ``authorization%3D...`` were left as they were: in a message
    (``scrub``) and in an answer stored as it came (``unsigned``)."""
    from catalog import redact

    assert redact.scrub(text) == shown
    assert redact.unsigned({"f": [text]}) == {"f": [shown]}
