"""The store's bulk path writes exactly what SQLAlchemy Core would have written.

``catalog.bulk.Bulk`` bypasses Core's per-row parameter processing for speed (bench/run.py db);
these tests pin that the values reaching the database are the same: UTC times in SQLite's text
format, JSON and JSONB, NULLs for absent keys, run constants, and no change rows for a no-op batch.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    Integer,
    String,
    Text,
    func,
    select,
    true,
)
from sqlalchemy.dialects.sqlite import pysqlite

from catalog import db, runs
from catalog.bulk import (
    _json_default,
    _processor,
    _sqlite_json,
    _sqlite_json_or_null,
    _sqlite_utc,
    driver_rows,
    to_json,
)
from catalog.schema import (
    SPECS,
    JsonValue,
    UTCDateTime,
    changes,
    compression_tasks,
    compression_tasks_history,
)
from catalog.store import Store, seen

CST = dt.timezone(dt.timedelta(hours=8))


@pytest.mark.parametrize(
    "value",
    [
        None,
        dt.datetime(2024, 6, 1, 9, 0, 0, tzinfo=CST),
        dt.datetime(2023, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
        dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
        dt.datetime(2024, 1, 1, tzinfo=dt.timezone(dt.timedelta(0))),  # UTC, not dt.UTC itself
        dt.datetime(1999, 1, 2, 3, 4, 5, 6, tzinfo=dt.timezone(-dt.timedelta(hours=5, minutes=30))),
    ],
)
def test_sqlite_time_text_is_what_core_writes(value: dt.datetime | None) -> None:
    dialect = pysqlite.dialect()
    core = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    sqlite_text = DateTime().dialect_impl(dialect).bind_processor(dialect)
    assert core is not None and sqlite_text is not None
    assert _sqlite_utc(value) == core(value)
    if value is not None:
        assert _sqlite_utc(value) == sqlite_text(value.astimezone(dt.UTC).replace(tzinfo=None))


JSON_VALUES: list[Any] = [
    None,
    {"b": 1, "a": [1.5, 2, None, True, False], "c": {"z": "量化 W8", "e": "🚀", "q": 'a"\\b\n'}},
    [{"x": 1e-7, "y": -0.0, "big": 10**20}, "text", 0.1],
    {"nested": {"deep": [{"k": float("inf")}, {"k": float("nan")}]}},
    {},
    [],
    "plain",
]


@pytest.mark.parametrize("value", JSON_VALUES)
def test_fast_json_text_is_what_json_dumps_writes(value: Any) -> None:
    """The store builds json's C encoder once; its text must be json.dumps' to the byte."""
    dialect = pysqlite.dialect()
    core = JsonValue.dialect_impl(dialect).bind_processor(dialect)
    assert core is not None
    assert _processor(JsonValue, dialect) is _sqlite_json_or_null
    assert _sqlite_json_or_null(value) == core(value)
    assert _sqlite_json(value) == json.dumps(value)
    if value is not None:
        assert core(value) == json.dumps(value)
    else:  # none_as_null: SQL NULL, which IS NULL finds (JSON 'null' is not)
        assert core(value) is None and _sqlite_json(value) == "null"
    expected = json.dumps(value, default=_json_default, ensure_ascii=False, sort_keys=True)
    assert to_json(value) == expected


def test_change_json_has_times_in_utc_iso_form() -> None:
    value = {
        "t": dt.datetime(2024, 6, 1, 9, 0, tzinfo=CST),
        "u": dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    }
    assert to_json(value) == '{"t": "2024-06-01T01:00:00+00:00", "u": "2024-01-01T00:00:00+00:00"}'


def test_sqlite_time_refuses_naive() -> None:
    with pytest.raises(ValueError, match="naive"):
        _sqlite_utc(dt.datetime(2024, 1, 1))


def _task(n: int, **over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "task_id": f"amva-{n:06d}",
        "name": f"任务{n}",
        "description": None,
        "status": "running",
        "source_model_id": f"amv-{n % 7}",
        "model_id": None,
        "strategy": "Quantization",
        "quant_conf": "W8A16",
        "sparsity_ratio": 0.5,
        "config": {"strategy": "Quantization", "quantConf": "W8A16"},
        "create_time": dt.datetime(2024, 5, 1, 8, n % 60, tzinfo=CST),
        "finish_time": None,
        "raw": {"id": f"amva-{n:06d}", "n": n},
    }
    row.update(over)
    return row


def _open(url: str) -> tuple[Any, Any]:
    engine = db.create_engine_for(url)
    conn = db.connect(engine)
    db.ensure_schema(conn, True)
    return engine, conn


def _run(conn: Any, rows: list[dict[str, Any]]) -> tuple[int, Any]:
    run_id, run_ts = runs.start_run(conn, {})
    result = Store(conn, run_id, run_ts).write_batch("compression_task", rows)
    _finish(conn, run_id)
    return run_id, result


def _finish(conn: Any, run_id: int) -> None:
    runs.finish_run(conn, run_id, "success", {}, 0, 0, 0, None)
    conn.commit()


def test_bulk_round_trip_history_and_changes(db_url: str) -> None:
    engine, conn = _open(db_url)
    try:
        rows = [_task(i) for i in range(30)]
        del rows[3]["description"]  # an absent key is stored as NULL, like Core did
        run1, res = _run(conn, rows)
        assert len(res.inserted) == 30
        stored = {r.task_id: r for r in conn.execute(select(compression_tasks))}
        r0 = stored["amva-000000"]
        assert r0.create_time == dt.datetime(2024, 5, 1, 0, 0, tzinfo=dt.UTC)
        assert r0.config == {"strategy": "Quantization", "quantConf": "W8A16"}
        assert r0.raw == {"id": "amva-000000", "n": 0}
        assert r0.name == "任务0" and r0.sparsity_ratio == 0.5
        assert (r0.first_seen_run_id, r0.last_seen_run_id, r0.deleted_at) == (run1, run1, None)
        assert stored["amva-000003"].description is None

        # The same rows again: nothing written but the run's own row.
        before = conn.execute(select(func.count()).select_from(changes)).scalar_one()
        _, res2 = _run(conn, [_task(i) for i in range(30) if i != 3] + [rows[3]])
        assert res2.unchanged == 30 and not res2.written
        assert conn.execute(select(func.count()).select_from(changes)).scalar_one() == before

        # One field changed on two rows: history closed and reopened, one change row each.
        run3, res3 = _run(conn, [_task(i, status="succeeded" if i in (1, 2) else "running")
                                 for i in range(30) if i != 3])
        assert sorted(res3.updated) == ["amva-000001", "amva-000002"]
        h = compression_tasks_history
        versions = conn.execute(
            select(h.c.status, h.c.valid_to_run_id, h.c.valid_from_run_id)
            .where(h.c.task_id == "amva-000001")
            .order_by(h.c.history_id)
        ).all()
        assert [tuple(v) for v in versions] == [("running", run3, run1), ("succeeded", None, run3)]
        updates = conn.execute(
            select(changes.c.entity_id, changes.c.field, changes.c.old_value, changes.c.new_value)
            .where(changes.c.run_id == run3)
            .order_by(changes.c.entity_id)
        ).all()
        assert [tuple(u) for u in updates] == [
            ("amva-000001", "status", '"running"', '"succeeded"'),
            ("amva-000002", "status", '"running"', '"succeeded"'),
        ]
        assert conn.execute(select(compression_tasks.c.last_seen_run_id).where(
            compression_tasks.c.task_id == "amva-000001")).scalar_one() == run3
        assert conn.execute(select(compression_tasks.c.last_seen_run_id).where(
            compression_tasks.c.task_id == "amva-000005")).scalar_one() == run1
    finally:
        conn.close()
        engine.dispose()


def _sample(column: Any, n: int) -> Any:
    """A value of ``column``'s type that no default or NULL could pass for."""
    kind = column.type
    if isinstance(kind, UTCDateTime):
        return dt.datetime(2024, 5, 1, 8, n, 7, 123456, tzinfo=dt.UTC)
    if isinstance(kind, Boolean):
        return n % 2 == 0
    if isinstance(kind, BigInteger):
        return 2**40 + n
    if isinstance(kind, Integer):
        return 7 + n
    if isinstance(kind, Float):
        return 0.25 + n
    if isinstance(kind, String) and not isinstance(kind, Text) and kind.length:
        return f"{n}-{column.name}"[: kind.length]
    if isinstance(kind, (String, Text)):
        return f"{column.name} 名字 '{n}'"
    return {"column": column.name, "n": [n, None, "é"]}  # JSON


def test_every_kind_has_bulk_statements_that_run(db_url: str) -> None:
    """Each kind's statements (built lazily per kind by the writer) compile, run, and write what
    they were given: a row of every tracked column, a change row, a seen key, a refreshed raw."""
    engine, conn = _open(db_url)
    try:
        run_id, run_ts = runs.start_run(conn, {})
        store = Store(conn, run_id, run_ts)
        for n, (kind, spec) in enumerate(SPECS.items()):
            t = spec.table
            row = {c: _sample(t.c[c], n) for c in (spec.key, *spec.tracked)}
            row.update(raw={"kind": kind}, raw_hash=f"hash-{n}")
            assert store._prepared(kind, "upsert").execute(conn, [row]) == 1
            stored = conn.execute(select(t).where(t.c[spec.key] == row[spec.key])).mappings().one()
            assert {c: stored[c] for c in row} == row, kind
            assert stored["first_seen_run_id"] == stored["last_seen_run_id"] == run_id
            assert stored["deleted_at"] is None

            new_raw = {"kind": kind, "v": 2}
            refresh = {"refresh_key": row[spec.key], "raw": new_raw, "raw_hash": "h2"}
            assert store._prepared(kind, "refresh").execute(conn, [refresh]) == 1
            stored = conn.execute(select(t.c.raw, t.c.raw_hash)
                                  .where(t.c[spec.key] == row[spec.key])).one()
            assert tuple(stored) == (new_raw, "h2"), kind

            change = {"entity_id": str(row[spec.key]), "operation": "update", "field": "name",
                      "old_value": '"a"', "new_value": '"b"'}
            assert store._prepared(kind, "changes").execute(conn, [change]) == 1
            written = conn.execute(select(changes).where(changes.c.kind == kind)).mappings().one()
            assert {c: written[c] for c in change} == change
            assert (written["run_id"], written["changed_at"]) == (run_id, run_ts)

            assert store._prepared(kind, "seen").execute(conn, [{"entity_key": "k1"}]) == 1
            keys = conn.execute(select(seen.c.entity_key).where(seen.c.kind == kind)).scalars()
            assert list(keys) == ["k1"], kind
        conn.rollback()
    finally:
        conn.close()
        engine.dispose()


def test_driver_rows_are_the_rows_core_reads(db_url: str) -> None:
    """A ledger's scan reads the driver's tuples (``driver_rows``) instead of Core's rows: the
    same rows, each hashing as Core's row does (the ledger's fingerprint), for every kind's
    statement, in parts of the size asked; on PostgreSQL through a server-side cursor."""
    engine, conn = _open(db_url)
    try:
        run_id, run_ts = runs.start_run(conn, {})
        store = Store(conn, run_id, run_ts)
        rows = [{**_task(i), "raw_hash": f"h{i}"} for i in range(25)]
        for row in rows[:5]:
            row.update(status="failed", failed_reason="OOM")  # answered: "+" after the hash
        store.write_batch("compression_task", rows)
        for kind, spec in SPECS.items():
            stmt = store._hashes(spec)
            core = list(conn.execute(stmt))
            parts = list(driver_rows(conn, stmt, 7))
            assert [len(p) for p in parts] == [7] * (len(core) // 7) + (
                [len(core) % 7] if len(core) % 7 else []
            ), kind
            tuples = [row for part in parts for row in part]
            assert tuples == [tuple(row) for row in core], kind
            assert [hash(t) for t in tuples] == [hash(row) for row in core], kind
        tasks = [t for part in driver_rows(conn, store._hashes(SPECS["compression_task"]), 10)
                 for t in part]
        assert sorted(tasks) == sorted(
            (r["task_id"], r["raw_hash"] + ("+" if r["failed_reason"] else "")) for r in rows
        )
        if conn.dialect.name == "postgresql":
            scan = driver_rows(conn, store._hashes(SPECS["compression_task"]), 10)
            next(scan)
            cursors = conn.exec_driver_sql("SELECT name FROM pg_cursors").scalars().all()
            assert cursors == ["catalog_scan"]
            scan.close()  # the cursor closes with the generator
            assert conn.exec_driver_sql("SELECT count(*) FROM pg_cursors").scalar_one() == 0
        conn.rollback()
    finally:
        conn.close()
        engine.dispose()


def _temp_seen_rows(conn: Any) -> int:
    return int(conn.execute(select(func.count()).select_from(seen)).scalar_one())


def test_written_rows_are_seen_without_a_temporary_row(db_url: str) -> None:
    """A written row's last_seen_run_id marks it seen; only unchanged keys need the temp table.

    This also pins that the driver sums executemany's row counts: were it not to, the store would
    fall back to marking every key of the batch in the temporary table (correct, but slower).
    """
    engine, conn = _open(db_url)
    try:
        run_id, run_ts = runs.start_run(conn, {})
        store = Store(conn, run_id, run_ts)
        first = store.write_batch("compression_task", [_task(i) for i in range(30)])
        assert len(first.inserted) == 30
        assert _temp_seen_rows(conn) == 0
        assert store.seen_count("compression_task") == 30
        # The same keys again in the same run: unchanged now, counted once.
        assert store.write_batch("compression_task", [_task(i) for i in range(5)]).unchanged == 5
        assert _temp_seen_rows(conn) == 5
        assert store.seen_count("compression_task") == 30
        # (to delete, alive before this run): this run's own inserts do not dilute the share
        assert store.count_unseen("compression_task", true()) == (0, 0)
        conn.commit()

        run2, ts2 = runs.start_run(conn, {})
        store2 = Store(conn, run2, ts2)
        res = store2.write_batch("compression_task", [_task(i, status="failed") for i in range(10)])
        assert len(res.updated) == 10 and _temp_seen_rows(conn) == 0
        store2.write_batch("compression_task", [_task(i) for i in range(10, 20)])
        assert _temp_seen_rows(conn) == 10
        assert store2.seen_count("compression_task") == 20
        assert store2.count_unseen("compression_task", true()) == (10, 30)
        conn.rollback()
    finally:
        conn.close()
        engine.dispose()


def test_a_row_the_database_finds_unchanged_is_still_seen(sqlite_url: str) -> None:
    """Python's comparison and the upsert's IS DISTINCT FROM guard can disagree.

    SQLite's TEXT affinity stores the integer 8 as '8': Python sees a change, the database does
    not and keeps the row's old last_seen_run_id. The store must notice (row count) and mark the
    key seen, or the end of the walk would delete an entity the API just returned.
    """
    engine, conn = _open(sqlite_url)
    try:
        _run(conn, [_task(1, quant_conf="8")])
        run_id, run_ts = runs.start_run(conn, {})
        store = Store(conn, run_id, run_ts)
        store.write_batch("compression_task", [_task(1, quant_conf=8)])
        stored = select(compression_tasks.c.quant_conf, compression_tasks.c.last_seen_run_id)
        assert tuple(conn.execute(stored).one()) == ("8", run_id - 1)
        assert store.count_unseen("compression_task", true()) == (0, 1)
        assert store.seen_count("compression_task") == 1
        conn.rollback()
    finally:
        conn.close()
        engine.dispose()


def test_only_the_writer_skips_sqlite_foreign_key_checks(sqlite_url: str) -> None:
    """The sync's writer writes only its own run id; every other connection enforces the keys."""
    engines = ((db.writer_engine(sqlite_url), 0), (db.create_engine_for(sqlite_url), 1))
    for engine, expected in engines:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == expected
        engine.dispose()


def test_the_consistency_check_catches_a_dangling_run_id(sqlite_url: str) -> None:
    """The net under the writer's unchecked keys: the consistency check runs foreign_key_check."""
    from tests._proc import consistency_problems

    engine = db.writer_engine(sqlite_url)
    with engine.connect() as conn:
        db.ensure_schema(conn, True)
        conn.execute(changes.insert().values(
            run_id=999, changed_at=dt.datetime(2024, 1, 1, tzinfo=dt.UTC), kind="model_set",
            entity_id="x", operation="insert"))
        conn.commit()
    engine.dispose()
    assert any("foreign key violation" in p for p in consistency_problems(sqlite_url))


def test_without_sqlite_json_functions_keys_go_in_an_in_list(sqlite_url: str) -> None:
    """An SQLite built without JSON functions: the store falls back to a plain IN list."""
    from catalog.bulk import has_json_each as _has_json_each

    engine, conn = _open(sqlite_url)
    try:
        assert _has_json_each(conn)  # this machine's SQLite has them; force the fallback below
        run_id, run_ts = runs.start_run(conn, {})
        store = Store(conn, run_id, run_ts)
        store._json_each = False
        assert len(store.write_batch("compression_task", [_task(i) for i in range(30)]).inserted) \
            == 30
        conn.commit()
        run2, ts2 = runs.start_run(conn, {})
        store2 = Store(conn, run2, ts2)
        store2._json_each = False
        res = store2.write_batch("compression_task", [_task(i, status="failed") for i in range(20)])
        assert len(res.updated) == 20
        assert store2.count_unseen("compression_task", true()) == (10, 30)
        assert store2.delete_unseen("compression_task", true()) == 10
        conn.commit()
        h = compression_tasks_history
        open_versions = conn.execute(
            select(func.count()).select_from(h).where(h.c.valid_to.is_(None))
        ).scalar_one()
        assert open_versions == 20
    finally:
        conn.close()
        engine.dispose()


def _sampled(kind: str, key: str) -> dict[str, Any]:
    """A row of ``kind`` keyed ``key``, every tracked column set."""
    spec = SPECS[kind]
    row = {c: _sample(spec.table.c[c], 1) for c in spec.tracked}
    row.update({spec.key: key, "raw": {"kind": kind}, "raw_hash": f"hash-{kind}"})
    return row


def _a_version_and_its_export(conn: Any) -> str:
    """One run inserting a version and its export, which share the version's id: that id."""
    key = "amv-shared"
    run, ts = runs.start_run(conn, {})
    store = Store(conn, run, ts)
    for kind in ("model_version", "model_export"):
        assert store.write_batch(kind, [_sampled(kind, key)]).inserted == [key]
    _finish(conn, run)
    return key


def test_an_unchanged_version_does_not_make_its_export_seen(db_url: str) -> None:
    """A model export is keyed by its version's model id, so both kinds put the same key in
    the temporary table; only its kind column tells them apart. Read without it, an unchanged
    version counted its export as seen, and a complete listing that no longer named the export
    never deleted it."""
    engine, conn = _open(db_url)
    try:
        key = _a_version_and_its_export(conn)

        run2, ts2 = runs.start_run(conn, {})
        store2 = Store(conn, run2, ts2)
        assert store2.write_batch("model_version", [_sampled("model_version", key)]).unchanged == 1
        kinds = conn.execute(select(seen.c.kind, seen.c.entity_key)).all()
        assert [tuple(k) for k in kinds] == [("model_version", key)]  # seen by its key alone
        assert store2.count_unseen("model_version", true()) == (0, 1)
        assert store2.count_unseen("model_export", true()) == (1, 1)
        assert store2.delete_unseen("model_export", true()) == 1
        assert store2.delete_unseen("model_version", true()) == 0
        _finish(conn, run2)
        t = SPECS["model_export"].table
        assert conn.execute(select(t.c.deleted_run_id)).scalar_one() == run2
    finally:
        conn.close()
        engine.dispose()


def test_a_later_run_on_the_same_connection_does_not_inherit_its_seen_keys(
    db_url: str,
) -> None:
    """The temporary table lives as long as the connection, and a pooled writer connection
    serves run after run: each run's store empties it first. Left over, the keys an earlier
    run found unchanged counted as seen by the next one, whose complete listing then deleted
    none of the entities it no longer named."""
    engine, conn = _open(db_url)
    try:
        _run(conn, [_task(i) for i in range(10)])
        _, again = _run(conn, [_task(i) for i in range(10)])  # all unchanged: temporary rows
        assert again.unchanged == 10 and _temp_seen_rows(conn) == 10

        run3, ts3 = runs.start_run(conn, {})
        store3 = Store(conn, run3, ts3)
        assert _temp_seen_rows(conn) == 0
        assert store3.write_batch("compression_task", [_task(i) for i in range(3)]).unchanged == 3
        assert store3.seen_count("compression_task") == 3
        assert store3.count_unseen("compression_task", true()) == (7, 10)
        assert store3.delete_unseen("compression_task", true()) == 7
        _finish(conn, run3)
        alive = conn.execute(
            select(compression_tasks.c.task_id).where(compression_tasks.c.deleted_at.is_(None))
        ).scalars()
        assert sorted(alive) == [_task(i)["task_id"] for i in range(3)]
    finally:
        conn.close()
        engine.dispose()


def test_a_row_without_its_carried_column_keeps_the_stored_value(db_url: str) -> None:
    """A failed task's reason comes from its detail call; a row built from the listing alone
    (the task left ``failed``, or the detail call refused) has no ``failed_reason`` key. The
    stored reason is carried, not set to NULL: no history version and no change row for it."""
    engine, conn = _open(db_url)
    try:
        _run(conn, [_task(1, status="failed", failed_reason="OOM")])
        listed = _task(1, status="done")
        assert "failed_reason" not in listed
        run2, result = _run(conn, [listed])
        assert result.updated == ["amva-000001"]
        t = compression_tasks
        assert conn.execute(select(t.c.status, t.c.failed_reason)).one() == ("done", "OOM")
        fields = conn.execute(
            select(changes.c.field).where(changes.c.run_id == run2)
        ).scalars().all()
        assert fields == ["status"]
        h = compression_tasks_history
        current = conn.execute(select(h.c.failed_reason).where(h.c.valid_to.is_(None)))
        assert current.scalar_one() == "OOM"
    finally:
        conn.close()
        engine.dispose()


def test_the_last_of_two_answers_for_one_key_in_a_batch_is_stored(db_url: str) -> None:
    """A listing read page by page may name a task twice (pages shifting under it), with the
    task changed between: the later answer is the newer one, and is what the run stores, in
    its history and in its change row."""
    engine, conn = _open(db_url)
    try:
        run1, result = _run(conn, [_task(1, status="running"), _task(1, status="done")])
        assert result.inserted == ["amva-000001"]
        assert conn.execute(select(compression_tasks.c.status)).scalar_one() == "done"
        h = compression_tasks_history
        assert conn.execute(select(h.c.status)).scalars().all() == ["done"]
        (new_value,) = conn.execute(
            select(changes.c.new_value).where(changes.c.run_id == run1)
        ).scalars().all()
        assert json.loads(new_value)["status"] == "done"
    finally:
        conn.close()
        engine.dispose()


def test_one_entitys_changes_are_its_kinds_only(db_url: str) -> None:
    """A model export is keyed by its version's id: `history`'s changes of one entity are read
    by kind and key, or the version's changes showed the export's too."""
    from catalog import queries

    engine, conn = _open(db_url)
    try:
        key = _a_version_and_its_export(conn)
        for kind in ("model_version", "model_export"):
            columns, rows = queries.entity_changes(conn, kind, key)
            found = [dict(zip(columns, r, strict=True)) for r in rows]
            assert [r["operation"] for r in found] == ["insert"], (kind, found)  # its own
    finally:
        conn.close()
        engine.dispose()
