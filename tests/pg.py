"""A throwaway PostgreSQL server for the test suite.

One server per test session: ``initdb`` into a temp dir under /tmp, ``pg_ctl start`` on a free
127.0.0.1 port, trust auth, durability off (fsync, synchronous_commit, full_page_writes) for speed.
Tests get a fresh database each through :meth:`PostgresServer.create_database`.

Running as root (CI containers): ``initdb`` and ``postgres`` refuse root, so they run through
``runuser -u postgres --`` and the temp dir is chowned to the ``postgres`` user.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg import sql

RUN_AS_USER = "postgres"
SUPERUSER = "postgres"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries (``initdb``) on this machine."""


def _version_key(path: str) -> tuple[int, ...]:
    # /usr/lib/postgresql/15/bin -> (15,); non-numeric parts sort first.
    name = Path(path).parent.name
    return tuple(int(p) for p in re.findall(r"\d+", name)) or (0,)


def find_bindir() -> Path | None:
    """Directory holding ``initdb``, ``pg_ctl`` and ``postgres``, or None.

    Order: ``pg_config --bindir`` (only if it really holds initdb: Debian's libpq-dev ships a
    pg_config without the server), the newest ``/usr/lib/postgresql/*/bin``, then ``initdb``
    on PATH.
    """
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            if out:
                candidates.append(Path(out))
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True):
        candidates.append(Path(d))
    on_path = shutil.which("initdb")
    if on_path:
        # Resolve symlinks (/usr/local/bin/initdb -> .../15/bin/initdb) so pg_ctl and postgres
        # are taken from the same installation.
        candidates.append(Path(os.path.realpath(on_path)).parent)
    for bindir in candidates:
        if all(os.access(bindir / exe, os.X_OK) for exe in ("initdb", "pg_ctl", "postgres")):
            return bindir
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _check_traversable(path: Path) -> None:
    """Every parent of ``path`` must be searchable by others (the postgres user)."""
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            raise RuntimeError(
                f"{parent} is not traversable by the {RUN_AS_USER!r} user (mode {oct(mode)}); "
                "cannot host a PostgreSQL data directory below it"
            )


class PostgresServer:
    """A throwaway PostgreSQL cluster. ``start()``, ``url(db)``, ``create_database``, ``stop()``."""

    def __init__(self, bindir: Path | None = None, *, start_timeout: float = 60.0) -> None:
        found = bindir or find_bindir()
        if found is None:
            raise PostgresUnavailable(
                "PostgreSQL server binaries (initdb) not found; install Debian's postgresql"
            )
        self.bindir: Path = found
        self.start_timeout = start_timeout
        self.host = "127.0.0.1"
        self.port: int = 0
        self.base_dir: Path | None = None
        self.started = False
        self.startup_seconds: float | None = None
        self._as_root = os.geteuid() == 0
        self._server_version: int | None = None

    # -- paths ------------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        assert self.base_dir is not None, "server not started"
        return self.base_dir / "data"

    @property
    def log_file(self) -> Path:
        assert self.base_dir is not None, "server not started"
        return self.base_dir / "server.log"

    # -- process helpers ----------------------------------------------------------------------

    def _cmd(self, exe: str, *args: str) -> list[str]:
        argv = [str(self.bindir / exe), *args]
        if self._as_root:
            return ["runuser", "-u", RUN_AS_USER, "--", *argv]
        return argv

    def _run(self, exe: str, *args: str, timeout: float = 120.0) -> None:
        proc = subprocess.run(
            self._cmd(exe, *args),
            cwd=self.base_dir,  # postgres cannot chdir into root's cwd (e.g. /root)
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "LC_ALL": "C", "LANG": "C"},
        )
        if proc.returncode != 0:
            log = ""
            if self.base_dir is not None and self.log_file.exists():
                log = self.log_file.read_text(errors="replace")[-4000:]
            raise RuntimeError(
                f"{exe} {' '.join(args)} failed with exit code {proc.returncode}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}\nserver log:\n{log}"
            )

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        if self.started:
            return
        t0 = time.monotonic()
        # Explicitly /tmp (sticky, world-traversable), not $TMPDIR which may live under /root.
        self.base_dir = Path(tempfile.mkdtemp(prefix="catalog-pg-", dir="/tmp"))
        atexit.register(self.stop)
        try:
            if self._as_root:
                try:
                    pw = pwd.getpwnam(RUN_AS_USER)
                except KeyError:
                    raise RuntimeError(
                        f"running as root but no {RUN_AS_USER!r} user exists to run PostgreSQL "
                        "(Debian's postgresql package creates it)"
                    ) from None
                _check_traversable(self.base_dir)
                os.chown(self.base_dir, pw.pw_uid, pw.pw_gid)
            self._initdb()
            self._start_with_retries()
            self.started = True
            self.startup_seconds = time.monotonic() - t0
        except BaseException:
            self.stop()
            raise

    def _initdb(self) -> None:
        self._run(
            "initdb",
            "-D", str(self.data_dir),
            "-U", SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )  # fmt: skip
        (self.data_dir / "pg_hba.conf").write_text(
            "# written by tests/pg.py: trust, local socket and 127.0.0.1 only\n"
            "local all all trust\n"
            "host  all all 127.0.0.1/32 trust\n"
        )

    def _write_config(self) -> None:
        conf = (
            "\n# --- tests/pg.py ---\n"
            f"listen_addresses = '{self.host}'\n"
            f"port = {self.port}\n"
            f"unix_socket_directories = '{self.base_dir}'\n"
            "fsync = off\n"
            "synchronous_commit = off\n"
            "full_page_writes = off\n"
            "max_connections = 100\n"
            "timezone = 'UTC'\n"
            "log_timezone = 'UTC'\n"
        )
        # include_if_exists keeps the original file untouched; the override file is rewritten
        # on each start attempt (a new port).
        override = self.data_dir / "tests_override.conf"
        override.write_text(conf)
        main = self.data_dir / "postgresql.conf"
        text = main.read_text()
        line = "include_if_exists = 'tests_override.conf'\n"
        if line not in text:
            main.write_text(text + "\n" + line)

    def _start_with_retries(self, attempts: int = 3) -> None:
        # The free port is picked by binding port 0 and releasing it, so another process could
        # take it before postgres binds: retry with a new port.
        last: Exception | None = None
        for _ in range(attempts):
            self.port = _free_port()
            self._write_config()
            try:
                self._run(
                    "pg_ctl",
                    "-D", str(self.data_dir),
                    "-l", str(self.log_file),
                    "-w", "-t", str(int(self.start_timeout)),
                    "start",
                    timeout=self.start_timeout + 30,
                )  # fmt: skip
            except RuntimeError as exc:
                last = exc
                self._kill_postmaster()
                continue
            self._server_version = self._query_version()
            return
        raise RuntimeError(f"PostgreSQL did not start after {attempts} attempts") from last

    def stop(self) -> None:
        """Stop the server (immediate mode) and remove its directory. Idempotent."""
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        base = self.base_dir
        if base is None:
            return
        if (base / "data" / "postmaster.pid").exists():
            try:
                self._run(
                    "pg_ctl", "-D", str(base / "data"), "-m", "immediate", "-w", "stop", timeout=60
                )
            except Exception:
                self._kill_postmaster()
        shutil.rmtree(base, ignore_errors=True)
        self.base_dir = None
        self.started = False

    def _kill_postmaster(self) -> None:
        """Last resort: SIGKILL the postmaster whose pid this server's data dir recorded."""
        if self.base_dir is None:
            return
        pidfile = self.base_dir / "data" / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)

    # -- use ----------------------------------------------------------------------------------

    def url(self, dbname: str = "postgres") -> str:
        """SQLAlchemy URL for ``dbname`` (psycopg 3 driver)."""
        return f"postgresql+psycopg://{SUPERUSER}@{self.host}:{self.port}/{dbname}"

    def _connect(self, dbname: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host=self.host, port=self.port, user=SUPERUSER, dbname=dbname,
            autocommit=True, connect_timeout=10,
        )  # fmt: skip

    def _query_version(self) -> int:
        with self._connect() as conn:
            return conn.info.server_version

    @property
    def server_version(self) -> int:
        """E.g. 150013 for 15.13."""
        if self._server_version is None:
            self._server_version = self._query_version()
        return self._server_version

    @contextlib.contextmanager
    def fresh_database(self, template: str | None = None) -> Iterator[str]:
        """A new database for the ``with`` block, empty or a copy of ``template``: its URL;
        dropped after."""
        name = f"test_{uuid.uuid4().hex}"
        self.create_database(name, template)
        try:
            yield self.url(name)
        finally:
            self.drop_database(name)

    def create_database(self, name: str, template: str | None = None) -> None:
        """``template``: a database to copy (no one may be connected to it meanwhile)."""
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        with self._connect() as conn:
            conn.execute(statement)

    def drop_database(self, name: str) -> None:
        """Drop ``name`` even if connections are still open (WITH (FORCE) on PG >= 13)."""
        with self._connect() as conn:
            if self.server_version >= 130000:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
                return
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))

    def list_databases(self) -> list[str]:
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY datname"
            ).fetchall()
        return [str(r[0]) for r in rows]
