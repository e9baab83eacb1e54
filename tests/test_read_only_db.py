"""Read commands on an SQLite file that may not be written: a snapshot, a read-only mount, a
file another user's sync writes. In WAL mode SQLite writes a ``-shm`` index beside the file even
to read it, so they failed with "unable to open database file"; they now open it read-only (and
on a read-only file system, as it lies)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from catalog import db
from catalog.cli import cli
from tests.helpers import fake_console, sync


def _synced(url: str) -> Path:
    with fake_console() as server:
        assert sync(url, server).status == "success"
    path = db.sqlite_file(url)
    assert path is not None
    for suffix in ("-wal", "-shm"):  # a finished sync's WAL is checkpointed: nothing left
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


def _runs(url: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--database-url", url, "runs", "--format", "csv"],
                                env={"CATALOG_CONFIG": None})
    return result.exit_code, result.output


def _opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The databases sqlite3 is asked to open from now on."""
    import sqlite3

    opened: list[str] = []
    real_connect = sqlite3.connect

    def connect(database: str, *args: object, **kw: object) -> sqlite3.Connection:
        opened.append(str(database))
        return real_connect(database, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(sqlite3, "connect", connect)
    return opened


def _not_writable(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """This user may write neither the file nor its folder (root may: os.access says so)."""
    real_access = os.access

    def access(target: object, mode: int, *args: object, **kw: object) -> bool:
        if mode & os.W_OK and Path(str(target)).resolve() in (path.resolve(),
                                                               path.resolve().parent):
            return False
        return real_access(target, mode, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "access", access)


def test_a_file_nobody_has_open_in_a_folder_that_may_not_be_written_is_read_as_it_lies(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No -shm index to open and none may be made: read-only is not enough, so immutable."""
    path = _synced(sqlite_url)
    _not_writable(path, monkeypatch)
    opened = _opened(monkeypatch)
    code, out = _runs(sqlite_url)
    assert code == 0, out
    assert "success" in out.splitlines()[1]
    assert opened and all(o.endswith("?mode=ro&immutable=1") for o in opened), opened


def test_a_file_another_user_has_open_is_read_only_and_sees_its_commits(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Open elsewhere (its -shm index exists), the file is read mode=ro, not immutable: what
    the other connection commits, still in its WAL, is seen."""
    import sqlite3

    path = _synced(sqlite_url)
    writer = sqlite3.connect(path)
    try:
        writer.execute("PRAGMA journal_mode=WAL")
        writer.execute("PRAGMA wal_autocheckpoint=0")  # the commit stays in the WAL
        writer.execute("UPDATE sync_runs SET status = 'failed'")
        writer.commit()
        assert Path(f"{path}-shm").exists()
        _not_writable(path, monkeypatch)
        opened = _opened(monkeypatch)
        code, out = _runs(sqlite_url)
    finally:
        writer.close()
    assert code == 0, out
    assert "failed" in out.splitlines()[1]  # the uncheckpointed commit
    assert opened and all(o.endswith("?mode=ro") for o in opened), opened


def test_a_read_only_mount(sqlite_url: str, tmp_path: Path) -> None:
    path = _synced(sqlite_url)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a read-only bind mount needs root and mount(8)")
    mounted = tmp_path / "ro"
    mounted.mkdir()
    bind = subprocess.run(["mount", "--bind", "-o", "ro", str(path.parent), str(mounted)],
                          capture_output=True, text=True)
    if bind.returncode != 0:
        pytest.skip(f"a read-only bind mount needs mount privileges: {bind.stderr.strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(mounted)], check=True)
        assert not os.access(mounted, os.W_OK)
        assert os.statvfs(mounted).f_flag & os.ST_RDONLY  # read as it lies: immutable
        code, out = _runs(f"sqlite:///{mounted / path.name}")
    finally:
        subprocess.run(["umount", str(mounted)], check=False)
    assert code == 0, out
    assert "success" in out.splitlines()[1]
