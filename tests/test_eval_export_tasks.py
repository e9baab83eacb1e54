"""Evaluation-result export tasks through the V2 call (``eval_result_export_task``), on SQLite
and PostgreSQL: off unless named in ``--kinds``; when on, the tracked ``amemt-`` refs are read
with DescribeEvalResultExportTask instead of the V1 route, with history and changes; a task
leaves only when untracked, never because its call failed.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text

from catalog import db, tracking
from catalog.cli import cli
from catalog.errors import ConfigError, ExitCode
from catalog.fake.catalog import FakeCatalog
from catalog.fake.faults import FaultPlan
from catalog.fake.server import FakeServer
from catalog.kinds import DEFAULT_KINDS, KINDS
from catalog.schema import SPECS, api_drift, changes
from catalog.sync import SyncOptions, run_sync
from tests.helpers import AK, SK, expected_rows, fake_console, options, stored_rows, sync

KIND = "eval_result_export_task"
V2 = "DescribeEvalResultExportTask"
V1 = "/wenxinworkshop/modelrepo/eval/result/export/info"
DOC = Path(__file__).resolve().parent.parent / "docs" / "schema.md"


def _catalog(seed: int) -> FakeCatalog:
    return FakeCatalog.generate(seed=seed, model_sets=2, system_sets=0, comp_tasks=3,
                                eval_exports=2, fine_tuning_jobs=1, tasks_per_job=1,
                                eval_tasks=3, eval_export_tasks=3, services=1, preset_services=1)


def _v1_ints(catalog: FakeCatalog) -> list[str]:
    return [str(k) for k in catalog.keys("eval_result_export")]


def _on(db_url: str, server: FakeServer, refs: list[str], **kw: Any) -> Any:
    """A sync with every kind, the V2 one included."""
    return sync(db_url, server, kinds=KINDS, eval_export_ids=refs, include_system=False, **kw)


def _rows(db_url: str, table: Any, *where: Any) -> list[dict[str, Any]]:
    engine = db.create_engine_for(db_url)
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(select(table).where(*where)).mappings()]
    engine.dispose()
    return rows


def _want(catalog: FakeCatalog, tasks: list[str]) -> dict[str, dict[str, Any]]:
    rows = expected_rows(catalog, export_tasks=tasks)[KIND]
    return {k: {c: v for c, v in r.items() if c != "raw"} for k, r in rows.items()}


def test_the_kind_is_off_unless_named() -> None:
    assert KIND in KINDS and KIND not in DEFAULT_KINDS
    assert KIND not in SyncOptions(database_url="sqlite://", access_key="a", secret_key="b").kinds
    help_text = CliRunner().invoke(cli, ["sync", "--help"]).output
    assert "Not available currently" in " ".join(help_text.split())


def test_off_by_default_an_amemt_ref_is_read_by_the_v1_route_only(db_url: str) -> None:
    catalog = _catalog(81)
    by_str = [catalog.get("eval_result_export", k)["exportIDStr"]
              for k in catalog.keys("eval_result_export")]
    with fake_console(catalog) as server:
        summary = sync(db_url, server, eval_export_ids=by_str)
        v2_calls, v1_calls = server.call_count(V2), server.call_count(V1)
    assert summary.status == "success"
    assert v2_calls == 0 and v1_calls == len(by_str)
    assert summary.counts[f"{KIND}_seen"] == 0 and f"{KIND} skipped" in summary.line()
    assert stored_rows(db_url)[KIND] == {}
    assert len(stored_rows(db_url)["eval_result_export"]) == len(by_str)


def test_on_the_tracked_tasks_are_stored_and_a_new_state_is_history_and_a_change(
    db_url: str,
) -> None:
    catalog = _catalog(82)
    tasks = catalog.keys(KIND)
    ints = _v1_ints(catalog)
    with fake_console(catalog) as server:
        first = _on(db_url, server, [*ints, *tasks])
        # amemt- refs go to the V2 call instead of the V1 route; the numbers stay on V1
        assert sorted(c.body["taskId"] for c in server.calls if c.action == V2) == sorted(tasks)
        assert sorted(str(c.body["exportID"]) for c in server.calls if c.route == V1) == sorted(
            ints)
        assert stored_rows(db_url)[KIND] == _want(catalog, tasks)
        changed = tasks[0]
        old = catalog.get(KIND, changed)["state"]
        new = next(s for s in ("Queued", "Running", "Failed", "Succeeded") if s != old)
        catalog.change(KIND, changed, random.Random(1), status=new)
        second = _on(db_url, server, [])  # tracked since the first run
    assert first.status == second.status == "success"
    assert first.counts[f"{KIND}_inserted"] == len(tasks)
    assert second.counts[f"{KIND}_updated"] == 1 and second.counts[f"{KIND}_deleted"] == 0
    stored = stored_rows(db_url)[KIND]
    assert stored == _want(catalog, tasks) and stored[changed]["state"] == new
    t = SPECS[KIND]
    history = _rows(db_url, t.history, t.history.c.task_id == changed)
    assert sorted((h["state"], h["valid_to"] is None) for h in history) == sorted(
        [(old, False), (new, True)])
    states = [(c["old_value"], c["new_value"]) for c in _rows(
        db_url, changes, changes.c.kind == KIND, changes.c.entity_id == changed,
        changes.c.field == "state")]
    assert states == [(f'"{old}"', f'"{new}"')]
    # typed columns: the storage path from the answer's ...Path field, a link without its
    # rotating query, the exported content as a list; the path's undocumented key is drift
    for row in stored.values():
        assert row["storage_path"] and row["storage_type"] in ("BOS", "sysStorage")
        assert row["download_url"] is None or "?" not in row["download_url"]
        assert row["export_content"] and isinstance(row["export_content"], list)
    assert row["eval_id"] in catalog.keys("eval_task")
    drift = {(d["call"], d["field"], d["drift"]) for d in _rows(db_url, api_drift)}
    assert (V2, "storagePath", "unknown") in drift


def test_untracking_deletes_a_task_on_the_next_run(db_url: str) -> None:
    catalog = _catalog(83)
    gone, kept = catalog.keys(KIND)[:2]
    with fake_console(catalog) as server:
        _on(db_url, server, [gone, kept])
        engine = db.create_engine_for(db_url)
        with engine.connect() as conn:
            tracking.untrack(conn, gone)
            conn.commit()
        engine.dispose()
        summary = _on(db_url, server, [])
    assert summary.status == "success" and summary.counts[f"{KIND}_deleted"] == 1
    assert set(stored_rows(db_url)[KIND]) == {kept}
    assert gone in stored_rows(db_url, current_only=False)[KIND]


@pytest.mark.parametrize("how", ["5xx", "removed"])
def test_a_failing_v2_call_makes_the_run_partial_and_deletes_nothing(
    db_url: str, how: str
) -> None:
    catalog = _catalog(84)
    tasks = catalog.keys(KIND)[:2]
    with fake_console(catalog) as server:
        _on(db_url, server, tasks)
        before = stored_rows(db_url, current_only=False)[KIND]
        if how == "5xx":
            server.faults = FaultPlan().rate("5xx", 1.0, actions=[V2])
        else:  # the service no longer answers it: still tracked, so kept
            catalog.remove(KIND, tasks[0])
        broken = _on(db_url, server, [], max_attempts=2)
    failed = 2 if how == "5xx" else 1
    assert broken.status == "partial" and broken.errors == failed
    assert broken.counts[f"{KIND}_deleted"] == 0
    assert stored_rows(db_url, current_only=False)[KIND] == before
    assert set(stored_rows(db_url)[KIND]) == set(tasks)


def test_a_key_denied_the_v2_call_warns_once_and_keeps_the_tasks(db_url: str) -> None:
    catalog = _catalog(85)
    tasks = catalog.keys(KIND)
    with fake_console(catalog) as server:
        _on(db_url, server, tasks)
    before = stored_rows(db_url)[KIND]
    with fake_console(catalog, denied_actions=[V2]) as server:
        seen: list[tuple[str, dict[str, Any]]] = []
        summary = run_sync(options(db_url, server, kinds=KINDS, eval_export_ids=[]),
                           observer=lambda n, d: seen.append((n, d)))
    assert summary.status == "partial" and summary.denied == (KIND,)
    warnings = [d for n, d in seen if n == "error"]
    assert len(warnings) == 1 and "QianfanReadAccessPolicy" in str(warnings[0]["message"])
    assert stored_rows(db_url)[KIND] == before


def test_a_new_amemt_ref_is_checked_by_the_call_that_will_read_it(db_url: str) -> None:
    catalog = _catalog(86)
    task = catalog.keys(KIND)[0]
    with fake_console(catalog) as server:
        with pytest.raises(ConfigError, match=f"'amemt-nosuchtask0'.*{V2}"):
            _on(db_url, server, ["amemt-nosuchtask0"])
        assert server.call_count(V1) == 0  # the V2 call reads amemt- refs when on
        asked = server.call_count(V2)
        # off, the V1 route checks it (and in the fake does not know a V2 task: INVENTED)
        with pytest.raises(ConfigError, match=f"'{task}'.*EvalResultExportInfo"):
            sync(db_url, server, eval_export_ids=[task])
        assert server.call_count(V2) == asked == 1


def test_eval_track_checks_with_the_kinds_given(db_url: str, tmp_path: Any) -> None:
    catalog = _catalog(87)
    task = catalog.keys(KIND)[0]
    with fake_console(catalog) as server:
        env = {"CATALOG_DATABASE_URL": db_url, "QIANFAN_ACCESS_KEY": AK,
               "QIANFAN_SECRET_KEY": SK, "QIANFAN_CONSOLE_API_BASE_URL": server.url,
               "CATALOG_CONFIG": None}
        refused = CliRunner().invoke(cli, ["eval", "track", task], env=env)
        tracked = CliRunner().invoke(
            cli, ["eval", "track", task, "--kinds", ",".join(KINDS)], env=env)
        summary = _on(db_url, server, [])
        listed = CliRunner().invoke(cli, ["eval", "list", "--format", "json"], env=env)
    assert refused.exit_code == ExitCode.CONFIG and "EvalResultExportInfo" in refused.output
    assert tracked.exit_code == 0, tracked.output
    assert summary.status == "success" and set(stored_rows(db_url)[KIND]) == {task}
    # eval list shows the V2 task's state beside the (here empty) V1 columns
    (row,) = json.loads(listed.stdout)
    assert (row["export_ref"], row["state"], row["task_state"]) == (
        task, None, catalog.get(KIND, task)["state"])


def test_the_schema_doc_example_links_export_tasks_to_their_evaluation(db_url: str) -> None:
    catalog = _catalog(88)
    tasks = catalog.keys(KIND)[:2]
    with fake_console(catalog) as server:
        assert _on(db_url, server, tasks).status == "success"
        evals = {t: server.answer("/v2/eval", "DescribeEvalTask", {"taskId": t}, None)
                 for t in catalog.keys("eval_task")}
    blocks = re.findall(r"```sql( \w+)?\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    (sql,) = [b for tag, b in blocks if "export_task_id" in b and not tag.strip()]
    engine = db.create_engine_for(db_url)
    with engine.connect() as conn:
        got = [tuple(r) for r in conn.execute(text(sql))]
    engine.dispose()
    want = []
    for task in tasks:
        item = catalog.get(KIND, task)
        ev = evals[item["evalId"]]
        want.append(("default", ev["taskId"], ev["taskName"], ev["state"], task,
                     item["state"], item["storageType"], item["downloadUrl"] or None))
    assert got == sorted(want, key=lambda r: (r[1], r[4]))
