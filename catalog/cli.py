"""The command line: click only. Each command parses options, calls one function, maps errors.

The group's own options (``--database-url``, ``--config``, ``--log-format``, ``--quiet``,
``--debug``) are also accepted after any command that uses them: ``qianfan-catalog sync
--database-url sqlite:///x.db`` is what people type. :func:`global_options` declares them once,
for the group and, as copies, for each command. Precedence stays flag > env > file > default;
given both before and after the command, the one after it wins (a ``--config`` after the command
replaces the file given before it).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

import click
from sqlalchemy.exc import SQLAlchemyError

from catalog import __version__, db, logs, output, redact
from catalog.errors import AUTH_HINT, ApiError, CatalogError, DatabaseError, ExitCode
from catalog.kinds import KINDS, REGISTRY
from catalog.queries import REPORT_NAMES
from catalog.schema import ACCOUNT_CHARS, DEFAULT_ACCOUNT
from catalog.sync import SyncOptions

CONTEXT = {
    "auto_envvar_prefix": "CATALOG",
    "help_option_names": ["-h", "--help"],
    "show_default": True,
}
#: The demo's own database: a fake catalog must never land in the one a real sync uses.
DEMO_DATABASE_URL = "sqlite:///qianfan-demo.db"


def _auth_error(exc: BaseException) -> ApiError | None:
    """The refused-credentials ``ApiError`` behind ``exc`` (itself or what it was raised from)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ApiError) and seen.is_auth:
            return seen
        seen = seen.__cause__
    return None


def _config_failure(ctx: click.Context, message: str, code: int = ExitCode.CONFIG) -> NoReturn:
    """End the command on a config file's error while the options are being read.

    Nothing has set the logs up yet (the file may be what would have chosen their format), so
    the format asked on the command line or in the environment is looked up here: a JSON log
    gets its ``fatal`` line, not a bare ``Error:``.
    """

    asked = os.environ.get("CATALOG_LOG_FORMAT") or "text"
    args: list[str] = ctx.find_root().meta.get("args", [])
    for i, arg in enumerate(args):
        if arg == "--log-format" and i + 1 < len(args):
            asked = args[i + 1]
        elif arg.startswith("--log-format="):
            asked = arg.partition("=")[2]
    if asked in logs.FORMATS:
        logs.setup(asked)
    _fail(ctx, message, code)


def _file_value(ctx: click.Context, exc: click.BadParameter) -> None:
    """End the command with ``exc`` as the config file's error (exit 4, not click's
    ``Invalid value for '--workers'``, exit 2, about a flag the user never typed) when the
    value refused is the file's: the file's value for the option is refused with the very
    same message."""
    param, file = exc.param, ctx.find_root().meta.get("config_file")
    if file is None or not isinstance(param, click.Option) or param.name is None:
        return
    value = ctx.lookup_default(param.name, call=False)
    if value is None:
        return
    from catalog import settings

    own = settings.refusal(ctx, param, value)
    if own is not None and own.message == exc.message:
        _config_failure(ctx, str(settings.bad_value(file, param.name, value, exc)))


class CatalogCommand(click.Command):
    """A command whose option value from the config file, refused, is the file's error (also
    the base of ``CatalogGroup``, for the global options the group parses)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if ctx.parent is None:  # the whole command line, for _config_failure
            ctx.meta["args"] = list(args)
        try:
            return super().parse_args(ctx, args)
        except click.BadParameter as exc:
            _file_value(ctx, exc)
            raise

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Help shows the config file's values as the defaults (keys and passwords masked as
        ``config show`` masks them), but not one its option refuses (``[default: abc;
        1<=x<=64]`` read as if it were in force): the option's own default is shown, and the
        refusal, which a run would end on, is listed after the options."""
        from catalog import settings

        file, saved = ctx.find_root().meta.get("config_file"), ctx.default_map
        values = saved or {}
        refused: dict[str, str] = {}
        for param in self.get_params(ctx):
            if isinstance(param, click.Option) and param.name in values:
                why = settings.refusal(ctx, param, values[param.name])
                if why is not None:
                    refused[param.name] = str(
                        settings.bad_value(file, param.name, values[param.name], why)
                    )
        ctx.default_map = {
            k: settings.mask(k, v) if k in settings.SECRETS_SHOWN_MASKED else v
            for k, v in values.items()
            if k not in refused
        }
        try:
            super().format_help(ctx, formatter)
        finally:
            ctx.default_map = saved
        if refused:
            with formatter.section("Refused (a run stops on these)"):
                for line in refused.values():
                    formatter.write_text(line)


class CatalogGroup(CatalogCommand, click.Group):
    """Turns the project's errors into one line on stderr and their exit code."""

    command_class = CatalogCommand
    group_class = type  # its subgroups (config, db, eval) are CatalogGroups too

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CatalogError as exc:
            message = str(exc)
            if _auth_error(exc) is not None:
                message = f"{message}: {AUTH_HINT}"
            _fail(ctx, message, exc.exit_code)
        except SQLAlchemyError as exc:
            _fail(ctx, db.failure(exc), ExitCode.DATABASE)
        except (click.exceptions.Exit, click.ClickException, click.Abort, BrokenPipeError):
            raise
        except Exception as exc:

            _fail(ctx, f"{logs.unexpected(exc)} (run with --debug for details)", ExitCode.FAILED)


def _fail(ctx: click.Context, message: str, code: int) -> NoReturn:
    # An upstream message (in the traceback too) may quote a secret or a signature.
    if (ctx.find_root().obj or {}).get("debug"):
        click.echo(redact.scrub(traceback.format_exc()), err=True, nl=False)

    message = redact.scrub(message)
    if not logs.report_fatal(message, int(code)):  # JSON logs: the error as one JSON line
        click.echo(f"Error: {message}", err=True)
    ctx.exit(int(code))


# -- the global options, before or after the command --------------------------------------------

#: name -> (flags, the group's click.option keywords, help). The env var names are explicit so a
#: copy after a command can name them in its help.
_GLOBALS: dict[str, tuple[tuple[str, ...], dict[str, Any], str]] = {
    "database_url": (
        ("--database-url",),
        {"envvar": db.DATABASE_URL_ENV, "default": db.DEFAULT_DATABASE_URL},
        "SQLAlchemy URL: sqlite:///file.db or postgresql+psycopg://...",
    ),
    "account": (
        ("--account",),
        {"envvar": "CATALOG_ACCOUNT", "default": None},
        "Whose catalog: a sync writes this account's rows (default: default); reads show this "
        "account only (default: all, with an account column).",
    ),
    "debug": (("--debug",), {"envvar": "CATALOG_DEBUG", "is_flag": True}, "Show tracebacks."),
    "config": (
        ("--config",),
        {"envvar": "CATALOG_CONFIG", "type": click.Path(), "default": None},
        "TOML file giving options values [default: ./qianfan-catalog.toml if present]",
    ),
    "quiet": (
        ("--quiet", "-q"),
        {"envvar": "CATALOG_QUIET", "is_flag": True},
        "No progress display and no routine log lines.",
    ),
    "log_format": (
        ("--log-format",),
        {
            "envvar": "CATALOG_LOG_FORMAT",
            "type": click.Choice(logs.FORMATS),
            "default": "text",
        },
        "Logs on stderr: plain text, or one JSON object per line.",
    ),
}
#: The global options whose values commands read from ``ctx.obj`` (``config`` fills defaults).
_VALUES = ("database_url", "account", "debug", "quiet", "log_format")


def global_options(
    *, group: bool = False, database_default: str | None = None
) -> Callable[[Any], Any]:
    """Decorator: the global options, on the group (``group=True``) or after a command.

    A copy after a command takes its value only from that command line (the env var and the
    file are read once, by the group) and overrides the group's value; its help names the env
    var and default it shares with the group. ``database_default`` is for a command with a
    database of its own (the demo), which reads neither the env var nor the file for it.
    """

    def decorate(f: Any) -> Any:
        for name, (flags, kw, text) in reversed(_GLOBALS.items()):
            eager = name == "config"
            if group:
                f = click.option(
                    *flags, **kw, show_envvar=True, is_eager=eager, expose_value=not eager,
                    callback=_load_config if eager else None, help=text,
                )(f)
                continue
            notes = [f"env var: {kw['envvar']}"]
            default = kw.get("default")
            if name == "database_url" and database_default is not None:
                notes, default = ["not read from the env var or config file"], database_default
            if default is not None:
                notes.append(f"default: {default}")
            notes.append("wins over one before the command")
            own = {k: v for k, v in kw.items() if k not in ("envvar", "default")}
            f = click.option(
                *flags, **own, default=None, show_default=False, allow_from_autoenv=False,
                is_eager=eager, expose_value=False,
                callback=_config_after if eager else _value_after,
                help=f"{text} [{'; '.join(notes)}]",
            )(f)
        return f

    return decorate


def _load_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    """Eager: fills ``default_map`` from the config file before any other option is read."""
    from catalog import settings

    try:
        ctx.meta["config_file"] = settings.load_into(ctx, value)
    except CatalogError as exc:
        _config_failure(ctx, str(exc), exc.exit_code)


def _value_after(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    if value is None or ctx.resilient_parsing:
        return
    assert param.name is not None
    _set_globals(ctx, {param.name: (value, "flag")})


def _config_after(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    """Eager: this file replaces the one before the command, for this command's options and for
    the global values that came from neither a flag nor the environment."""
    if value is None or ctx.resilient_parsing:
        return
    from catalog import settings

    root = ctx.find_root()
    path, default_map, accounts = settings.load_for(root.command, value)
    root.meta["config_file"] = path
    root.meta["accounts"] = accounts
    root.default_map = default_map
    ctx.default_map = settings.section(default_map, _command_path(ctx))
    sources: dict[str, str] = root.obj["sources"]
    changed: dict[str, tuple[Any, str]] = {}
    for param in root.command.params:
        name = param.name
        if name in _VALUES and not sources[name].startswith(("flag", "env")):
            if name in default_map:
                try:
                    cast = param.type_cast_value(root, default_map[name])
                except click.BadParameter as exc:
                    why = settings.bad_value(path, name, default_map[name], exc)
                    _config_failure(ctx, str(why))
                changed[name] = (cast, f"file {path}")
            else:
                changed[name] = (param.get_default(root), "default")
    _set_globals(ctx, changed)


def _command_path(ctx: click.Context) -> tuple[str, ...]:
    names: list[str] = []
    while ctx.parent is not None:
        names.insert(0, ctx.info_name or "")
        ctx = ctx.parent
    return tuple(names)


def _set_globals(ctx: click.Context, values: dict[str, tuple[Any, str]]) -> None:
    """Record global values and where each came from, then (re)configure logging from them."""

    obj = ctx.find_root().obj
    for name, (value, source) in values.items():
        obj[name] = value
        obj["sources"][name] = source
    logs.setup(obj["log_format"], obj["quiet"])
    redact.add(*db.url_secrets(obj["database_url"]))


@click.group(cls=CatalogGroup, context_settings=CONTEXT)
@click.version_option(__version__, "--version", prog_name="qianfan-catalog")
@global_options(group=True)
@click.pass_context
def cli(
    ctx: click.Context,
    database_url: str,
    account: str | None,
    debug: bool,
    quiet: bool,
    log_format: str,
) -> None:
    """Sync a Baidu Qianfan model catalog into SQL tables, with full history.

    --database-url, --account, --config, --log-format, --quiet and --debug go before the
    command or after it (after it wins).
    """
    from catalog import settings

    ctx.ensure_object(dict)
    ctx.obj["sources"] = {}
    file = ctx.meta.get("config_file")
    values = {"database_url": database_url, "account": account, "debug": debug, "quiet": quiet,
              "log_format": log_format}
    ctx.obj.update(values)
    _set_globals(ctx, {n: (v, settings.source_label(ctx, n, file)) for n, v in values.items()})


def _default(name: str) -> Any:
    """A sync setting's default, defined once, in ``SyncOptions``."""
    return _DEFAULTS[name]


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(SyncOptions)}


def _api_options(f: Any) -> Any:
    options = [
        click.option(
            "--access-key",
            envvar="QIANFAN_ACCESS_KEY",
            show_envvar=True,
            default="",
            show_default=False,
            help="Qianfan access key id.",
        ),
        click.option(
            "--secret-key",
            envvar="QIANFAN_SECRET_KEY",
            show_envvar=True,
            default="",
            show_default=False,
            help="Qianfan secret key (prefer the env var).",
        ),
        click.option(
            "--base-url",
            envvar="QIANFAN_CONSOLE_API_BASE_URL",
            show_envvar=True,
            default=_default("base_url"),
            help="Console API base URL.",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _kinds_option(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--kinds``, for sync and for ``eval track`` (whose id the kinds read are asked)."""
    opt_in = "; ".join(f"{k.name} ({k.opt_in})" for k in REGISTRY.values() if k.opt_in)
    return click.option(
        "--kinds",
        default=",".join(_default("kinds")),
        metavar="KIND,...",
        help=f"{what} Off unless named: {opt_in}.",
    )


def _kinds(value: str) -> tuple[str, ...]:
    return tuple(k.strip() for k in value.split(",") if k.strip())


def _sync_options(f: Any) -> Any:
    options: list[Callable[[Any], Any]] = [
        click.option(
            "--model-set",
            "model_sets",
            multiple=True,
            metavar="NAME_OR_ID",
            help="Limit the walk to this model set (repeatable).",
        ),
        click.option(
            "--include-system", is_flag=True, help="Also walk the platform's preset model sets."
        ),
        click.option(
            "--eval-export-id",
            "eval_export_ids",
            multiple=True,
            metavar="ID",
            help="Track this evaluation-result export (96 or amemt-...; repeatable).",
        ),
        _kinds_option(
            "The kinds to read; the others are neither read nor deleted "
            "(e.g. without model_export and service for a read-only key)."
        ),
        click.option(
            "--rebind-source",
            is_flag=True,
            help="Sync a database bound to another account or host, and bind it to this one.",
        ),
        click.option(
            "--record",
            "record_dir",
            type=click.Path(file_okay=False),
            default=None,
            metavar="DIR",
            help="Write every request and answer, secrets removed, to DIR/calls.jsonl "
            "(serve it again with `fake-server --replay DIR`).",
        ),
        click.option(
            "--no-migrate", is_flag=True, help="Refuse instead of applying pending migrations."
        ),
        click.option(
            "--workers",
            type=click.IntRange(1, 64),
            default=_default("workers"),
            help="Concurrent API calls.",
        ),
        click.option(
            "--qps",
            type=click.FloatRange(0),
            default=_default("qps"),
            help="Most calls per second for all calls of a run (0: no ceiling); the pace "
            "adapts below it when the API throttles.",
        ),
        click.option(
            "--batch-size",
            type=click.IntRange(1, 10000),
            default=_default("batch_size"),
            help="Rows per kind written together.",
        ),
        click.option(
            "--commit-interval",
            type=click.FloatRange(0),
            default=_default("commit_interval"),
            help="Seconds between commits of written batches (0: commit every batch); a batch "
            "that has not filled is written once it is this old (a second when 0).",
        ),
        click.option(
            "--lock-timeout",
            type=click.FloatRange(0),
            default=_default("lock_timeout"),
            help="Seconds to wait for another running sync.",
        ),
        click.option(
            "--max-delete-share",
            type=click.FloatRange(0, 1),
            default=_default("max_delete_share"),
            help="Refuse a run that would delete more than this share of a kind.",
        ),
        click.option(
            "--allow-mass-delete", is_flag=True, help="Delete even past --max-delete-share."
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(0.1),
            default=_default("timeout")[1],
            help="Read timeout per API call, seconds.",
        ),
        click.option(
            "--max-attempts",
            type=click.IntRange(1, 20),
            default=_default("max_attempts"),
            help="Tries per API call, retries included.",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _account(ctx: click.Context) -> str | None:
    """The account chosen (flag, env, file), or None: reads then show every account."""
    account: str | None = ctx.find_root().obj.get("account")
    if account is not None and not (0 < len(account) <= ACCOUNT_CHARS and account.isprintable()):
        raise click.BadParameter(
            f"an account name is 1 to {ACCOUNT_CHARS} printable characters",
            param_hint="'--account'",
        )
    return account


def _writer_account(ctx: click.Context, kw: dict[str, Any]) -> str:
    """The account a command that talks to the API acts for; its config table applied."""
    from catalog import settings

    account = _account(ctx) or DEFAULT_ACCOUNT
    settings.apply_account(ctx, kw, ctx.find_root().meta.get("accounts", {}), account)
    return account


def _sync_options_from(ctx: click.Context, kw: dict[str, Any]) -> SyncOptions:
    """The options of ``sync`` as ``SyncOptions``: same names, but for the few spelled
    differently on the command line."""
    account = _writer_account(ctx, kw)
    names = {f.name for f in dataclasses.fields(SyncOptions)}
    values = {name: value for name, value in kw.items() if name in names}
    values.update(
        account=account,
        database_url=ctx.obj["database_url"],
        url_setting=_url_setting(ctx),
        migrate=not kw["no_migrate"],
        # --timeout is the read timeout; connecting gets the default's connect timeout, or less
        # when the read timeout is shorter (a call never waits longer than --timeout to start).
        timeout=(min(_default("timeout")[0], kw["timeout"]), kw["timeout"]),
        kinds=_kinds(kw["kinds"]),
    )
    return SyncOptions(**values)


@cli.command()
@_api_options
@_sync_options
@click.option(
    "--dry-run", is_flag=True, help="Walk the API, write nothing, print what would change."
)
@global_options()
@click.pass_context
def sync(ctx: click.Context, /, **kw: Any) -> None:
    """Walk the catalog through the API and upsert it into the database."""
    from catalog import logs, progress
    from catalog.sync import run_sync

    options = _sync_options_from(ctx, kw)
    redact.add(options.access_key, options.secret_key)
    run_log = logs.RunLog()
    observer = progress.RunObserver(
        progress.Progress.for_stream(progress.stderr_stream(), ctx.obj.get("quiet", False)),
        run_log,
    )
    try:
        summary = run_sync(options, observer=observer)
    finally:
        observer.close()
    run_log.finished(summary)
    if summary.dry_run:
        for line in progress.plan_lines(summary):
            click.echo(line)
    click.echo(summary.line())
    ctx.exit(int(summary.exit_code))


@cli.command()
@_api_options
@global_options()
@click.pass_context
def check(ctx: click.Context, /, **kw: Any) -> None:
    """Check credentials, connectivity, the database and its schema; exit 0 only if all pass."""
    from catalog.check import exit_code, run_checks

    account = _writer_account(ctx, kw)
    redact.add(kw["access_key"], kw["secret_key"])
    results = run_checks(ctx.obj["database_url"], kw["access_key"], kw["secret_key"],
                         kw["base_url"], account, _url_setting(ctx))
    width = max(len(r.name) for r in results)
    for result in results:
        click.echo(redact.scrub(result.line(width)))  # a line may quote the API's words
    ctx.exit(exit_code(results))


@cli.group(name="config")
def config_group() -> None:
    """Inspect the configuration (file, environment, flags)."""


@config_group.command(name="show")
@global_options()
@click.pass_context
def config_show(ctx: click.Context) -> None:
    """Print every effective setting, where it came from, secrets masked."""
    from catalog import settings

    root = ctx.find_root()
    file = root.meta.get("config_file")
    click.echo(f"config file: {file if file else 'none'} (precedence: flag > env > file > default)")
    for s in settings.effective(root, file):
        name = f"{s.command} {s.name}".strip() if s.command else s.name
        click.echo(f"{name:<36} = {s.value:<40} ({s.source})")


@cli.group(name="db")
def db_group() -> None:
    """Manage the database schema."""


@db_group.command()
@click.option(
    "--lock-timeout",
    type=click.FloatRange(0),
    default=_default("lock_timeout"),
    help="Seconds to wait for a sync of a version before accounts (schema before 0007) still "
    "running on a PostgreSQL database.",
)
@global_options()
@click.pass_context
def upgrade(ctx: click.Context, lock_timeout: float) -> None:
    """Apply pending schema migrations."""
    revision, before = db.upgrade_database(ctx.obj["database_url"], lock_timeout)
    if before == revision:
        click.echo(f"schema at revision {revision} (already current: nothing to migrate)")
    elif before is None:
        click.echo(f"schema at revision {revision} (created: the database held no catalog)")
    else:
        click.echo(f"schema at revision {revision} (migrated from {before})")


@db_group.command()
@global_options()
@click.pass_context
def current(ctx: click.Context) -> None:
    """Show the schema revision and whether migrations are pending.

    Exits 6 when the schema is newer than this code (nothing here can read or sync it), 0
    otherwise: migrations pending are the next sync's to apply.
    """
    _require_file(ctx)
    engine = db.create_engine_for(ctx.obj["database_url"])
    with db.connect(engine) as conn:
        state, revision = db.schema_state(conn), db.current_revision(conn)
        said = state
        if state == "behind":  # not an error: the next sync migrates (unless --no-migrate)
            pending = "no catalog yet" if revision is None else "migrations pending"
            said = f"behind, {pending} (the next sync or `qianfan-catalog db upgrade` applies them)"
        click.echo(f"revision {revision or 'none'} (head {db.head_revision()}): {said}")
        if state == "ahead":
            db.ensure_schema(conn, migrate=False)  # raises the newer schema's error
    engine.dispose()


@cli.command(name="fake-server")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, help="Port on 127.0.0.1.")
@click.option("--seed", type=int, default=0, help="Seed of the generated catalog.")
@click.option("--model-sets", type=click.IntRange(0), default=20, help="Custom model sets.")
@click.option("--versions-per-set", type=click.IntRange(0), default=2, help="Versions per set.")
@click.option("--comp-tasks", type=click.IntRange(0), default=60, help="Compression tasks.")
@click.option("--eval-exports", type=click.IntRange(0), default=3, help="Evaluation exports.")
@click.option("--system-sets", type=click.IntRange(0), default=2, help="Preset model sets.")
@click.option("--access-key", default="fake-ak", help="Access key the server accepts.")
@click.option("--secret-key", default="fake-sk", help="Secret key the server accepts.")
@click.option("--latency", type=click.FloatRange(0), default=0.0, help="Seconds added per answer.")
@click.option(
    "--rate-limit",
    type=click.FloatRange(0),
    default=0.0,
    help="Server-side calls/s before 429 (0: none).",
)
@click.option(
    "--limit-shape",
    type=click.Choice(["bucket", "fixed", "fixed-bare", "sliding"]),  # limiters.SHAPES (tested)
    default="bucket",
    help="How --rate-limit counts: token bucket (1 s burst), fixed or sliding 1 s windows; "
    "fixed-bare: fixed windows refusing with no Retry-After.",
)
@click.option(
    "--fault-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Share of calls that get a random fault.",
)
@click.option(
    "--deny",
    "denied_actions",
    multiple=True,
    metavar="ACTION",
    help="Answer this action (or the eval route's path) 403 AccessDenied, as a key without "
    "its policy would (repeatable).",
)
@click.option(
    "--replay",
    "replay_dir",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    metavar="DIR",
    help="Serve the answers `sync --record DIR` recorded instead of a generated catalog.",
)
def fake_server(**kw: Any) -> None:
    """Serve a generated catalog on 127.0.0.1, as the console API would."""
    from catalog.fake.server import serve

    serve(**kw)


@cli.command()
@click.option("--model-sets", type=click.IntRange(1), default=12, help="Size of the demo catalog.")
@global_options(database_default=DEMO_DATABASE_URL)
@click.pass_context
def demo(ctx: click.Context, model_sets: int) -> None:
    """Sync a built-in fake catalog into ./qianfan-demo.db and show what landed.

    The demo has a database of its own, so it never mixes a fake catalog into the database a
    real sync uses; only --database-url (not CATALOG_DATABASE_URL or a config file) changes it.
    """
    from catalog.demo import run_demo

    given = ctx.obj["sources"]["database_url"] == "flag"
    for line in run_demo(ctx.obj["database_url"] if given else DEMO_DATABASE_URL, model_sets):
        click.echo(line)


# -- reading the history: runs, changes, as-of, history, report --------------------------------


class _Timestamp(click.ParamType):  # type: ignore[type-arg]  # generic only in click>=8.2
    """ISO 8601 on the command line; a bad one is a one-line usage error.

    ``whole_second``: a time without a fraction stands for the whole of that second (see
    :func:`catalog.queries.parse_timestamp`), so a time printed by ``runs`` shows that run.
    """

    name = "TIMESTAMP"

    def __init__(self, whole_second: bool = False) -> None:
        self.whole_second = whole_second

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from catalog.queries import QueryError, parse_timestamp

        if not isinstance(value, str):
            return value
        try:
            return parse_timestamp(value, whole_second=self.whole_second)
        except QueryError as exc:
            self.fail(str(exc), param, ctx)


def _format_option(f: Any) -> Any:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(output.FORMATS),
        default="table",
        help="Output format.",
    )(f)


def _url_setting(ctx: click.Context) -> str:
    """The setting that named the database, for a fix to name: a user whose URL comes from the
    config file would look for a flag or variable in vain."""
    root = ctx.find_root()
    if root.obj["sources"].get("database_url", "").startswith("file"):
        return f"database_url in the config file {root.meta.get('config_file')}"
    return db.URL_SETTING


def _require_file(ctx: click.Context) -> None:
    """Commands that only read must not create an empty SQLite file where none was."""
    database_url = ctx.obj["database_url"]
    path = db.sqlite_file(database_url)
    if path is not None and not path.is_file():
        where = _url_setting(ctx)
        if path.is_dir():
            raise DatabaseError(
                f"{db.describe_url(database_url)}: {path} is a folder, not a database file "
                f"(fix {where})"
            )
        raise DatabaseError(str(db.missing_file(path, where=where)))


def _show(ctx: click.Context, query: Any, fmt: str, stream: bool = False) -> None:
    """Run one read-only query on the configured database and print it in ``fmt``.

    ``stream``: for queries whose answer may be large (every change, a kind as of a date), the
    rows are read a batch at a time (a server-side cursor on PostgreSQL): CSV and JSON are
    printed as they come, a table once its spool has them all. Memory does not grow with the
    answer.
    """
    from catalog.queries import QueryError

    _require_file(ctx)
    with db.open_catalog(ctx.obj["database_url"]) as conn:
        if stream:
            conn.execution_options(stream_results=True, yield_per=STREAM_ROWS)
        try:
            columns, rows = query(conn)
        except QueryError as exc:
            raise click.BadParameter(str(exc)) from None
        for chunk in output.in_chunks(output.iter_rendered(columns, rows, fmt)):
            click.echo(chunk, nl=False)


_KIND_CHOICE = click.Choice(list(KINDS))
#: Rows fetched at a time when an answer streams.
STREAM_ROWS = 1000


@cli.command()
@click.option("--limit", type=click.IntRange(1), default=20, help="How many recent runs.")
@_format_option
@global_options()
@click.pass_context
def runs(ctx: click.Context, limit: int, fmt: str) -> None:
    """Recent sync runs, newest first, with status and counts (all columns in csv/json)."""
    from catalog import queries
    from catalog import runs as runs_module

    notes: list[str] = []

    def query(conn: Any) -> Any:
        result = queries.recent_runs(conn, limit, _account(ctx))
        # On the same connection, once the runs are read: those marked running that lost
        # their process.
        notes.extend(runs_module.dead_run_notes(conn, _account(ctx)))
        if fmt != "table":
            return result
        wanted = list(queries.RUNS_TABLE_COLUMNS)
        if len({row[1] for row in result[1]}) > 1:  # runs of several accounts: say whose
            wanted.insert(1, "account")
        return queries.select_columns(result, wanted)

    _show(ctx, query, fmt)
    for note in notes:  # on stderr: csv and json stay as they are
        click.echo(note, err=True)


@cli.command()
@click.option("--run", "run_id", type=click.IntRange(1), default=None, help="Only this run.")
@click.option(
    "--since",
    type=_Timestamp(),
    default=None,
    help="Only runs at or after this time (ISO 8601; no zone = UTC).",
)
@click.option("--until", type=_Timestamp(), default=None, help="Only runs before this time.")
@click.option("--kind", type=_KIND_CHOICE, default=None, help="Only this entity kind.")
@_format_option
@global_options()
@click.pass_context
def changes(
    ctx: click.Context, run_id: int | None, since: Any, until: Any, kind: str | None, fmt: str
) -> None:
    """Field-level changes recorded by sync runs, oldest first."""
    from catalog import queries

    if run_id is not None and (since is not None or until is not None):
        raise click.UsageError("use either --run or --since/--until, not both")
    _show(
        ctx,
        lambda conn: queries.changes_query(
            conn, run_id=run_id, since=since, until=until, kind=kind, account=_account(ctx)
        ),
        fmt,
        stream=True,
    )


@cli.command(name="as-of")
@click.argument("timestamp", type=_Timestamp(whole_second=True))
@click.argument("kind", type=_KIND_CHOICE)
@_format_option
@global_options()
@click.pass_context
def as_of(ctx: click.Context, timestamp: Any, kind: str, fmt: str) -> None:
    """The entities of KIND as they were at TIMESTAMP (ISO 8601; no zone = UTC).

    A time to the second, as the other commands print them, means the end of that second.
    """
    from catalog import queries

    _show(ctx, lambda conn: queries.as_of(conn, kind, timestamp, _account(ctx)), fmt, stream=True)


@cli.command()
@click.argument("model_id", metavar="VERSION_ID")
@click.option(
    "--as-of",
    "moment",
    type=_Timestamp(whole_second=True),
    default=None,
    help="Show the chain as it was at this time (ISO 8601; no zone = UTC).",
)
@_format_option
@global_options()
@click.pass_context
def lineage(ctx: click.Context, model_id: str, moment: Any, fmt: str) -> None:
    """Where model version VERSION_ID came from and where it went (exit 1 if never seen).

    Its fine-tuning job and task, the compression task that made it, its set, the compression
    tasks made from it, its export, the services that run it and its evaluations.
    """
    from catalog import lineage as chain
    from catalog.queries import QueryError

    def query(conn: Any) -> Any:
        try:
            return chain.lineage(conn, model_id, moment, _account(ctx))
        except QueryError as exc:
            raise CatalogError(str(exc)) from None

    _show(ctx, query, fmt)


@cli.command()
@click.argument("kind", type=_KIND_CHOICE)
@click.argument("entity_id", metavar="ID")
@_format_option
@global_options()
@click.pass_context
def history(ctx: click.Context, kind: str, entity_id: str, fmt: str) -> None:
    """Every stored version of one entity, oldest first (exit 1 if it was never seen)."""
    from catalog import queries

    def query(conn: Any) -> Any:
        account = _account(ctx)
        result = queries.history(conn, kind, entity_id, account)
        if not result[1]:
            whose = f" in account {account!r}" if account is not None else ""
            raise CatalogError(f"no such {kind} {entity_id}{whose}")
        return result

    _show(ctx, query, fmt)


@cli.command()
@click.argument("name", required=False, type=click.Choice(list(REPORT_NAMES)))
@_format_option
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Write the whole catalog at a glance to this self-contained HTML file.",
)
@global_options()
@click.pass_context
def report(ctx: click.Context, name: str | None, fmt: str, html_file: str | None) -> None:
    """Show the report view NAME; without NAME, list the reports."""
    from catalog import queries

    if html_file is not None:
        from catalog.report_html import write_report

        _require_file(ctx)
        click.echo(write_report(ctx.obj["database_url"], html_file, _account(ctx)))
        return
    if name is None:
        width = max(map(len, REPORT_NAMES))
        for report_name in REPORT_NAMES:
            click.echo(f"{report_name:<{width}}  {queries.REPORT_DESCRIPTIONS[report_name]}")
        return
    _show(ctx, lambda conn: queries.report(conn, name, account=_account(ctx)), fmt, stream=True)


@cli.group(name="eval")
def eval_group() -> None:
    """Evaluation-result exports the catalog follows (no API call lists them)."""


@eval_group.command(name="track")
@click.argument("export_id", metavar="ID")
@_api_options
@_kinds_option("The kinds a sync reads: the one that reads ID is asked about it.")
@global_options()
@click.pass_context
def eval_track(ctx: click.Context, /, export_id: str, **kw: Any) -> None:
    """Follow the evaluation-result export ID (96 or amemt-...); every sync refreshes it.

    The API is asked about it first, by the one call that will read it: the V1 export call,
    or for an amemt- id eval_result_export_task's when --kinds names it. An id that call does
    not answer is refused (exit 4).
    """
    from catalog import tracking

    account = _writer_account(ctx, kw)
    redact.add(kw["access_key"], kw["secret_key"])
    ref = tracking.check_ref(export_id)
    options = SyncOptions(
        database_url=ctx.obj["database_url"], access_key=kw["access_key"],
        secret_key=kw["secret_key"], base_url=kw["base_url"], max_attempts=3,
        kinds=_kinds(kw["kinds"]), account=account,
    )
    added = tracking.track_checked(options, ref)
    click.echo(f"tracking {ref}" if added else f"{ref} was already tracked")


@eval_group.command(name="untrack")
@click.argument("export_id", metavar="ID")
@global_options()
@click.pass_context
def eval_untrack(ctx: click.Context, export_id: str) -> None:
    """Stop following ID: the next sync marks its export deleted (its history stays)."""
    from catalog import tracking

    ref = tracking.check_ref(export_id)
    _require_file(ctx)
    with db.open_catalog(ctx.obj["database_url"], write=True) as conn:
        tracking.untrack(conn, ref, _account(ctx) or DEFAULT_ACCOUNT)
        conn.commit()
    click.echo(f"untracked {ref}: the next sync marks it deleted")


@eval_group.command(name="list")
@_format_option
@global_options()
@click.pass_context
def eval_list(ctx: click.Context, fmt: str) -> None:
    """The tracked evaluation-result exports, with their last stored state."""
    from catalog import tracking

    _show(ctx, lambda conn: tracking.tracked_table(conn, _account(ctx)), fmt)


def main() -> None:
    from catalog.collector import end_of_process

    try:
        cli(prog_name="qianfan-catalog")
    except BrokenPipeError:
        # The reader went away (`... | head`): not worth a message. Point stdout at /dev/null so
        # the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(int(ExitCode.FAILED))
    finally:
        end_of_process()


if __name__ == "__main__":  # pragma: no cover
    main()
