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


def test_a_file_that_may_not_be_written_is_read_without_writing_beside_it(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _synced(sqlite_url)
    real_access = os.access

    def read_only(target: object, mode: int, *args: object, **kw: object) -> bool:
        if mode & os.W_OK and Path(str(target)).resolve() in (path.resolve(),
                                                               path.resolve().parent):
            return False
        return real_access(target, mode, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "access", read_only)
    import sqlite3

    opened: list[str] = []
    real_connect = sqlite3.connect

    def connect(database: str, *args: object, **kw: object) -> sqlite3.Connection:
        opened.append(str(database))
        return real_connect(database, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(sqlite3, "connect", connect)
    code, out = _runs(sqlite_url)
    assert code == 0, out
    assert "success" in out.splitlines()[1]
    # Opened read-only, and not immutable: the file system may be written, by another user's
    # sync, whose commits a read must see.
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
