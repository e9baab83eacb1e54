"""Who may write a catalog database now: the account's writer lock and the schema lock.

Two writers must never overlap: two syncs of one account (the second would mark the first's live
run ``aborted`` and write beside it), and two sessions creating or altering the schema (syncs of
several accounts may start at once on a new database, and only one may create it). Each lock
takes a form of its own on each dialect, and who holds one is asked without taking it (the
``runs`` command's note on a dead run, a migration's message naming the sessions it waited for).
Kept together so that the keys, the waits and the one ``pg_locks`` lookup of the holders agree;
the run rows (:mod:`catalog.runs`) and the migrations (:mod:`catalog.db`) only say when.
"""

from __future__ import annotations

import fcntl
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from catalog.errors import DatabaseError, Interrupted, LockTimeout
from catalog.schema import DEFAULT_ACCOUNT

# -- PostgreSQL's keys ---------------------------------------------------------------------------

#: PostgreSQL advisory locks take two int4 keys: this project's ("qfca" in ASCII) and the account's.
ADVISORY_LOCK_CLASS = 0x71666361
#: PostgreSQL advisory lock keys (two int4) held while the schema is checked and migrated: syncs
#: of several accounts may start at once on a new database, and only one may create it.
SCHEMA_LOCK = (0x71666362, 0)
#: The one advisory lock key syncs took before accounts (schema revisions before
#: ``ACCOUNTS_REVISION``): a bigint for the whole database, in another key space than the
#: (class, account) pairs, so neither lock excludes the other.
LEGACY_LOCK_KEY = 0x7166636174
#: The migration that brought accounts, and with them the per-account lock.
ACCOUNTS_REVISION = "0007"


def advisory_key(account: str) -> int:
    """The account's int4 advisory lock key (two accounts may share one: they then only wait
    for each other, never run together)."""
    value = zlib.crc32(account.encode())
    return value - (1 << 32) if value >= 1 << 31 else value


def _keys(pair: tuple[int, int]) -> dict[str, int]:
    """A two-int4 advisory lock's keys as the lock functions take them."""
    return {"cls": pair[0], "key": pair[1]}


# -- who holds a lock (PostgreSQL) ---------------------------------------------------------------

#: ``pg_locks`` (as ``l``): a lock granted in this database. Advisory locks conflict only within
#: one database: a sync of another catalog on the same server holds the same keys there.
_GRANTED_HERE = (
    "l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
#: ``pg_locks`` (as ``l``): the advisory lock of the two int4 keys ``:cls``, ``:key``
#: (:func:`_oids`); ``objsubid`` 1 would be a lock of one bigint key.
_ADVISORY_PAIR = (
    "l.locktype = 'advisory' AND l.classid::bigint = :cls AND l.objid::bigint = :key"
    " AND l.objsubid = 2"
)


def _oids(pair: tuple[int, int]) -> dict[str, int]:
    """A two-int4 advisory lock's keys as ``pg_locks`` shows them: as oids, unsigned."""
    return {"cls": pair[0] & 0xFFFFFFFF, "key": pair[1] & 0xFFFFFFFF}


# -- the account's writer lock -------------------------------------------------------------------


def _sqlite_lock_path(conn: Connection | Engine, account: str) -> Path | None:
    """``catalog.db.lock`` for the default account (the file versions before accounts lock
    too, so a sync of such a version and this one's exclude each other), else
    ``catalog.db.ACCOUNT.lock``; beside the file itself, so that a symbolic link to it (or a
    path through one) locks the same file."""
    database = conn.engine.url.database
    if not database or database == ":memory:":
        return None
    real = Path(database).expanduser().resolve()
    suffix = ".lock" if account == DEFAULT_ACCOUNT else f".{_file_safe(account)}.lock"
    return real.with_name(real.name + suffix)


def _file_safe(account: str) -> str:
    """The account as part of a file name: other characters as their code point."""
    return "".join(ch if ch.isalnum() or ch in "-_" else f"%{ord(ch):x}" for ch in account)


def lock_held(conn: Connection, account: str = DEFAULT_ACCOUNT) -> bool | None:
    """Whether a sync of ``account`` holds its writer lock now, seen without taking it: a read
    command that took it, even for an instant, could make a sync starting then exit 7.
    PostgreSQL: ``pg_locks``, every session of the database. SQLite: the lock file's inode
    among the ``flock`` locks of Linux's ``/proc/locks`` (by inode alone: a container's overlay
    may show another device for the same file; a wrong match only says "held"), which lists
    only the locks of processes in this PID namespace: a sync in another container, or on
    another host sharing the file, is not seen (the caller says so). ``None``: cannot tell."""
    if conn.dialect.name == "postgresql":
        found = conn.execute(
            text(
                "SELECT EXISTS (SELECT 1 FROM pg_locks l"  # noqa: S608 -- constants, not input
                f" WHERE {_ADVISORY_PAIR} AND {_GRANTED_HERE})"
            ),
            _oids((ADVISORY_LOCK_CLASS, advisory_key(account))),
        ).scalar_one()
        return bool(found)
    path = _sqlite_lock_path(conn, account)
    if path is None:
        return None
    try:
        inode = path.stat().st_ino
    except FileNotFoundError:
        return False  # made by the first sync that locks: none ever did
    except OSError:
        return None
    try:
        table = Path("/proc/locks").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    for line in table.splitlines():
        # "1: FLOCK  ADVISORY  WRITE 12214 fe:00:2449500 0 EOF"; a waiter's: "1: -> FLOCK ..."
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5].endswith(f":{inode}"):
            return True
    return False


@contextmanager
def writer_lock(
    conn: Connection | Engine, timeout: float, account: str = DEFAULT_ACCOUNT, poll: float = 0.2
) -> Iterator[None]:
    """Hold the account's writer lock for the database behind ``conn``, waiting up to
    ``timeout`` s. Other accounts' syncs run beside it.

    PostgreSQL: a session advisory lock on this connection, keyed by the account. SQLite:
    ``flock`` on a file per account beside the database; the kernel drops it when the process
    dies, so a crashed run never leaves it held. It needs no connection: an SQLite engine will
    do (a first sync takes it before it creates the database file).
    """
    deadline = time.monotonic() + max(timeout, 0.0)
    if conn.dialect.name == "postgresql":
        assert isinstance(conn, Connection), "PostgreSQL's lock is its session's"
        keys = _keys((ADVISORY_LOCK_CLASS, advisory_key(account)))
        with _advisory(conn, "(:cls, :key)", keys, deadline, _locked_message(timeout, account),
                       poll):
            yield
        return
    path = _sqlite_lock_path(conn, account)
    if path is None:
        yield
        return
    handle: IO[str] = open(path, "a")  # noqa: SIM115 - held for the whole run
    try:
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeout(_locked_message(timeout, account)) from None
                time.sleep(poll)
        yield
    finally:
        handle.close()


@contextmanager
def legacy_lock(
    conn: Connection, revision: str | None, deadline: float, stop: threading.Event,
    poll: float = 0.2,
) -> Iterator[None]:
    """PostgreSQL, a schema at ``revision`` from before accounts: also hold the lock of the
    versions before them, waiting until ``deadline`` (``time.monotonic()``) unless ``stop`` is
    set; otherwise nothing (SQLite's lock file is the same for every version). A sync of such a
    version may still be running when the upgraded one starts (its cron line came first): under
    the account's lock alone the new sync would mark that live run ``aborted`` and migrate and
    write beside it, and ``db upgrade`` would migrate under it."""
    if revision is None or revision >= ACCOUNTS_REVISION or conn.dialect.name != "postgresql":
        yield
        return
    message = (
        "a sync of an earlier qianfan-catalog version is running on this database: let it "
        "finish, or raise --lock-timeout"
    )
    with _advisory(conn, "(:key)", {"key": LEGACY_LOCK_KEY}, deadline, message, poll, stop):
        yield


@contextmanager
def _advisory(
    conn: Connection, args: str, keys: dict[str, int], deadline: float, message: str,
    poll: float, stop: threading.Event | None = None,
) -> Iterator[None]:
    """A session advisory lock on ``conn`` (``args``: its key parameters), tried every ``poll``
    seconds until ``deadline`` (then ``LockTimeout(message)``) or a ``stop`` (``Interrupted``),
    held while the block runs."""
    # Polled in autocommit: no transaction is held open between attempts, and the session's
    # last statement (pg_stat_activity) stays the lock attempt, not a ROLLBACK, so a waiting
    # sync can be told from outside.
    conn.rollback()
    conn.execution_options(isolation_level="AUTOCOMMIT")
    try:
        while not conn.execute(text(f"SELECT pg_try_advisory_lock{args}"), keys).scalar():
            if time.monotonic() >= deadline:
                raise LockTimeout(message)
            if stop is None:
                time.sleep(poll)
            elif stop.wait(poll):
                raise Interrupted("interrupted waiting for another sync; nothing was written")
    finally:
        conn.rollback()
        conn.execution_options(isolation_level=conn.default_isolation_level)
    try:
        yield
    finally:
        conn.rollback()
        conn.execute(text(f"SELECT pg_advisory_unlock{args}"), keys)
        conn.commit()


def _locked_message(timeout: float, account: str) -> str:
    return (
        f"another sync of account {account!r} is running on this database (waited "
        f"{timeout:g}s): let it finish, or raise --lock-timeout"
    )


# -- the schema lock -----------------------------------------------------------------------------

#: PostgreSQL: how long one try at the schema's locks may wait, in milliseconds (the schema lock,
#: which another sync holds while it migrates; the tables and views a migration alters). An
#: ALTER waiting for its lock holds up every later reader of that table, so a try gives way
#: after this: the readers queued behind it go on, and a stop is seen, between tries. Without
#: it a BI session left idle in a transaction would hold a migrating sync (and each dashboard
#: query of the table queued behind it) for as long as the session stays open.
SCHEMA_TRY_MS = 1000
#: PostgreSQL: seconds the tries go on before the sync gives up (exit 6, naming the sessions
#: that had a transaction open that long). Another account's sync migrating a large database
#: can take that long; a BI transaction left open rarely ends by itself.
SCHEMA_WAIT = 60.0
#: Seconds between two tries: the sessions queued behind the last one are served first.
_SCHEMA_PAUSE = 0.25


class LockBusy(DatabaseError):
    """PostgreSQL gave up a lock wait at ``lock_timeout`` (SQLSTATE 55P03): the schema lock's
    tries (:func:`under_schema_lock`) try again; anywhere else (a role's own ``lock_timeout``)
    it is the migration's error."""

    def __init__(self) -> None:
        super().__init__(
            "migration failed: another session held a lock it needed past lock_timeout; "
            "nothing was changed: run it again"
        )


def lock_busy(exc: SQLAlchemyError) -> bool:
    """Whether ``exc`` is PostgreSQL giving up a lock wait at ``lock_timeout``."""
    return getattr(getattr(exc, "orig", None), "sqlstate", None) == "55P03"


def under_schema_lock(
    connection: Connection,
    work: Callable[[], None],
    wait: float | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Run ``work`` (the schema's check and migration) holding the schema lock until the
    caller's transaction ends, so a second sync waits and then finds the schema current.

    SQLite: ``work`` runs once; the writer's transactions hold the write lock already.
    PostgreSQL: the waits for locks are tries of ``SCHEMA_TRY_MS`` each, for up to ``wait``
    seconds (default ``SCHEMA_WAIT``), each a transaction rolled back when it gives way (so the
    caller's transaction must hold nothing yet), and ``stop`` set ends them.
    """
    if connection.dialect.name != "postgresql":
        work()
        return
    wait = SCHEMA_WAIT if wait is None else wait
    deadline = time.monotonic() + wait
    stop = stop or threading.Event()
    while True:
        try:
            connection.execute(text(f"SET LOCAL lock_timeout = {SCHEMA_TRY_MS}"))
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:cls, :key)"), _keys(SCHEMA_LOCK)
            )
            work()
            if connection.in_transaction():  # nothing migrated (no commit): back to the default
                connection.execute(text("SET LOCAL lock_timeout TO DEFAULT"))
            return
        except (LockBusy, OperationalError) as exc:
            if isinstance(exc, OperationalError) and not lock_busy(exc):
                raise
            connection.rollback()
        if time.monotonic() >= deadline:
            raise DatabaseError(_schema_locked(connection, wait))
        if stop.wait(_SCHEMA_PAUSE):
            raise Interrupted("interrupted waiting for the schema's locks; nothing was written")


def _schema_locked(connection: Connection, wait: float) -> str:
    """Why the schema could not be checked or migrated: the sessions that hold a table's lock in
    this database (or the schema lock) and whose transaction began before the wait did, or
    whose start this role may not see. Their pids, programs, users and states; never their
    queries. (``pg_locks`` shows every session's locks to any role; ``pg_stat_activity`` hides
    other users' states and times unless the role has ``pg_read_all_stats``.)"""
    rows = connection.execute(
        text(
            "SELECT a.pid, a.application_name, a.usename, a.state,"  # noqa: S608 -- constants
            " EXTRACT(EPOCH FROM now() - a.xact_start) FROM pg_stat_activity a"
            f" WHERE a.pid IN (SELECT l.pid FROM pg_locks l WHERE {_GRANTED_HERE}"
            "  AND l.pid <> pg_backend_pid()"
            f"  AND (l.locktype = 'relation' OR ({_ADVISORY_PAIR})))"
            " AND (a.xact_start IS NULL OR a.xact_start < now() - make_interval(secs => :wait))"
            " ORDER BY a.xact_start NULLS LAST, a.pid LIMIT 5"
        ),
        {"wait": wait, **_oids(SCHEMA_LOCK)},
    ).all()
    connection.rollback()
    head = (
        f"the database schema could not be checked or migrated: other sessions held its locks "
        f"for {wait:g}s; nothing was changed"
    )
    if not rows:
        return f"{head}. Another sync may be migrating it: run this one again when it is done"
    held = ", ".join(
        f"pid {pid} ({app or 'no application name'}, user {user}, "
        + (
            f"{state}, in a transaction for {_duration(seconds)})"
            if state is not None and seconds is not None
            else "state not visible to this role)"
        )
        for pid, app, user, state, seconds in rows
    )
    return (
        f"{head}. Holding locks: {held}. A BI tool's session left 'idle in transaction' "
        f"is the usual one: end it (or SELECT pg_terminate_backend(pid)) and run this again"
    )


def _duration(seconds: Any) -> str:
    seconds = int(float(seconds or 0))
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"
