"""Record a sync, replay it, get the same database; and the tracked evaluation exports' commands.

A user reports where the real API differs by recording their account's answers; the recording
must hold no secret, and a sync against its replay must store what the original sync stored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from catalog.cli import cli
from catalog.errors import ExitCode
from catalog.fake.catalog import FakeCatalog
from catalog.fake.replay import load_recording
from catalog.fake.server import FakeServer
from tests.helpers import AK, SK, fake_console, stored_rows, sync


def test_a_sync_against_its_recording_stores_the_same_rows(tmp_path: Path, db_url: str) -> None:
    catalog = FakeCatalog.generate(seed=71, model_sets=3, system_sets=1, comp_tasks=25,
                                   eval_exports=2)
    recording = tmp_path / "rec"
    original = f"sqlite:///{tmp_path / 'original.db'}"
    with fake_console(catalog) as server:
        first = sync(original, server, record_dir=str(recording))
    assert first.status == "success"
    text = (recording / "calls.jsonl").read_text(encoding="utf-8")
    assert len(text.splitlines()) == first.api_calls
    for secret in (AK, SK, "bce-auth-v1", "authorization", "x-bce-date", "requestId"):
        assert secret.lower() not in text.lower(), secret
    with FakeServer(FakeCatalog(), AK, SK, replay=load_recording(str(recording))) as replay:
        refs = [str(k) for k in catalog.keys("eval_result_export")]
        again = sync(db_url, replay, eval_export_ids=refs)
        missed = replay.replay.missed if replay.replay is not None else None
    assert again.status == "success", again.message
    assert missed == []  # every request the sync made had a recorded answer
    assert stored_rows(db_url) == stored_rows(original)


def _env(server: Any, db_url: str) -> dict[str, str | None]:
    return {"CATALOG_DATABASE_URL": db_url, "QIANFAN_ACCESS_KEY": AK, "QIANFAN_SECRET_KEY": SK,
            "QIANFAN_CONSOLE_API_BASE_URL": server.url, "CATALOG_CONFIG": None}


def _run(server: Any, db_url: str, *argv: str) -> Result:
    return CliRunner().invoke(cli, list(argv), env=_env(server, db_url))


def test_eval_track_list_untrack(db_url: str) -> None:
    catalog = FakeCatalog.generate(seed=72, model_sets=1, comp_tasks=2, eval_exports=2)
    first, second = (str(k) for k in catalog.keys("eval_result_export"))
    with fake_console(catalog) as server:
        unknown = _run(server, db_url, "eval", "track", "999999")
        assert unknown.exit_code == ExitCode.CONFIG
        assert "unknown evaluation export '999999'" in unknown.output  # no flag was given
        bad = _run(server, db_url, "eval", "track", "not an id")
        assert bad.exit_code == ExitCode.CONFIG and "amemt-" in bad.output
        assert _run(server, db_url, "eval", "track", first).exit_code == 0
        again = _run(server, db_url, "eval", "track", first)
        assert again.exit_code == 0 and "already tracked" in again.output
        assert _run(server, db_url, "eval", "track", second).exit_code == 0
        synced = _run(server, db_url, "sync", "--qps", "0")
        assert synced.exit_code == 0, synced.output
        assert set(stored_rows(db_url)["eval_result_export"]) == {first, second}
        listed = _run(server, db_url, "eval", "list", "--format", "csv")
        assert listed.exit_code == 0
        assert first in listed.output and second in listed.output
        assert _run(server, db_url, "eval", "untrack", first).exit_code == 0
        missing = _run(server, db_url, "eval", "untrack", first)
        assert missing.exit_code == ExitCode.CONFIG and "not tracked" in missing.output
        synced = _run(server, db_url, "sync", "--qps", "0")
        assert synced.exit_code == 0, synced.output
    assert set(stored_rows(db_url)["eval_result_export"]) == {second}
    assert SK not in listed.output
