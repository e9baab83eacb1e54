"""Connecting to the database and keeping its schema current.

Every way in (CLI, tests, Alembic's env.py) goes through ``create_engine_for`` so SQLite gets the
same pragmas everywhere and a bad URL gets the same one-line message.
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, SQLAlchemyError

from catalog import locks
from catalog.errors import ConfigError, DatabaseError, Interrupted

if TYPE_CHECKING:
    from alembic.config import Config

DEFAULT_DATABASE_URL = "sqlite:///catalog.db"
DATABASE_URL_ENV = "CATALOG_DATABASE_URL"
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
SUPPORTED = ("sqlite", "postgresql")
#: The newest migration's revision id; a test holds it equal to Alembic's head. Knowing it
#: without reading ``migrations/`` lets a sync whose database is current skip importing Alembic
#: and loading every migration script: with many accounts starting at once on a small host,
#: that start-up was a visible share of the run (docs/benchmark-history.md, "Many accounts
#: side by side").
SCHEMA_HEAD = "0013"


#: PostgreSQL's ``application_name`` of the catalog's sessions.
APPLICATION_NAME = "qianfan-catalog"


def resolve_database_url(url: str | None) -> str:
    return url or os.environ.get(DATABASE_URL_ENV) or DEFAULT_DATABASE_URL


def parse_url(url: str) -> URL | None:
    """``url`` parsed, or ``None`` when it cannot be: SQLAlchemy raises ``ArgumentError`` for
    most malformed URLs, but ``ValueError`` for a port that is not a number."""
    try:
        return make_url(url)
    except (ArgumentError, ValueError):
        return None


def _shown(url: str) -> str:
    """A URL that could not be parsed, as it may be shown: whatever stands between ``user:``
    and the last ``@`` (a password, which may hold ``/``, ``?`` or ``#``) masked, since no
    parser found where the password ends; and any ``password=`` value after it."""
    masked = re.sub(r"(://[^:/@]*:).*@", r"\1***@", url)
    masked = re.sub(r"(password=)[^&#]*", r"\1***", masked, flags=re.IGNORECASE)
    return repr(masked if len(masked) <= 80 else masked[:77] + "...")


def _secret_query_keys(parsed: URL) -> list[str]:
    """The URL's query parameters that hold a password (libpq's ``password``, ``sslpassword``):
    psycopg takes the password from the query as well as from ``user:password@``."""
    return [key for key in parsed.query if "password" in key.lower()]


def url_secrets(url: str) -> list[str]:
    """The passwords a database URL holds, wherever in it they are, for :mod:`catalog.redact`."""
    parsed = parse_url(url)
    if parsed is None:
        return []
    found = [parsed.password] if parsed.password else []
    for key in _secret_query_keys(parsed):
        value = parsed.query[key]
        found.extend([value] if isinstance(value, str) else value)
    return [str(v) for v in found]


def describe_url(url: str) -> str:
    """The URL as it may be shown: its passwords masked."""
    parsed = parse_url(url)
    if parsed is None:
        return "<unparseable URL>"
    hidden = _secret_query_keys(parsed)
    if hidden:  # a placeholder that the rendering's quoting leaves alone, then the mask
        parsed = parsed.update_query_dict(dict.fromkeys(hidden, "MASKED"))
    shown = parsed.render_as_string(hide_password=True)
    return re.sub(r"(password=)MASKED", r"\1***", shown, flags=re.IGNORECASE) if hidden else shown


#: How long a sync's writer waits for SQLite's one write lock, held by another account's sync
#: (seconds): that sync commits at least once per --commit-interval, so the wait is short unless
#: it is in a long delete phase; waiting is what the user wants, failing is not.
WRITER_BUSY_TIMEOUT = 600


#: SQLite's page cache per connection, in KB: 8 MB instead of the default 2 (see
#: ``_sqlite_pragmas``). The sync's reader of stored hashes takes less (``reader_engine``).
SQLITE_CACHE_KB = 8000


def _sqlite_pragmas(
    dbapi_conn: Any,
    _record: Any,
    foreign_keys: bool = True,
    immediate: bool = False,
    cache_kb: int = SQLITE_CACHE_KB,
) -> None:
    cur = dbapi_conn.cursor()
    # busy_timeout rides out short locks.
    wait = WRITER_BUSY_TIMEOUT if immediate else 30
    cur.execute(f"PRAGMA busy_timeout={int((BUSY_STEP if immediate else wait) * 1000)}")
    # WAL lets readers (BI tools) read while a sync writes.
    _to_wal(cur, wait)
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
    # 8 MB of page cache instead of 2: a batch's inserts land at random places in the key
    # indexes, and with the smaller cache each one spilled and re-read pages (bench/run.py db).
    cur.execute(f"PRAGMA cache_size=-{int(cache_kb)}")
    cur.close()
    if immediate:
        # The driver must not open transactions itself: _begin_immediate does.
        dbapi_conn.isolation_level = None


def _to_wal(cur: Any, wait: float) -> None:
    """``PRAGMA journal_mode=WAL``, retried while the file is locked, for up to ``wait`` s.

    Turning a new file to WAL takes its write lock. While another process holds that lock (the
    first sync of another account, creating the schema) SQLite answers "database is locked" at
    once, without its busy handler, since waiting there could deadlock: several syncs started
    together on a new file then failed to connect. So the wait is here.
    """
    _when_free(lambda: cur.execute("PRAGMA journal_mode=WAL"), wait, pause=0.05)


def _when_free(
    statement: Callable[[], object],
    wait: float,
    pause: float = 0.0,
    stop: threading.Event | None = None,
) -> None:
    """Run ``statement`` again while SQLite answers that another connection holds the file's
    lock (SQLITE_BUSY), ``pause`` s apart, for up to ``wait`` s; a ``stop`` set ends the wait."""
    import sqlite3  # here: only a SQLite connection comes this way

    deadline = time.monotonic() + wait
    while True:
        try:
            statement()
            return
        except sqlite3.OperationalError as exc:
            # SQLITE_BUSY and its extended codes (_RECOVERY, _SNAPSHOT, _TIMEOUT)
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                raise
        if stop is not None and stop.is_set():
            raise Interrupted(
                "interrupted while waiting for another process to finish writing to the SQLite "
                "file; nothing more was written"
            )
        time.sleep(pause)


#: The writer waits for SQLite's write lock this long at a time (its ``busy_timeout``), then
#: looks whether it was asked to stop: SQLite's own wait holds the main thread in C, where a
#: signal's handler cannot run, so a SIGTERM waited as long as the other writer held the lock.
BUSY_STEP = 0.25
#: ``Connection.info`` key of the event that, once set, ends a wait for the write lock.
STOP_KEY = "catalog.stop"


def stop_waits(conn: Connection, stop: threading.Event | None) -> None:
    """Let ``stop`` end the writer's waits for SQLite's write lock (``None``: it no longer
    does; the connection goes back to the pool)."""
    if stop is None:
        conn.info.pop(STOP_KEY, None)
    else:
        conn.info[STOP_KEY] = stop


def _begin_immediate(dbapi_conn: Any) -> None:
    """Start every transaction holding SQLite's write lock (the writer engine's ``do_begin``).

    A transaction that reads first and writes later fails at once with SQLITE_BUSY when
    another connection (another account's sync) committed in between: SQLite cannot wait for
    it then, only at the start. Taking the write lock at BEGIN makes two writers wait for each
    other instead of failing: ``BUSY_STEP`` at a time, up to ``WRITER_BUSY_TIMEOUT``, unless a
    stop is asked (:func:`stop_waits`). (The dialect's ``do_begin``, not a ``begin`` event: an
    error raised from that event left SQLAlchemy's connection believing a BEGIN was under way,
    and its later statements ran without one.)
    """
    _when_free(
        lambda: dbapi_conn.execute("BEGIN IMMEDIATE"),
        WRITER_BUSY_TIMEOUT,
        stop=dbapi_conn.info.get(STOP_KEY),
    )


def create_engine_for(
    url: str,
    *,
    foreign_keys: bool = True,
    immediate: bool = False,
    cache_kb: int = SQLITE_CACHE_KB,
    idle_seconds: float | None = None,
    **kwargs: Any,
) -> Engine:
    """An engine for a checked URL; a wrong URL is a ``ConfigError`` that says how to fix it.

    ``foreign_keys=False`` is for the sync's writer (see :func:`writer_engine`) and the
    ``alembic`` command line (``migrations/env.py``: a batch rebuild drops tables others refer
    to), ``immediate=True`` for the writer only, ``cache_kb`` for its reader
    (:func:`reader_engine`), ``idle_seconds`` for both (:func:`_keep_idle_transactions`).
    """
    parsed = parse_url(url)
    if parsed is None:
        raise ConfigError(
            f"cannot parse database URL {_shown(url)}: use e.g. sqlite:///catalog.db or "
            "postgresql+psycopg://user:password@host:5432/dbname"
        )
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED:
        raise ConfigError(
            f"unsupported database {backend!r} in {describe_url(url)}: use sqlite:/// or "
            "postgresql+psycopg://"
        )
    # Only psycopg 3 is installed; a plain postgresql:// URL would ask SQLAlchemy for psycopg2.
    if backend == "postgresql" and parsed.get_driver_name() != "psycopg":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if backend == "postgresql" and "application_name" not in parsed.query:
        # Named in pg_stat_activity: a DBA (and a migration's lock message) tells the catalog's
        # sessions from a BI tool's. A URL that names its own application keeps it.
        parsed = parsed.update_query_dict({"application_name": APPLICATION_NAME})
    if backend == "sqlite" and parsed.database and parsed.database != ":memory:":
        file = Path(parsed.database).expanduser().resolve()
        if not file.parent.is_dir():
            raise ConfigError(
                f"folder {file.parent} for the SQLite database does not exist: create it or "
                "change --database-url"
            )
        if file.is_dir():
            raise ConfigError(
                f"{file} is a folder, not an SQLite database file: change --database-url to a "
                "file in it, e.g. sqlite:///" + str(file / "catalog.db")
            )
    try:
        engine = create_engine(parsed, **kwargs)
    except (ArgumentError, NoSuchModuleError) as exc:
        raise ConfigError(f"cannot use database URL {describe_url(url)}: {exc}") from None
    if backend == "sqlite":
        event.listen(
            engine,
            "connect",
            partial(
                _sqlite_pragmas, foreign_keys=foreign_keys, immediate=immediate, cache_kb=cache_kb
            ),
        )
        if immediate:
            engine.dialect.do_begin = _begin_immediate  # type: ignore[method-assign,assignment]
    if backend == "postgresql" and idle_seconds is not None:
        limit = 2**31 - 1  # the setting's largest value (ms), for --commit-interval inf
        ms = min(math.ceil(idle_seconds * 1000), limit) if math.isfinite(idle_seconds) else limit
        event.listen(engine, "connect", partial(_keep_idle_transactions, ms=ms))
    return engine


#: What a sync's sessions add to ``--commit-interval`` for PostgreSQL's
#: ``idle_in_transaction_session_timeout`` (:func:`_keep_idle_transactions`): the writer's poll
#: of its inbox, a batch's Python work between two statements, a busy host's scheduling.
IDLE_SLACK = 10.0


def _keep_idle_transactions(dbapi_conn: Any, _record: Any, *, ms: int) -> None:
    """Raise this session's ``idle_in_transaction_session_timeout`` to ``ms`` when the role's
    or the server's is shorter (never lower it, never turn it on).

    The writer keeps a transaction open between batches while it waits for the API, up to
    ``--commit-interval``, so that only whole batches are committed and commits stay few. A
    timeout shorter than that (some DBAs set one of a second or less against BI sessions that
    leave transactions open) ended every sync, the first one in its migration: "terminating
    connection due to idle-in-transaction timeout". The setting is the session's own (any role
    may set it), and a hung sync's transaction is still ended, ``ms`` later.
    """
    with dbapi_conn.cursor() as cur:
        cur.execute(
            "SELECT set_config('idle_in_transaction_session_timeout', %s, false) "
            "FROM pg_settings WHERE name = 'idle_in_transaction_session_timeout' "
            "AND setting::bigint BETWEEN 1 AND %s",
            (f"{ms}ms", ms - 1),
        )
    dbapi_conn.commit()  # a SET in a transaction rolled back would be undone with it


def writer_engine(url: str, commit_interval: float = 1.0) -> Engine:
    """The sync writer's engine: on SQLite, without per-row foreign key checks.

    Every foreign key the writer stores is the id of the run it created before writing
    anything, so SQLite's parent lookup on each inserted row (four or five per entity, with its
    history and change rows) protects nothing and is a real share of a database-bound sync. The
    constraints stay declared (BI tools read them), every other connection enforces them,
    PostgreSQL always does, and the tests run ``PRAGMA foreign_key_check`` after their syncs.

    On SQLite its transactions also begin with the write lock held (:func:`_begin_immediate`),
    so syncs of several accounts into one file wait for each other instead of failing.
    """
    return create_engine_for(
        url, foreign_keys=False, immediate=True, idle_seconds=commit_interval + IDLE_SLACK
    )


def reader_engine(url: str, commit_interval: float = 1.0) -> Engine:
    """The engine a sync reads its stored answer hashes with (``store.LedgerLoader``): one scan per
    kind, each page read once, so on SQLite a page cache of 512 KB instead of 8 MB (a cache
    the scan fills stays in the process's memory until the run ends)."""
    return create_engine_for(url, cache_kb=512, idle_seconds=commit_interval + IDLE_SLACK)


def reason(exc: BaseException) -> str:
    """The first line of a database error's driver message, without SQLAlchemy's wrapping (the
    statement, its parameters, a link to its docs)."""
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def failure(exc: SQLAlchemyError) -> str:
    """One line for a database error, as commands print it."""
    return f"database error: {reason(exc)}"


def connect(engine: Engine) -> Connection:
    try:
        return engine.connect()
    except OperationalError as exc:
        url = engine.url
        if url.query.get("application_name") == APPLICATION_NAME:
            url = url.difference_update_query(["application_name"])  # ours, not the user's
        raise DatabaseError(
            f"cannot connect to {describe_url(url.render_as_string(hide_password=False))}: "
            f"{reason(exc)}"
        ) from None


def _read_only_engine(path: Path) -> Engine | None:
    """An engine that reads the SQLite file at ``path`` without writing anything beside it, when
    this user may not write the file or its folder; None when it may (the ordinary engine).

    In WAL mode (which every sync sets) SQLite writes a ``-shm`` index beside the file even to
    read it, so an ordinary read of such a file failed with "unable to open database file".
    On a read-only file system (a read-only mount, a snapshot) the file is read ``immutable``:
    as it lies, without that index or locks, since nothing here can change it. So it is where
    the folder may not be written and no ``-shm`` index is there to open (no connection has
    the file open: a sync that ended removed it). Elsewhere (a file another user's sync has
    open) it is opened ``mode=ro``, which still sees what that sync commits.
    """
    target = path.resolve()
    if os.access(target, os.W_OK) and os.access(target.parent, os.W_OK):
        return None
    frozen = bool(os.statvfs(target.parent).f_flag & os.ST_RDONLY) or (
        not os.access(target.parent, os.W_OK) and not Path(f"{target}-shm").exists()
    )
    return _sqlite_reader(target, frozen)


def _sqlite_reader(path: Path, immutable: bool = False) -> Engine:
    """An engine on the SQLite file at ``path`` opened ``mode=ro``: it writes nothing, not even
    the switch to WAL that opening it for writing makes (``immutable``: it also takes no locks
    and reads no ``-shm`` index; see :func:`_read_only_engine`)."""
    import sqlite3

    uri = f"file:{quote(str(path))}?mode=ro" + ("&immutable=1" if immutable else "")
    return create_engine("sqlite://", creator=lambda: sqlite3.connect(uri, uri=True))


@contextmanager
def open_catalog(database_url: str, *, write: bool = False) -> Iterator[Connection]:
    """A connection for commands that read (or, ``write``, change a row or two without a
    migration): the schema must be current, or we say how. Only readers may open a SQLite file
    this user may not write."""
    path = sqlite_file(database_url)
    read_only = None
    if path is not None and path.is_file() and not write:
        read_only = _read_only_engine(path)
    engine = read_only or create_engine_for(database_url)
    try:
        with connect(engine) as conn:
            problem = schema_problem_of(conn)
            if problem is not None:
                raise DatabaseError(str(problem))
            yield conn
    finally:
        engine.dispose()


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    """The revision Alembic recorded (its ``alembic_version`` table), ``None`` before any."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    versions = connection.execute(text("SELECT version_num FROM alembic_version")).scalars()
    found = list(versions)
    if len(found) > 1:  # branches: this project's history is linear, so Alembic must decide
        from alembic.runtime.migration import MigrationContext

        return MigrationContext.configure(connection).get_current_revision()
    return found[0] if found else None


def holds_no_catalog(database_url: str) -> bool:
    """Whether the existing database at ``database_url`` has no catalog schema yet, found out
    without writing to it (a dry run asks: it plans such a database in memory). An SQLite
    file is read ``mode=ro``, as opening it for writing switches it to WAL."""
    path = sqlite_file(database_url)
    if path is not None:
        if not path.is_file():
            return False  # a folder, say: the sync's own checks say what is wrong with it
        if path.stat().st_size == 0:
            return True
        engine = _sqlite_reader(path.resolve())
    else:
        engine = create_engine_for(database_url)
    try:
        with connect(engine) as conn:
            return current_revision(conn) is None
    finally:
        engine.dispose()


def schema_state(connection: Connection) -> str:
    """``current``, ``behind`` (migrations pending, incl. an empty database) or ``ahead``."""
    current = current_revision(connection)
    if current == SCHEMA_HEAD:
        return "current"
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    if current == script.get_current_head():
        return "current"
    known = {rev.revision for rev in script.walk_revisions()}
    if current is not None and current not in known:
        return "ahead"
    return "behind"


#: Where a database URL is set, as a fix names it when the command cannot tell which one was.
URL_SETTING = f"--database-url / {DATABASE_URL_ENV}"

#: A flag that keeps a command from bringing the schema to this version itself, so the fix
#: must name another way.
HeldBy = Literal["--no-migrate", "--dry-run"]


@dataclass(frozen=True)
class SchemaProblem:
    """Why a database will not do for this code, and the fix: worded here alone, so a user
    meets the same words for the same state whichever command met it (``check`` prints the
    two in its columns, the other commands as one line)."""

    what: str
    fix: str

    def __str__(self) -> str:
        return f"{self.what}: {self.fix}"


def missing_file(
    path: Path, held_by: HeldBy | None = None, where: str = URL_SETTING
) -> SchemaProblem:
    """An SQLite file that does not exist: ``where`` names the setting that chose it, since a
    mistyped path is as likely as a database not made yet."""
    return SchemaProblem(
        f"the database file {path} does not exist", f"{_fix(True, held_by)}, or fix {where}"
    )


def schema_problem(state: str, current: str | None, held_by: HeldBy | None = None) -> SchemaProblem:
    """A ``schema_state`` other than ``current``, of a database at revision ``current``, as a
    problem. An empty database is not called behind: no catalog was ever there, and the fix is
    a first sync, not a migration."""
    if state == "ahead":
        return SchemaProblem(
            f"the database's schema is at revision {current}, newer than this qianfan-catalog "
            f"knows (its newest is {SCHEMA_HEAD})",
            "upgrade qianfan-catalog to a version that knows it",
        )
    if current is None:
        return SchemaProblem(
            "the database holds no catalog yet (no sync has created it)", _fix(True, held_by)
        )
    return SchemaProblem(
        f"the database's schema is at revision {current}, older than this qianfan-catalog's "
        f"{SCHEMA_HEAD}",
        _fix(False, held_by),
    )


def schema_problem_of(
    connection: Connection, held_by: HeldBy | None = None
) -> SchemaProblem | None:
    """:func:`schema_problem` for the database on ``connection``, None when it is current (no
    second query then: a current schema is every sync's and every read's case)."""
    state = schema_state(connection)
    if state == "current":
        return None
    return schema_problem(state, current_revision(connection), held_by)


def _fix(create: bool, held_by: HeldBy | None) -> str:
    if held_by == "--no-migrate":
        return "run `qianfan-catalog db upgrade` first, or drop --no-migrate"
    if held_by == "--dry-run":
        return "run `qianfan-catalog db upgrade` first (a dry run migrates nothing)"
    if create:
        return "run `qianfan-catalog sync` (or `qianfan-catalog db upgrade`) to create it"
    return "run `qianfan-catalog db upgrade` (or `qianfan-catalog sync`) to migrate it"


def upgrade(connection: Connection, revision: str = "head") -> None:
    """Apply migrations on the caller's connection; commits them."""
    from alembic import command

    try:
        command.upgrade(alembic_config(connection), revision)
        connection.commit()
    except SQLAlchemyError as exc:
        connection.rollback()
        if locks.lock_busy(exc):
            raise locks.LockBusy from None
        raise DatabaseError(f"migration failed: {str(exc).splitlines()[0]}") from None


def upgrade_database(
    database_url: str, lock_timeout: float = 0.0
) -> tuple[str | None, str | None]:
    """Bring the database at ``database_url`` to head: its revision after, and before (None: no
    catalog yet). A newer schema raises with the fix.

    Through the sync writer's engine: on SQLite its transactions take the write lock at BEGIN,
    so an upgrade and a sync (or two upgrades) creating the schema take turns, as the schema
    lock makes them on PostgreSQL (with its bounded waits). A PostgreSQL schema from before
    accounts may have a sync of such a version running, under a lock of its own: the upgrade
    waits up to ``lock_timeout`` seconds for it (as a sync does), and otherwise raises
    ``LockTimeout`` with nothing migrated: migrated under it, that run would go on writing
    rows of the old form into the new schema, and end as the old version records runs.
    """
    engine = writer_engine(database_url)
    try:
        with connect(engine) as conn:
            met = [current_revision(conn)]
            deadline = time.monotonic() + lock_timeout

            def migrate() -> None:
                # Read again under the schema lock: an upgrade that waited for another finds
                # the schema that one left, and says so.
                met[0] = current_revision(conn)
                _ensure_once(conn, migrate=True)

            with locks.legacy_lock(conn, met[0], deadline, threading.Event()):
                conn.rollback()
                locks.under_schema_lock(conn, migrate, None, conn.info.get(STOP_KEY))
                return current_revision(conn), met[0]
    finally:
        engine.dispose()


def downgrade(connection: Connection, revision: str) -> None:
    """Undo migrations down to ``revision`` on the caller's connection; commits them.

    SQLite: with its foreign keys off while it runs. A downgrade rebuilds tables in batch mode
    (copy, drop, rename), and dropping ``sync_runs``, which every table refers to, failed with
    them on (0007's downgrade); SQLite's DDL is not transactional, so the migrations already
    undone stayed undone and the file was left with ``alembic_version`` at 0007 and no views.
    """
    from alembic import command

    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        connection.commit()  # the pragma is a no-op inside a transaction
        was = connection.exec_driver_sql("PRAGMA foreign_keys").scalar()
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    try:
        command.downgrade(alembic_config(connection), revision)
        connection.commit()
    finally:
        if sqlite:
            connection.rollback()
            connection.exec_driver_sql(f"PRAGMA foreign_keys={'ON' if was else 'OFF'}")


def ensure_schema(connection: Connection, migrate: bool, wait: float | None = None) -> None:
    """Bring the schema to head, or refuse clearly when told not to migrate or it is newer.

    Under the schema lock until the caller's transaction ends, so a second sync waits and then
    finds the schema current. On PostgreSQL the wait is tries for up to ``wait`` seconds
    (:func:`catalog.locks.under_schema_lock`: the caller's transaction must hold nothing yet),
    and a stop set on the connection (:func:`stop_waits`) ends them.
    """
    locks.under_schema_lock(
        connection, partial(_ensure_once, connection, migrate), wait, connection.info.get(STOP_KEY)
    )


def _ensure_once(connection: Connection, migrate: bool) -> None:
    state = schema_state(connection)
    if state == "current":
        return
    if state == "behind" and migrate:
        upgrade(connection)
        return
    held_by: HeldBy | None = None if migrate else "--no-migrate"
    problem = schema_problem(state, current_revision(connection), held_by)
    raise DatabaseError(str(problem))


def is_memory_url(url: str) -> bool:
    """An SQLite database that lives in memory: gone when its last connection closes."""
    parsed = parse_url(url)
    if parsed is None:
        return False
    return parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:")


def sqlite_file(url: str) -> Path | None:
    """The file of an SQLite URL (``None`` for other databases and in-memory ones)."""
    parsed = parse_url(url)
    if parsed is None:
        return None
    if parsed.get_backend_name() != "sqlite" or is_memory_url(url) or not parsed.database:
        return None
    return Path(parsed.database).expanduser()
