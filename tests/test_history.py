"""History and deletion rules: what a run may delete, what it must not write, what it records.

Each test syncs the fake console into a real database (SQLite and PostgreSQL) and reads the
result back through ``catalog.queries`` -- the same functions the CLI uses.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from typing import Any

import pytest
from sqlalchemy import func, select

from catalog import db, queries
from catalog.errors import ExitCode, MassDeleteRefused
from catalog.fake.catalog import FakeCatalog
from catalog.fake.faults import FaultPlan
from catalog.kinds import model_sets
from catalog.schema import SPECS, changes, sync_errors, sync_runs
from tests.helpers import (
    expected_rows,
    fake_console,
    stored_rows,
    sync,
    table_rows,
    tracked_only,
)


def _counts(db_url: str) -> dict[str, int]:
    """Rows in every history table and in ``changes``."""
    engine = db.create_engine_for(db_url)
    with engine.connect() as conn:
        out = {
            spec.history.name: int(
                conn.execute(select(func.count()).select_from(spec.history)).scalar_one()
            )
            for spec in SPECS.values()
        }
        out["changes"] = int(conn.execute(select(func.count()).select_from(changes)).scalar_one())
    engine.dispose()
    return out


def _query(db_url: str, fn: Any, *args: Any, **kw: Any) -> list[dict[str, Any]]:
    engine = db.create_engine_for(db_url)
    with engine.connect() as conn:
        columns, rows = fn(conn, *args, **kw)
    engine.dispose()
    return [dict(zip(columns, row, strict=True)) for row in rows]


def _run(db_url: str, run_id: int) -> dict[str, Any]:
    engine = db.create_engine_for(db_url)
    with engine.connect() as conn:
        row = conn.execute(select(sync_runs).where(sync_runs.c.run_id == run_id)).mappings().one()
    engine.dispose()
    return dict(row)


def _errors(db_url: str, run_id: int | None) -> list[dict[str, Any]]:
    engine = db.create_engine_for(db_url)
    with engine.connect() as conn:
        rows = conn.execute(
            select(sync_errors).where(sync_errors.c.run_id == run_id)
            .order_by(sync_errors.c.error_id)
        ).mappings().all()
    engine.dispose()
    return [dict(r) for r in rows]


def _last_run(db_url: str) -> dict[str, Any]:
    engine = db.create_engine_for(db_url)
    with engine.connect() as conn:
        run_id = conn.execute(select(func.max(sync_runs.c.run_id))).scalar_one()
    engine.dispose()
    return _run(db_url, int(run_id))


def test_unchanged_resync_writes_no_history_or_change_rows(db_url: str) -> None:
    catalog = FakeCatalog.generate(seed=21, model_sets=3, comp_tasks=10, eval_exports=2)
    with fake_console(catalog) as server:
        first = sync(db_url, server, workers=2)
        before = _counts(db_url)
        again = sync(db_url, server, workers=2)
    assert again.status == "success" and again.run_id is not None
    assert _counts(db_url) == before
    assert _query(db_url, queries.changes_query, run_id=again.run_id) == []
    # the latest run changed nothing, so the report of the latest run's changes is empty
    assert _query(db_url, queries.report, "latest_changes") == []
    # the first run's rows are all inserts, one per entity, with every tracked column
    inserted = _query(db_url, queries.changes_query, run_id=first.run_id)
    assert {r["operation"] for r in inserted} == {"insert"}
    assert len(inserted) == sum(len(v) for v in expected_rows(catalog).values())
    for row in inserted:
        assert row["field"] is None and row["old_value"] is None
        assert set(json.loads(row["new_value"])) == set(SPECS[row["kind"]].tracked)


def test_rotating_signed_url_is_not_a_change(db_url: str) -> None:
    """The export's download URL is signed per call; only its stable part is tracked."""
    catalog = FakeCatalog.generate(seed=22, model_sets=3, comp_tasks=4, export_share=1.0)
    with fake_console(catalog) as server:
        sync(db_url, server, workers=2)
        signed = server.signed_download_url("https://example.invalid/x")
        before = _counts(db_url)
        sync(db_url, server, workers=2)
    assert "?" in signed  # the fake does sign, so the test below is not vacuous
    assert _counts(db_url) == before
    urls = [r["download_url"] for r in stored_rows(db_url)["model_export"].values()]
    assert any(urls) and all("?" not in u for u in urls if u)


def test_partial_walk_deletes_only_what_a_complete_listing_left_out(db_url: str) -> None:
    """Every DescribeModel fails: the versions are kept as they were (no error answer deletes),
    but the one the set's modelIds stopped listing is deleted, with its export."""
    catalog = FakeCatalog.generate(seed=23, model_sets=3, system_sets=0, comp_tasks=6,
                                   eval_exports=1)
    with fake_console(catalog) as server:
        sync(db_url, server, workers=2)
        before_rows = stored_rows(db_url)
        version = catalog.keys("model_version")[0]
        catalog.remove("model_version", version)
        server.faults = FaultPlan().once("DescribeModel", "5xx", times=1000)
        partial = sync(db_url, server, workers=2, max_attempts=1, allow_mass_delete=True)
    assert partial.status == "partial" and partial.run_id is not None
    deleted = {kind: partial.counts.get(f"{kind}_deleted", 0) for kind in SPECS}
    assert deleted["model_version"] == 1
    assert deleted["model_export"] == (1 if version in before_rows["model_export"] else 0)
    assert sum(deleted.values()) == deleted["model_version"] + deleted["model_export"]
    ops = [(r["kind"], r["entity_id"]) for r in
           _query(db_url, queries.changes_query, run_id=partial.run_id)
           if r["operation"] == "delete"]
    assert ("model_version", version) in ops
    after = stored_rows(db_url)
    assert version not in after["model_version"]
    kept = {k: v for k, v in before_rows["model_version"].items() if k != version}
    assert after["model_version"] == kept


def test_a_failed_task_listing_deletes_no_task_and_ends_partial(db_url: str) -> None:
    """The task listing never answers readably: the run completes as partial (exit 3), records
    the failed listing, and deletes no task, though one left the catalog."""
    catalog = FakeCatalog.generate(seed=24, model_sets=3, system_sets=0, comp_tasks=6)
    with fake_console(catalog) as server:
        sync(db_url, server, workers=2)
        before_rows = stored_rows(db_url)
        before = _counts(db_url)
        catalog.remove("model_set", catalog.keys("model_set")[0])
        catalog.remove("compression_task", catalog.keys("compression_task")[0])
        server.faults = FaultPlan().once("DescribeModelCompTasks", "malformed", times=1000)
        summary = sync(db_url, server, workers=2, max_attempts=1, allow_mass_delete=True)
    assert summary.status == "partial" and summary.exit_code == ExitCode.PARTIAL
    assert summary.message == "1 entities failed; see sync_errors"
    assert _last_run(db_url)["error"] == "1 entities failed; see sync_errors"
    errors = _errors(db_url, summary.run_id)
    assert [(e["kind"], e["call"], e["entity_id"]) for e in errors] == [
        ("compression_task", "DescribeModelCompTasks", None)]
    assert errors[0]["message"].startswith("DescribeModelCompTasks: answer is not JSON")
    assert stored_rows(db_url)["compression_task"] == before_rows["compression_task"]
    deletes = [r for r in _query(db_url, queries.changes_query) if r["operation"] == "delete"]
    assert [r for r in deletes if r["kind"] == "compression_task"] == []
    assert _counts(db_url)["compression_tasks_history"] == before["compression_tasks_history"]


@pytest.mark.parametrize("batch_size", [2, 500])
def test_a_successful_run_deletes_exactly_what_left_the_catalog(
    db_url: str, batch_size: int
) -> None:
    """Tasks turn failed (their reasons are fetched by a second call) while others leave: the run
    deletes the ones that left and no other, whatever the batch size."""
    catalog = FakeCatalog.generate(seed=31, model_sets=2, system_sets=0, comp_tasks=120,
                                   eval_exports=0)
    rng = random.Random(5)
    with fake_console(catalog) as server:
        sync(db_url, server, workers=4)
        live = [k for k in catalog.keys("compression_task")
                if catalog.get("compression_task", k)["status"] != "failed"]
        for key in live[:40]:
            catalog.change("compression_task", key, rng, status="failed")
        gone = set(live[-3:])
        for key in gone:
            catalog.remove("compression_task", key)
        summary = sync(db_url, server, workers=4, batch_size=batch_size, commit_interval=0)
    assert summary.status == "success", summary.message
    deleted = {r["entity_id"] for r in _query(db_url, queries.changes_query, run_id=summary.run_id)
               if r["operation"] == "delete"}
    assert deleted == gone
    assert stored_rows(db_url) == tracked_only(expected_rows(catalog))


def test_mass_delete_guard_trips_and_deletes_nothing(db_url: str) -> None:
    catalog = FakeCatalog.generate(seed=25, model_sets=4, system_sets=0, comp_tasks=6)
    with fake_console(catalog) as server:
        sync(db_url, server, workers=2)
        before_rows = stored_rows(db_url)
        before = _counts(db_url)
        for key in catalog.keys("model_set")[:3]:
            catalog.remove("model_set", key)
        with pytest.raises(MassDeleteRefused) as refused:
            sync(db_url, server, workers=2)
        assert refused.value.exit_code == 8
        assert "--allow-mass-delete" in str(refused.value)
        assert stored_rows(db_url) == before_rows
        assert _counts(db_url) == before
        assert _last_run(db_url)["status"] == "failed"
        allowed = sync(db_url, server, workers=2, allow_mass_delete=True)
    assert allowed.counts["model_set_deleted"] == 3
    assert stored_rows(db_url) == tracked_only(expected_rows(catalog))


def test_removed_then_back_is_deleted_then_restored_in_history(db_url: str) -> None:
    catalog = FakeCatalog.generate(seed=26, model_sets=3, system_sets=0, comp_tasks=6)
    rng = random.Random(1)
    task = catalog.keys("compression_task")[0]
    with fake_console(catalog) as server:
        r1 = sync(db_url, server, workers=2)
        removal = catalog.remove("compression_task", task)
        r2 = sync(db_url, server, workers=2, allow_mass_delete=True)
        catalog.restore("compression_task", removal)
        r3 = sync(db_url, server, workers=2)
        catalog.change("compression_task", task, rng)
        r4 = sync(db_url, server, workers=2)
    assert None not in (r1.run_id, r2.run_id, r3.run_id, r4.run_id)
    # the run that brought it back counts it as new (a restore is an insert to the summary)
    assert r3.counts["compression_task_inserted"] == 1
    assert r3.counts["compression_task_updated"] == 0
    ts = {r.run_id: _run(db_url, int(r.run_id))["started_at"] for r in (r1, r2, r3, r4)}
    ops = [(r["run_id"], r["operation"])
           for r in _query(db_url, queries.entity_changes, "compression_task", task)]
    assert [op for _, op in ops[:3]] == ["insert", "delete", "restore"]
    assert {op for _, op in ops[3:]} == {"update"}
    versions = _query(db_url, queries.history, "compression_task", task)
    assert len(versions) == 3
    first, back, changed = versions
    assert first["valid_from"] == ts[r1.run_id] and first["valid_to"] == ts[r2.run_id]
    assert first["valid_to_run_id"] == r2.run_id
    assert back["valid_from"] == ts[r3.run_id] and back["valid_to"] == ts[r4.run_id]
    assert changed["valid_from"] == ts[r4.run_id] and changed["valid_to"] is None
    # as-of: there before, gone in the gap, back after; the current row says so too
    def present(moment: dt.datetime) -> bool:
        return any(r["task_id"] == task
                   for r in _query(db_url, queries.as_of, "compression_task", moment))

    assert present(ts[r1.run_id])
    assert not present(ts[r2.run_id])
    assert present(ts[r3.run_id])
    assert not present(ts[r1.run_id] - dt.timedelta(seconds=1))
    assert stored_rows(db_url)["compression_task"][task]["name"] == changed["name"]
    (current,) = [r for r in table_rows(db_url, SPECS["compression_task"].table)
                  if r["task_id"] == task]
    assert current["deleted_at"] is None and current["deleted_run_id"] is None  # not stale


def test_scoped_sync_deletes_only_inside_its_scope(db_url: str) -> None:
    catalog = FakeCatalog.generate(seed=27, model_sets=3, system_sets=0, comp_tasks=4)
    sets = catalog.keys("model_set")
    inside, outside = sets[0], sets[1]
    name = catalog.get("model_set", inside)["modelSetName"]
    with fake_console(catalog) as server:
        sync(db_url, server, workers=2)
        gone_in = catalog.get("model_set", inside)["modelIds"][0]
        gone_out = catalog.get("model_set", outside)["modelIds"][0]
        catalog.remove("model_version", gone_in)
        catalog.remove("model_version", gone_out)
        scoped = sync(db_url, server, workers=2, model_sets=[name], include_system=False,
                      allow_mass_delete=True)
    assert scoped.run_id is not None
    deleted = {(r["kind"], r["entity_id"])
               for r in _query(db_url, queries.changes_query, run_id=scoped.run_id)
               if r["operation"] == "delete"}
    assert ("model_version", gone_in) in deleted
    assert ("model_version", gone_out) not in deleted
    assert gone_out in stored_rows(db_url)["model_version"]


def test_a_scoped_sync_deletes_compression_tasks_its_versions_listings_no_longer_name(
    db_url: str,
) -> None:
    """A scoped run lists compression tasks per version of its sets: a task gone from that
    listing is deleted, and one of a version outside the scope is not, though gone too."""
    catalog = FakeCatalog.generate(seed=29, model_sets=3, system_sets=0, comp_tasks=12)
    sets = catalog.keys("model_set")
    inside, outside = sets[0], sets[1]
    versions_in = set(catalog.get("model_set", inside)["modelIds"])
    versions_out = set(catalog.get("model_set", outside)["modelIds"])
    tasks = {key: catalog.get("compression_task", key) for key in catalog.keys("compression_task")}
    task_in = next(k for k, t in tasks.items() if t["sourceModelId"] in versions_in)
    task_out = next(k for k, t in tasks.items() if t["sourceModelId"] in versions_out)
    name = catalog.get("model_set", inside)["modelSetName"]
    with fake_console(catalog) as server:
        sync(db_url, server, workers=2)
        catalog.remove("compression_task", task_in)
        catalog.remove("compression_task", task_out)
        scoped = sync(db_url, server, workers=2, model_sets=[name], include_system=False,
                      allow_mass_delete=True)
    assert scoped.status == "success"
    deleted = {(r["kind"], r["entity_id"])
               for r in _query(db_url, queries.changes_query, run_id=scoped.run_id)
               if r["operation"] == "delete"}
    assert ("compression_task", task_in) in deleted
    assert ("compression_task", task_out) not in deleted
    assert task_in not in stored_rows(db_url)["compression_task"]
    assert task_out in stored_rows(db_url)["compression_task"]


def test_a_reused_connection_does_not_carry_seen_keys_into_the_next_run(db_url: str) -> None:
    """Which entities a run saw lives in connection-local temporary tables; a second run on the
    same (pooled) connection must start from none, or it would miss deletions."""
    from catalog import runs
    from catalog.store import Store

    catalog = FakeCatalog.generate(seed=28, model_sets=1, system_sets=0, comp_tasks=1)
    obj = catalog.get("model_set", catalog.keys("model_set")[0])
    row = {**model_sets.row(obj, is_system=False), "raw": obj}
    engine = db.create_engine_for(db_url)
    with engine.connect() as conn:
        db.upgrade(conn)
        run_a, ts_a = runs.start_run(conn, {})
        Store(conn, run_a, ts_a).write_batch("model_set", [row])
        conn.commit()
        run_b, ts_b = runs.start_run(conn, {})
        store = Store(conn, run_b, ts_b)  # saw nothing
        assert store.seen_count("model_set") == 0
        assert store.count_unseen("model_set", SPECS["model_set"].table.c.is_system.is_(False)) \
            == (1, 1)
        conn.rollback()
    engine.dispose()


def test_a_reused_connection_does_not_carry_completed_scopes_into_the_next_run(
    db_url: str,
) -> None:
    """The scopes whose walk completed (and the keys kept) are connection-local temporary rows
    too: carried into the next run on the same pooled connection, a scope that run never
    completed would delete whatever it did not see there."""
    from catalog import runs
    from catalog.store import Store

    catalog = FakeCatalog.generate(seed=28, model_sets=1, system_sets=0, comp_tasks=1)
    obj = catalog.get("model_set", catalog.keys("model_set")[0])
    row = {**model_sets.row(obj, is_system=False), "raw": obj}
    key = str(row["model_set_id"])
    t = SPECS["model_set"].table
    engine = db.create_engine_for(db_url)
    with engine.connect() as conn:
        db.upgrade(conn)
        run_a, ts_a = runs.start_run(conn, {})
        first = Store(conn, run_a, ts_a)
        first.write_batch("model_set", [row])
        first.add_scopes("model_set", [key])
        first.keep("model_set", [key])
        assert conn.execute(first.scope_keys("model_set")).scalars().all() == [key]
        conn.commit()
        run_b, ts_b = runs.start_run(conn, {})
        store = Store(conn, run_b, ts_b)  # completed no scope, saw nothing
        assert conn.execute(store.scope_keys("model_set")).scalars().all() == []
        in_scope = t.c.model_set_id.in_(store.scope_keys("model_set"))
        assert store.count_unseen("model_set", in_scope) == (0, 1)
        assert store.seen_count("model_set") == 0
        conn.rollback()
    engine.dispose()


def test_each_model_set_listing_deletes_only_its_own_sets(db_url: str) -> None:
    """The custom and the preset listing each decide the deletes of their own sets: a complete
    custom listing deletes the custom set it no longer names, while a preset listing that
    failed deletes no preset (they were not seen, not found gone)."""
    catalog = FakeCatalog.generate(seed=31, model_sets=3, system_sets=2, comp_tasks=2,
                                   eval_exports=0)
    sets = catalog.keys("model_set")
    custom = [k for k in sets if not catalog.is_preset_set(k)]
    presets = [k for k in sets if catalog.is_preset_set(k)]
    assert len(custom) == 3 and len(presets) == 2
    with fake_console(catalog) as server:
        assert sync(db_url, server, include_system=True).status == "success"
        catalog.remove("model_set", custom[0])
        server.faults = FaultPlan().rate("5xx", 1.0, actions=["DescribeSystemModelSets"])
        broken = sync(db_url, server, include_system=True, allow_mass_delete=True)
    assert broken.status == "partial"
    alive = stored_rows(db_url)["model_set"]
    assert custom[0] not in alive
    assert set(custom[1:]) | set(presets) == set(alive)
    assert broken.counts["model_set_deleted"] == 1
