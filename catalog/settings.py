"""The configuration file: TOML that gives any command-line option a value.

Precedence is flag > environment variable > file > built-in default. That is exactly click's own
order for a context's ``default_map`` (command line, then env var, then ``default_map``, then the
option's default), so the file is loaded into ``default_map`` by an eager ``--config`` option of the
group, before any other option (the group's own included) takes its value.

File layout: top-level keys name options by their long name, with dashes or underscores
(``workers = 4``, ``database-url = "..."``); a key sets that option wherever it exists (the
group or any command). A table named after a command sets options of that command only
(``[sync] workers = 4``, ``[fake-server] port = 9000``). A key that names no option is an error
that names the key, because a silently ignored typo in a cron job's config is worse than a failure.

The group's options may also be typed after a command (``sync --database-url ...``): those copies
are the group's options, not the command's, so a file sets them at the top level only and
``config show`` lists them once, with the value and source the command will use.

``[accounts.NAME]`` tables give one account's options (``base-url``, ``model-set``, ...) and name
the environment variables that hold its keys (``access-key-env``, ``secret-key-env``), so a
crontab line is ``qianfan-catalog sync --account NAME``. They apply to the commands that talk to
the API, when ``--account NAME`` is chosen, with precedence flag > the account's table >
environment variable > the rest of the file > default: an account's own key variables must win
over a ``QIANFAN_ACCESS_KEY`` exported for another account.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import click
from click.core import ParameterSource

from catalog.errors import ConfigError

DEFAULT_CONFIG_FILE = "qianfan-catalog.toml"
#: Options whose values are never shown, in full or in part.
SECRET_PARAMS = frozenset({"secret_key"})
#: Options shown with only their first characters: identifying, but not enough to use.
PARTLY_SECRET_PARAMS = frozenset({"access_key"})
URL_PARAMS = frozenset({"database_url"})
#: Options holding an http(s) URL, shown without its user name or password (either may be a
#: token).
HTTP_URL_PARAMS = frozenset({"base_url"})
#: What is never printed as given: in a refusal, in ``--help``'s defaults, in ``config show``.
SECRETS_SHOWN_MASKED = SECRET_PARAMS | PARTLY_SECRET_PARAMS | URL_PARAMS | HTTP_URL_PARAMS


def _key(name: str) -> str:
    return name.strip().lstrip("-").replace("-", "_").lower()


def _option_names(param: click.Parameter) -> set[str]:
    """Every spelling a file may use for ``param``: its long flags and its parameter name."""
    names = {_key(opt) for opt in [*param.opts, *param.secondary_opts] if opt.startswith("--")}
    if param.name:
        names.add(_key(param.name))
    return names


def _options(command: click.Command, skip: frozenset[str] = frozenset()) -> list[click.Option]:
    return [
        p
        for p in command.params
        if isinstance(p, click.Option)
        and not p.hidden
        and p.name not in ("help", "version", "config")
        and p.name not in skip
    ]


#: A command's path below the root, the command, and the options a file may set on it.
_Walked = tuple[tuple[str, ...], click.Command, list[click.Option]]


def _walk(root: click.Command) -> Iterator[_Walked]:
    """Every command with its own options; below the root, copies of the root's options are
    left out (they are the root's)."""
    yield from _walk_below(root, (), frozenset(p.name for p in root.params if p.name))


def _walk_below(
    command: click.Command, path: tuple[str, ...], shared: frozenset[str]
) -> Iterator[_Walked]:
    yield path, command, _options(command, shared if path else frozenset())
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from _walk_below(sub, (*path, name), shared)


def _index(root: click.Command) -> dict[tuple[str, ...], dict[str, str]]:
    """Per command path, file key spelling -> parameter name."""
    out: dict[tuple[str, ...], dict[str, str]] = {}
    for path, _command, options in _walk(root):
        names: dict[str, str] = {}
        for param in options:
            assert param.name is not None
            for spelling in _option_names(param):
                names[spelling] = param.name
        out[path] = names
    return out


def _place(default_map: dict[str, Any], path: tuple[str, ...], name: str, value: Any) -> None:
    node = default_map
    for part in path:
        node = node.setdefault(part, {})
    node[name] = value


def _check_type(where: str, param: click.Option, value: Any) -> Any:
    """A list for a repeatable option, a scalar otherwise; click converts and validates the
    rest for the command it runs (a bad value is then the file's error: ``cli.CatalogGroup``)."""
    if param.multiple:
        if not isinstance(value, list):
            value = [value]
        return [
            str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v for v in value
        ]
    if isinstance(value, list | dict):
        raise ConfigError(f"config file: {where} must be a single value, not a list or table")
    return value


def refusal(ctx: click.Context, param: click.Parameter, value: Any) -> click.BadParameter | None:
    """Why ``param`` refuses ``value`` (a config file's), as it would refuse it on the command
    line; ``None`` when it takes it. The one way a file's value is tried: by the run that ends
    on it, by ``--help`` (which shows it as a default only if taken) and by ``config show``."""
    try:
        param.type_cast_value(ctx, value)
    except click.BadParameter as exc:
        return exc
    return None


def bad_value(
    file: Path | str | None, where: str, value: Any, exc: click.BadParameter
) -> ConfigError:
    """A value from the config ``file`` that its option refuses, as the file's error: click
    reports it as a flag's (``Invalid value for '--workers'``, exit 2), which the user never
    typed."""
    name = _key(where.rsplit(".", 1)[-1])
    shown = mask(name, value) if name in SECRETS_SHOWN_MASKED else repr(value)
    return ConfigError(f"config file {file}: {where} = {shown}: {exc.message}")


def env_name(name: str) -> str | None:
    """An ``access-key-env`` / ``secret-key-env`` value as it may be printed: ``None`` when it
    has no ``_``, as a key pasted there instead of its variable's name would not."""
    return name if "_" in name else None


#: Keys of an ``[accounts.NAME]`` table that name no option: where the account's keys are.
KEY_ENV_KEYS = {"access_key_env": "access_key", "secret_key_env": "secret_key"}
#: The commands that act for one account, and so take its ``[accounts.NAME]`` table
#: (``cli._writer_account``); ``config show`` shows the table's values for them.
ACCOUNT_COMMANDS = frozenset({("sync",), ("check",), ("eval", "track")})


def account_tables(root: click.Command, data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The ``[accounts.NAME]`` tables of a parsed file, keys as parameter names; checked
    against the options of the commands that use them, so a typo fails at once."""
    tables = data.get("accounts", {})
    if not isinstance(tables, dict):
        raise ConfigError("config file: 'accounts' must be a table of [accounts.NAME] tables")
    allowed: dict[str, str] = {}
    for path, _command, options in _walk(root):
        if path in ACCOUNT_COMMANDS:
            for param in options:
                assert param.name is not None
                allowed.update(dict.fromkeys(_option_names(param), param.name))
    out: dict[str, dict[str, Any]] = {}
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise ConfigError(f"config file: accounts.{name} must be a table")
        values: dict[str, Any] = {}
        for key, value in table.items():
            where = f"accounts.{name}.{key}"
            if _key(key) in KEY_ENV_KEYS:
                if not isinstance(value, str) or not value:
                    raise ConfigError(f"config file: {where} must name an environment variable")
                values[_key(key)] = value
            elif _key(key) in allowed:
                values[allowed[_key(key)]] = value
            else:
                raise ConfigError(
                    f"config file: unknown key {where!r}: it names no option of sync or check "
                    f"(nor {', '.join(k.replace('_', '-') for k in KEY_ENV_KEYS)})"
                )
        out[str(name)] = values
    return out


def apply_account(
    ctx: click.Context, kw: dict[str, Any], tables: dict[str, dict[str, Any]], account: str
) -> None:
    """Give ``kw`` (a command's parsed options) the values of ``account``'s table, where no
    flag set them; its key variables must be set."""
    table = tables.get(account, {})
    params = {p.name: p for p in ctx.command.params if p.name and isinstance(p, click.Option)}
    flagged = {n for n in params if ctx.get_parameter_source(n) is ParameterSource.COMMANDLINE}
    for name, value in table.items():
        if name in KEY_ENV_KEYS:
            target = KEY_ENV_KEYS[name]
            if target not in params or target in flagged:
                continue
            found = os.environ.get(value)
            if not found:
                key = f"{name.replace('_', '-')} in the config file"
                shown = env_name(value)
                raise ConfigError(
                    f"account {account!r}: environment variable {shown} ({key}) is not set"
                    if shown
                    else f"account {account!r}: the environment variable {key} names is not "
                    "set (its name has no '_' and is not shown: is it the key itself?)"
                )
            kw[target] = found
        elif name in params and name not in flagged:
            param = params[name]
            where = f"accounts.{account}.{name}"
            try:
                kw[name] = param.type_cast_value(ctx, _check_type(where, param, value))
            except click.BadParameter as exc:
                file = ctx.find_root().meta.get("config_file")
                raise bad_value(file, where, value, exc) from None


def build_default_map(root: click.Command, data: dict[str, Any]) -> dict[str, Any]:
    """Turn a parsed file into click's nested ``default_map``; unknown keys are a ConfigError.

    ``[accounts.NAME]`` tables are left to :func:`account_tables`."""
    data = {k: v for k, v in data.items() if k != "accounts"}
    index = _index(root)
    commands = {path[-1].replace("-", "_"): path for path in index if path}
    params = {path: {p.name: p for p in options} for path, _cmd, options in _walk(root)}
    default_map: dict[str, Any] = {}

    def apply(scope: list[tuple[str, ...]], key: str, value: Any, where: str) -> None:
        hits = [(path, index[path][_key(key)]) for path in scope if _key(key) in index[path]]
        if not hits:
            raise ConfigError(f"config file: unknown key {where!r}: it names no option")
        for path, name in hits:
            _place(default_map, path, name, _check_type(where, params[path][name], value))

    for key, value in data.items():
        section = commands.get(_key(key))
        if isinstance(value, dict) and section is not None:
            below = [p for p in index if p[: len(section)] == section]
            for sub_key, sub_value in value.items():
                if isinstance(sub_value, dict):
                    raise ConfigError(
                        f"config file: unknown key '{key}.{sub_key}': only one level of tables"
                    )
                apply(below, sub_key, sub_value, f"{key}.{sub_key}")
        elif isinstance(value, dict):
            raise ConfigError(f"config file: unknown key {key!r}: it names no command")
        else:
            apply(list(index), key, value, key)
    return default_map


def read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist: fix --config or create it") from None
    except IsADirectoryError:
        raise ConfigError(
            f"config file {path} is a directory: give --config the path of a TOML file"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def config_path(given: str | None) -> Path | None:
    """The file to load: the one given, else ./qianfan-catalog.toml when it exists, else none."""
    if given:
        return Path(given)
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.is_file() else None


def load_into(ctx: click.Context, given: str | None) -> Path | None:
    """The eager ``--config`` callback's work: fill ``ctx.default_map`` from the file."""
    path = config_path(given)
    if path is None:
        return None
    loaded, ctx.meta["accounts"] = _parse(ctx.command, path)
    ctx.default_map = _merge(dict(ctx.default_map or {}), loaded)
    return path


def load_for(
    root: click.Command, given: str
) -> tuple[Path, dict[str, Any], dict[str, dict[str, Any]]]:
    """A ``--config`` given after a command: the file, the whole ``default_map`` it makes and
    its account tables."""
    path = Path(given)
    return (path, *_parse(root, path))


def _parse(
    root: click.Command, path: Path
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The ``default_map`` and account tables of the file at ``path``; every error names it."""
    data = read_file(path)
    try:
        return build_default_map(root, data), account_tables(root, data)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("config file:", f"config file {path}:", 1)) from None


def section(default_map: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any] | None:
    """The part of a ``default_map`` that click gives the command at ``path``."""
    node: Any = default_map
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


# -- config show ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    command: str  # "" for the group's own options
    name: str
    value: str
    source: str


def mask(name: str, value: Any) -> str:
    """A value as it may be printed: secrets hidden, URL passwords masked."""
    if value is None or value == "" or value == ():
        return "(not set)"
    if name in SECRET_PARAMS:
        return "****"
    if name in PARTLY_SECRET_PARAMS:
        text = str(value)
        return text[:4] + "****" if len(text) > 8 else "****"
    if name in URL_PARAMS:
        from catalog.db import describe_url

        return describe_url(str(value))
    if name in HTTP_URL_PARAMS:
        parts = urlsplit(str(value))
        if "@" in parts.netloc:  # a user name may be a token too
            host = parts.netloc.rsplit("@", 1)[-1]
            return urlunsplit(parts._replace(netloc=f"***@{host}"))
    if isinstance(value, tuple | list):
        return ", ".join(str(v) for v in value)
    return str(value)


def source_label(ctx: click.Context, name: str, file: Path | None) -> str:
    """Where ``ctx``'s value of ``name`` came from, as ``config show`` prints it."""
    source = ctx.get_parameter_source(name)
    if source is ParameterSource.COMMANDLINE:
        return "flag"
    if source is ParameterSource.ENVIRONMENT:
        param = next(p for p in ctx.command.params if p.name == name)
        envvar = _envvar_name(param, ctx)
        return f"env {envvar}" if envvar else "env"
    if source is ParameterSource.DEFAULT_MAP:
        return f"file {file}" if file else "file"
    return "default"


def _envvar_name(param: click.Parameter, ctx: click.Context) -> str | None:
    names: list[str] = []
    if isinstance(param.envvar, str):
        names = [param.envvar]
    elif param.envvar:
        names = list(param.envvar)
    elif ctx.auto_envvar_prefix and param.name:
        names = [f"{ctx.auto_envvar_prefix}_{param.name.upper()}"]
    return next((n for n in names if os.environ.get(n)), None)


def display_name(param: click.Parameter) -> str:
    """The key a config file would use: the first long flag, with underscores."""
    longs = [o for o in param.opts if o.startswith("--")]
    return _key(longs[0]) if longs else _key(param.name or "")


def effective(root_ctx: click.Context, file: Path | None) -> list[Setting]:
    """Every option's value and where it came from, resolved by click itself.

    The group's values are the ones commands use (``root_ctx.obj``, where an option given after
    the command has replaced the group's). Each command's context is built with no arguments
    (resilient parsing, so nothing runs), which gives exactly the value and source that command
    would see if run now with this environment.
    """
    from catalog.schema import DEFAULT_ACCOUNT

    out: list[Setting] = []
    resolved = root_ctx.obj or {}
    sources = resolved.get("sources", {})
    account = resolved.get("account") or DEFAULT_ACCOUNT
    table: dict[str, Any] = (root_ctx.meta.get("accounts") or {}).get(account, {})
    from_table = f"file {file} [accounts.{account}]"
    env_of = {target: table[key] for key, target in KEY_ENV_KEYS.items() if key in table}
    for name, value in root_ctx.params.items():
        if name in ("config",):
            continue
        param = next(p for p in root_ctx.command.params if p.name == name)
        source = sources.get(name) or source_label(root_ctx, name, file)
        out.append(Setting("", display_name(param), mask(name, resolved.get(name, value)), source))
    for path, command, options in _walk(root_ctx.command):
        if not path or isinstance(command, click.Group) or not options:
            continue
        parent = root_ctx
        for part in path[:-1]:
            group = parent.command
            assert isinstance(group, click.Group)
            sub = group.get_command(parent, part)
            assert sub is not None
            parent = sub.make_context(part, [], parent=parent, resilient_parsing=True)
        ctx = command.make_context(path[-1], [], parent=parent, resilient_parsing=True)
        for param in options:
            assert param.name is not None
            shown = mask(param.name, ctx.params.get(param.name))
            raw = ctx.lookup_default(param.name, call=False)
            if raw is not None and ctx.get_parameter_source(param.name) is (
                ParameterSource.DEFAULT_MAP
            ):
                # Resilient parsing keeps a refused value quiet ("not set"): shown with why
                # (the command it belongs to fails on it when it runs; the others do not).
                why = refusal(ctx, param, raw)
                if why is not None:
                    shown = f"{mask(param.name, raw)} (refused: {why.message})"
            source = source_label(ctx, param.name, file)
            if path in ACCOUNT_COMMANDS and param.name in env_of:
                found = os.environ.get(env_of[param.name])
                shown = mask(param.name, found) if found else "(not set)"
                named = env_name(env_of[param.name]) or "(name not shown)"
                source = f"env {named}, named by {from_table}"
            elif path in ACCOUNT_COMMANDS and param.name in table:
                shown, source = mask(param.name, table[param.name]), from_table
            out.append(Setting(" ".join(path), display_name(param), shown, source))
    return out
