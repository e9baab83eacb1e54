"""The TOML config file: every option, precedence flag > env > file > default, `config show`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from catalog import logs
from catalog.cli import cli
from tests.helpers import AK, SK, fake_console, stored_rows

CLEAN_ENV: dict[str, str | None] = {
    "CATALOG_DATABASE_URL": None, "QIANFAN_ACCESS_KEY": None, "QIANFAN_SECRET_KEY": None,
    "QIANFAN_CONSOLE_API_BASE_URL": None, "CATALOG_CONFIG": None, "CATALOG_SYNC_WORKERS": None,
}


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)  # no stray ./qianfan-catalog.toml from elsewhere
    yield
    logs.setup("text")


def run(*args: str, **env: str | None) -> Result:
    return CliRunner().invoke(cli, list(args), env={**CLEAN_ENV, **env})


def shown(result: Result) -> dict[str, tuple[str, str]]:
    """`config show` output -> {name: (value, source)}."""
    out = {}
    for line in result.stdout.splitlines()[1:]:
        name, rest = line.split(" = ", 1)
        value, source = rest.rsplit(" (", 1)
        out[name.strip()] = (value.strip(), source.rstrip(")"))
    return out


def test_precedence_flag_over_env_over_file_over_default(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('database_url = "sqlite:///from-file.db"\nworkers = 3\n')
    s = shown(run("--config", str(cfg), "config", "show"))
    assert s["database_url"] == ("sqlite:///from-file.db", f"file {cfg}")
    assert s["sync workers"] == ("3", f"file {cfg}")
    assert s["sync qps"] == ("10.0", "default")

    s = shown(run("--config", str(cfg), "config", "show",
                  CATALOG_DATABASE_URL="sqlite:///from-env.db", CATALOG_SYNC_WORKERS="5"))
    assert s["database_url"] == ("sqlite:///from-env.db", "env CATALOG_DATABASE_URL")
    assert s["sync workers"] == ("5", "env CATALOG_SYNC_WORKERS")

    s = shown(run("--config", str(cfg), "--database-url", "sqlite:///from-flag.db", "config",
                  "show", CATALOG_DATABASE_URL="sqlite:///from-env.db"))
    assert s["database_url"] == ("sqlite:///from-flag.db", "flag")

    # A file given after the command replaces the one before it, but still below the env.
    for args in (("config", "show", "--config", str(cfg)),
                 ("--config", str(cfg), "config", "show")):
        s = shown(run(*args, CATALOG_DATABASE_URL="sqlite:///from-env.db"))
        assert s["database_url"] == ("sqlite:///from-env.db", "env CATALOG_DATABASE_URL"), args

    # A global option typed after the command is the one used, and shown.
    s = shown(run("--config", str(cfg), "--database-url", "sqlite:///before.db", "config",
                  "show", "--database-url", "sqlite:///after.db"))
    assert s["database_url"] == ("sqlite:///after.db", "flag")


def test_default_file_in_the_working_directory_is_used(tmp_path: Path) -> None:
    result = run("config", "show")
    assert result.stdout.startswith("config file: none")
    (tmp_path / "qianfan-catalog.toml").write_text("[sync]\nbatch-size = 42\n")
    result = run("config", "show")
    assert result.exit_code == 0, result.output
    assert shown(result)["sync batch_size"] == ("42", "file qianfan-catalog.toml")
    # A file named with --config or CATALOG_CONFIG is read instead of it, not beside it.
    (tmp_path / "other.toml").write_text("[sync]\nbatch-size = 7\n")
    for result in (run("--config", "other.toml", "config", "show"),
                   run("config", "show", CATALOG_CONFIG="other.toml")):
        assert result.stdout.startswith("config file: other.toml "), result.output
        assert shown(result)["sync batch_size"] == ("7", "file other.toml")


def test_secrets_are_masked_in_config_show(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'access_key = "{AK}-long"\nsecret_key = "{SK}"\n'
                   'database_url = "postgresql+psycopg://me:pw-in-file@db:5432/cat"\n')
    result = run("--config", str(cfg), "config", "show")
    assert result.exit_code == 0, result.output
    assert SK not in result.output and "pw-in-file" not in result.output
    s = shown(result)
    assert s["sync secret_key"][0] == "****"
    assert s["sync access_key"][0] == AK[:4] + "****"
    assert s["database_url"][0] == "postgresql+psycopg://me:***@db:5432/cat"
    # Four characters of a key of eight or fewer would be half of it: none are shown.
    s = shown(run("config", "show", QIANFAN_ACCESS_KEY="AKshort8"))
    assert s["sync access_key"] == ("****", "env QIANFAN_ACCESS_KEY")
    assert s["sync secret_key"] == ("(not set)", "default")  # missing, and said so


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("wrokers = 3\n", "'wrokers'"),
        ("[sync]\nbogus = 1\n", "'sync.bogus'"),
        ("[nosuchcommand]\nworkers = 1\n", "'nosuchcommand'"),
        ("[sync.extra]\nworkers = 1\n", "'sync.extra'"),  # one level of tables only
        ('[accounts.prod]\naccess_key_env = ""\n', "accounts.prod.access_key_env"),
    ],
)
def test_unknown_keys_are_one_line_errors_naming_the_key(tmp_path: Path, text: str,
                                                         named: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    result = run("--config", str(cfg), "config", "show")
    assert result.exit_code == 4
    assert result.stderr.count("\n") == 1 and named in result.stderr


def test_bad_toml_and_missing_file_are_config_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("workers = = 3\n")
    result = run("--config", str(cfg), "config", "show")
    assert result.exit_code == 4 and "not valid TOML" in result.stderr
    result = run("--config", str(tmp_path / "nope.toml"), "config", "show")
    assert result.exit_code == 4 and "does not exist" in result.stderr
    # Any other reason it cannot be read (a cron user without permission to it; here a name
    # too long for the file system): one line, exit 4, not a traceback.
    result = run("--config", "x" * 300 + ".toml", "config", "show")
    assert result.exit_code == 4 and result.stderr.startswith("Error: cannot read config file ")
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("where", ["before", "after"])
def test_a_directory_given_as_config_is_the_files_error(tmp_path: Path, where: str) -> None:
    """A directory is a bad config file like any other (exit 4, one line saying what to give),
    before the command or after it, not click's usage error (exit 2)."""
    args = ["config", "show"]
    argv = ["--config", str(tmp_path), *args] if where == "before" else [*args, "--config",
                                                                           str(tmp_path)]
    result = run(*argv)
    assert result.exit_code == 4, result.output
    assert result.stderr == f"Error: config file {tmp_path} is a directory: give --config the " \
        "path of a TOML file\n"


def test_a_bad_value_in_the_file_is_the_files_error(tmp_path: Path) -> None:
    """Checked as click checks a flag, but reported as the file's (exit 4, the file and the key
    named), not as a flag the user never typed (click's exit 2)."""
    cfg = tmp_path / "c.toml"
    for text, words in (("[sync]\nworkers = 0\n", "workers = 0: 0 is not in the range"),
                        ('[sync]\nworkers = "many"\n', "'many' is not a valid integer"),
                        ('kinds = ["model_set", 3]\n', "")):
        cfg.write_text(text)
        with fake_console() as server:
            result = run("--config", str(cfg), "sync", "--base-url", server.url,
                         QIANFAN_ACCESS_KEY=AK, QIANFAN_SECRET_KEY=SK)
        assert result.exit_code == 4, result.output
        (line,) = result.stderr.splitlines()
        assert line.startswith(f"Error: config file {cfg}: ") and words in line
        assert "--workers" not in line
    cfg.write_text('log_format = "xml"\n')  # a global option's, refused before any command
    result = run("--config", str(cfg), "runs")
    assert result.exit_code == 4
    assert result.stderr.strip() == (
        f"Error: config file {cfg}: log_format = 'xml': 'xml' is not one of 'text', 'json'.")
    for args in (("config", "show", "--config", str(cfg)),  # the file given after the command
                 ("--config", str(cfg), "runs", "--log-format", "json")):  # its flag after it
        result = run(*args)
        assert result.exit_code == 4 and f"config file {cfg}: log_format = 'xml'" in (
            result.stderr), (args, result.output)
    # A flag's bad value is the flag's (click's exit 2), though the file refuses its own too.
    cfg.write_text('[sync]\nworkers = "abc"\n')
    result = run("--config", str(cfg), "sync", "--workers", "0")
    assert result.exit_code == 2 and "Invalid value for '--workers': 0 is not in the range" in (
        result.stderr), result.output
    assert str(cfg) not in result.stderr
    cfg.write_text('[sync]\nworkers = "abc"\n')  # config show parses resiliently: shown
    result = run("--config", str(cfg), "config", "show")
    assert result.exit_code == 0
    assert shown(result)["sync workers"][0] == "abc (refused: 'abc' is not a valid integer range.)"
    # A value another command would refuse is that command's business, not every command's.
    cfg.write_text('model_sets = 0\n[fake-server]\nreplay = "recordings-to-come"\n')
    result = run("--config", str(cfg), "config", "show")
    assert result.exit_code == 0, result.output
    cfg.write_text("databse_url = 'x'\n")
    result = run("--config", str(cfg), "config", "show")
    assert result.exit_code == 4 and f"config file {cfg}: unknown key 'databse_url'" in (
        result.stderr)


def test_help_shows_no_refused_file_value_as_a_default(tmp_path: Path) -> None:
    """A file value its option refuses is not shown as the default (the run would stop on it):
    the option's own default is, and the refusal is listed after the options."""
    cfg = Path("c.toml")  # in tmp_path: a short name the help's wrapping leaves whole
    cfg.write_text('[sync]\nworkers = "abc"\nmax_attempts = 0\nqps = 500\n')
    result = run("--config", str(cfg), "sync", "--help")
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())  # the help's lines wrap anywhere
    assert "[default: 8; 1<=x<=64]" in text and "abc;" not in text.split("Refused")[0]
    assert "[default: 500;" in text  # a value the option takes is shown as before
    refused = text.split("Refused (a run stops on these):", 1)[1]
    assert f"config file {cfg}: workers = 'abc': 'abc' is not a valid integer range" in refused
    assert f"config file {cfg}: max_attempts = 0: 0 is not in the range" in refused
    cfg.write_text("[sync]\nworkers = 3\n")
    result = run("--config", str(cfg), "sync", "--help")
    assert "[default: 3;" in " ".join(result.stdout.split()) and "Refused" not in result.stdout


def test_a_sync_configured_only_by_the_file(db_url: str, tmp_path: Path) -> None:
    with fake_console() as server:
        (tmp_path / "qianfan-catalog.toml").write_text(
            f'database-url = "{db_url}"\naccess_key = "{AK}"\nsecret_key = "{SK}"\n'
            f'base_url = "{server.url}"\nqps = 0\ninclude-system = true\n'
            f"[sync]\nworkers = 2\neval-export-id = {server.catalog.keys('eval_result_export')}\n"
        )
        result = run("sync")
        expected = {k: len(server.catalog.keys(k)) for k in ("model_set", "eval_result_export")}
    assert result.exit_code == 0, result.output
    stored = stored_rows(db_url)
    assert {k: len(stored[k]) for k in expected} == expected
    assert SK not in result.output


def test_a_bad_value_in_an_account_table_names_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[accounts.prod]\naccess_key_env = "PROD_AK"\nsecret_key_env = "PROD_SK"\n'
                   'workers = "many"\n')
    with fake_console() as server:
        result = run("--config", str(cfg), "--account", "prod", "sync", "--base-url",
                     server.url, PROD_AK=AK, PROD_SK=SK)
    assert result.exit_code == 4, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"Error: config file {cfg}: accounts.prod.workers = 'many': ")


def test_config_show_applies_the_chosen_accounts_table(tmp_path: Path) -> None:
    """`config show` showed the defaults where `--account prod` syncs with its table's values."""
    cfg = tmp_path / "c.toml"
    cfg.write_text('[accounts.prod]\nbase-url = "http://127.0.0.1:18765"\nworkers = 3\n'
                   'access_key_env = "PROD_AK"\nsecret_key_env = "PROD_SK"\n')
    table = f"file {cfg} [accounts.prod]"
    got = shown(run("--config", str(cfg), "--account", "prod", "config", "show",
                    PROD_AK="AKprod-visible", PROD_SK="sk-prod-never-shown"))
    assert got["sync base_url"] == ("http://127.0.0.1:18765", table)
    assert got["sync workers"] == ("3", table)
    assert got["check base_url"] == ("http://127.0.0.1:18765", table)
    assert got["sync secret_key"][1] == f"env PROD_SK, named by {table}"
    assert "sk-prod-never-shown" not in got["sync secret_key"][0]
    other = shown(run("--config", str(cfg), "config", "show"))  # the default account's
    assert other["sync base_url"][1] == "default" and other["sync workers"][1] == "default"


def test_flags_win_over_the_accounts_table(tmp_path: Path) -> None:
    """Precedence with --account: flag > the account's table > env > file. The table names a
    base URL nothing answers and a secret-key variable holding a wrong key; the flags given
    for both are the ones used."""
    cfg = tmp_path / "c.toml"
    cfg.write_text('[accounts.prod]\nbase-url = "http://127.0.0.1:9"\n'
                   'access_key_env = "PROD_AK"\nsecret_key_env = "PROD_SK"\n')
    database = f"sqlite:///{tmp_path}/c.db"
    with fake_console() as server:
        result = run("--config", str(cfg), "--database-url", database, "--account", "prod",
                     "sync", "--base-url", server.url, "--secret-key", SK, "--qps", "0",
                     "--max-attempts", "1", PROD_AK=AK, PROD_SK="wrong-secret-from-the-table")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("run 1 success (account prod): ")
