"""The sync against what the documents promise, and nothing more (issue: faithful API).

No error answer deletes anything; deletions come from complete listings; preset models go
through the preset calls; a failed task's reason is fetched once; a key without a permission
costs one warning; answers that differ from the documents are recorded as drift.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import pytest
from sqlalchemy import inspect, select

from catalog import db
from catalog.errors import ConfigError, ExitCode, MassDeleteRefused
from catalog.fake.catalog import FakeCatalog
from catalog.fake.server import FakeServer, V1Error, V2Error
from catalog.normalize import parse_time
from catalog.schema import api_drift, catalog_source, sync_errors
from catalog.sync import SyncOptions, run_sync
from tests.helpers import AK, SK, failing, fake_console, options, stored_rows, sync, table_rows

_rows = table_rows


def test_error_answers_delete_nothing_and_listings_do(db_url: str) -> None:
    catalog = FakeCatalog.generate(seed=31, model_sets=3, system_sets=0, comp_tasks=10,
                                   eval_exports=2)
    version = catalog.keys("model_version")[0]
    export = catalog.keys("eval_result_export")[0]
    with fake_console(catalog) as server:
        assert sync(db_url, server).status == "success"
        before = stored_rows(db_url)
        assert version in before["model_version"] and str(export) in before["eval_result_export"]
        # What the old sync read as "gone": a not-found code on /v2, 500002 on the eval route.
        failing(server, lambda r, a, b: a == "DescribeModel" and b.get("modelId") == version,
                V2Error(404, "ResourceNotFound", "model version not found"))
        failing(server, lambda r, a, b: "eval" in r and str(b.get("exportID")) == str(export),
                V1Error((500002, "export task not exist")))
        summary = sync(db_url, server)
        assert summary.status == "partial"
        assert summary.exit_code == ExitCode.PARTIAL
        after = stored_rows(db_url)
        assert after == before  # untouched, not deleted
        errors = {(e["kind"], e["entity_id"], e["code"]) for e in _rows(db_url, sync_errors)}
        assert ("model_version", version, "ResourceNotFound") in errors
        assert ("eval_result_export", str(export), "500002") in errors
        # The set's modelIds stop listing the version: now it goes.
        catalog.remove("model_version", version)
        summary = sync(db_url, server)
    assert summary.counts["model_version_deleted"] == 1
    assert version not in stored_rows(db_url)["model_version"]
    assert str(export) in stored_rows(db_url)["eval_result_export"]  # still tracked: kept


def test_untracking_an_eval_export_is_what_deletes_it(db_url: str) -> None:
    from catalog.schema import tracked_eval_exports

    catalog = FakeCatalog.generate(seed=32, model_sets=1, comp_tasks=2, eval_exports=2)
    first, second = (str(k) for k in catalog.keys("eval_result_export"))
    with fake_console(catalog) as server:
        sync(db_url, server)
        engine = db.create_engine_for(db_url)
        with engine.begin() as conn:
            conn.execute(
                tracked_eval_exports.delete().where(tracked_eval_exports.c.export_ref == first)
            )
        engine.dispose()
        summary = sync(db_url, server, eval_export_ids=[])
    assert summary.counts["eval_result_export_deleted"] == 1
    assert set(stored_rows(db_url)["eval_result_export"]) == {second}


def test_an_export_tracked_by_its_export_id_str_stays_while_its_call_fails(db_url: str) -> None:
    """A ref may be the export's ``exportIDStr`` (``amemt-...``), not its number: only
    untracking deletes the export, so one tracked that way whose call fails stays as stored.
    Read as tracked only when its ``exportID`` is a ref, it was deleted while still tracked."""
    catalog = FakeCatalog.generate(seed=32, model_sets=1, comp_tasks=2, eval_exports=2)
    by_str = {str(k): catalog.get("eval_result_export", k)["exportIDStr"]
              for k in catalog.keys("eval_result_export")}
    broken = next(iter(by_str))
    with fake_console(catalog) as server:
        assert sync(db_url, server, eval_export_ids=list(by_str.values())).status == "success"
        before = stored_rows(db_url)["eval_result_export"]
        assert set(before) == set(by_str)
        failing(server, lambda r, a, b: "eval" in r and b.get("exportID") == by_str[broken],
                V1Error((500002, "export task not exist")))
        summary = sync(db_url, server, eval_export_ids=[])  # tracked since the first run
    assert summary.status == "partial"
    assert summary.counts["eval_result_export_deleted"] == 0
    assert stored_rows(db_url)["eval_result_export"] == before


def test_presets_go_through_the_preset_calls_only(db_url: str) -> None:
    catalog = FakeCatalog.generate(seed=33, model_sets=2, system_sets=2, comp_tasks=4,
                                   eval_exports=0)
    presets = [k for k in catalog.keys("model_set")
               if catalog.get("model_set", k)["source"] == "System"]
    preset_versions = {m for k in presets for m in catalog.get("model_set", k)["modelIds"]}
    assert preset_versions
    with fake_console(catalog) as server:
        summary = sync(db_url, server, include_system=True)
        calls = list(server.calls)
    assert summary.status == "success"
    for call in calls:
        body = call.body or {}
        if call.action in ("DescribeModel", "DescribeModelExportTask", "DescribeModelSet"):
            assert body.get("modelId") not in preset_versions, call
            assert body.get("modelSetId") not in presets, call
    described = {c.body["modelId"] for c in calls if c.action == "DescribeSystemModel"}
    assert described == preset_versions
    stored = stored_rows(db_url)
    assert preset_versions <= set(stored["model_version"])
    assert {stored["model_set"][k]["source"] for k in presets} == {"System"}


def test_failed_task_reason_is_fetched_once_and_again_when_it_changes(db_url: str) -> None:
    catalog = FakeCatalog.generate(seed=34, model_sets=2, comp_tasks=30, eval_exports=0)
    failed = [k for k in catalog.keys("compression_task")
              if catalog.get("compression_task", k)["status"] == "failed"]
    assert failed
    with fake_console(catalog) as server:
        sync(db_url, server)
        details = [c.body["modelCompTaskId"] for c in server.calls
                   if c.action == "DescribeModelCompTask"]
        assert sorted(details) == sorted(failed)
        stored = stored_rows(db_url)["compression_task"]
        for key in failed:
            reason = server.answer("/v2/model", "DescribeModelCompTask",
                                   {"modelCompTaskId": key}, None)["failedReason"]
            assert reason and stored[key]["failed_reason"] == reason
        assert all(stored[k]["failed_reason"] is None for k in stored if k not in failed)
        n = len(server.calls)
        sync(db_url, server)
        assert not [c for c in server.calls[n:] if c.action == "DescribeModelCompTask"]
        # A task that changes (here: its name) is described again; the others are not.
        rng = random.Random(1)
        catalog.patch("compression_task", failed[0], fields={"name": "renamed"})
        n = len(server.calls)
        summary = sync(db_url, server)
        again = [c.body["modelCompTaskId"] for c in server.calls[n:]
                 if c.action == "DescribeModelCompTask"]
    assert again == [failed[0]]
    assert summary.counts["compression_task_updated"] == 1
    del rng


def test_a_key_without_export_permission_warns_once_and_keeps_exports(db_url: str) -> None:
    catalog = FakeCatalog.generate(seed=35, model_sets=3, comp_tasks=6, eval_exports=0)
    with fake_console(catalog) as server:
        sync(db_url, server)
        exports = stored_rows(db_url)["model_export"]
        assert exports
    for key in exports:  # the account loses them all: a listing would delete them, not this
        catalog.remove("model_export", key)
    catalog.change("compression_task", catalog.keys("compression_task")[0], random.Random(2))
    with fake_console(catalog, denied_actions=["DescribeModelExportTask"]) as server:
        seen: list[tuple[str, dict[str, Any]]] = []
        summary = run_sync(options(db_url, server), observer=lambda n, d: seen.append((n, d)))
        export_calls = sum(1 for c in server.calls if c.action == "DescribeModelExportTask")
    assert summary.status == "partial"
    assert summary.denied == ("model_export",)
    warnings = [d for n, d in seen if n == "error"]
    assert len(warnings) == 1 and "DescribeModelExportTask" in str(warnings[0]["message"])
    assert "FullControl" in str(warnings[0]["message"])
    # the first denial stops the kind; workers already in flight may have sent a few more
    assert export_calls <= 8
    assert stored_rows(db_url)["model_export"] == exports
    assert summary.counts["compression_task_updated"] == 1
    assert "not allowed" in summary.line()


def test_a_refused_detail_call_keeps_the_kind_and_its_deletes(db_url: str) -> None:
    """A key that may list compression tasks but not describe one (a failed task's reason):
    the failed tasks are recorded as listed and asked again next run, the refusal is reported
    once, and the listing, complete, still deletes what it no longer names (until 2026-12-02
    the refusal turned the whole kind off: nothing of it deleted, "not allowed" every run)."""
    catalog = FakeCatalog.generate(seed=35, model_sets=3, comp_tasks=12, eval_exports=0)
    failed = [t["id"] for t in catalog.items("compression_task") if t["status"] == "failed"]
    gone = next(t["id"] for t in catalog.items("compression_task") if t["status"] != "failed")
    assert failed
    denied = ["DescribeModelCompTask"]
    with fake_console(catalog, denied_actions=denied) as server:
        sync(db_url, server)
    first = stored_rows(db_url)["compression_task"]
    assert set(first) == set(catalog.keys("compression_task"))
    assert all(first[key]["failed_reason"] is None for key in failed)  # not asked: unknown
    catalog.remove("compression_task", gone)
    with fake_console(catalog, denied_actions=denied) as server:
        seen: list[tuple[str, dict[str, Any]]] = []
        summary = run_sync(options(db_url, server), observer=lambda n, d: seen.append((n, d)))
        detail_calls = sum(1 for c in server.calls if c.action == "DescribeModelCompTask")
    assert summary.status == "partial" and summary.denied == ()
    assert "not allowed" not in summary.line()
    warnings = [str(d["message"]) for n, d in seen if n == "error"]
    assert len(warnings) == 1 and "DescribeModelCompTask" in warnings[0]
    assert "recorded as listed" in warnings[0] and "QianfanReadAccessPolicy" in warnings[0]
    assert 1 <= detail_calls <= 8  # asked again; the first refusal stops the rest
    assert summary.counts["compression_task_deleted"] == 1
    assert set(stored_rows(db_url)["compression_task"]) == set(first) - {gone}
    with fake_console(catalog) as server:  # allowed again: the reasons are asked for
        summary = run_sync(options(db_url, server))
    assert summary.status == "success"
    stored = stored_rows(db_url)["compression_task"]
    assert all(stored[k]["failed_reason"] == catalog.get("compression_task", k)["failedReason"]
               for k in failed)


def test_a_task_that_failed_while_its_detail_call_is_refused_is_written_as_listed(
    db_url: str,
) -> None:
    """A refused detail call leaves the listing as all there is: a stored task the listing now
    says failed is written so, its reason unknown (NULL). Taken for a failed call instead, the
    task kept its old status every run for as long as the key lacks the permission."""
    catalog = FakeCatalog.generate(seed=35, model_sets=3, comp_tasks=12, eval_exports=0)
    turned = next(t["id"] for t in catalog.items("compression_task") if t["status"] != "failed")
    denied = ["DescribeModelCompTask"]
    with fake_console(catalog, denied_actions=denied) as server:
        sync(db_url, server)
    assert stored_rows(db_url)["compression_task"][turned]["status"] != "failed"
    catalog.change("compression_task", turned, random.Random(1), status="failed")
    with fake_console(catalog, denied_actions=denied) as server:
        summary = sync(db_url, server)
        asked = server.call_count("DescribeModelCompTask")
    assert summary.status == "partial" and asked >= 1
    stored = stored_rows(db_url)["compression_task"][turned]
    assert stored["status"] == "failed" and stored["failed_reason"] is None


def test_kinds_left_out_are_not_read_deleted_or_partial(db_url: str) -> None:
    catalog = FakeCatalog.generate(seed=36, model_sets=2, comp_tasks=6, eval_exports=0)
    with fake_console(catalog) as server:
        sync(db_url, server)
        exports = stored_rows(db_url)["model_export"]
        n = len(server.calls)
        summary = sync(db_url, server, kinds=("model_set", "model_version", "compression_task"))
        actions = {c.action for c in server.calls[n:]}
    assert summary.status == "success"
    assert "DescribeModelExportTask" not in actions
    assert stored_rows(db_url)["model_export"] == exports
    assert "model_export skipped" in summary.line()
    with pytest.raises(ConfigError, match="model_version needs model_set"):
        run_sync(SyncOptions(database_url=db_url, access_key="a", secret_key="b",
                             kinds=("model_version",)))


def test_drift_is_recorded_once_per_field(db_url: str) -> None:
    catalog = FakeCatalog.generate(seed=37, model_sets=2, system_sets=0, comp_tasks=4,
                                   eval_exports=0)
    version = catalog.keys("model_version")[0]
    catalog.patch("model_version", version, fields={"quotaTier": "gold"}, drop=["modelName"],
                  actions=["DescribeModel"])
    with fake_console(catalog) as server:
        seen: list[tuple[str, dict[str, Any]]] = []
        first = run_sync(options(db_url, server), observer=lambda n, d: seen.append((n, d)))
        second = sync(db_url, server)
    assert first.status == "success"  # an extra field or a missing one is not a failure
    found = {(r["call"], r["field"], r["drift"], r["example_id"], r["run_id"])
             for r in _rows(db_url, api_drift)}
    run1, run2 = first.run_id, second.run_id
    assert ("DescribeModel", "quotaTier", "unknown", version, run1) in found
    assert ("DescribeModel", "modelName", "missing", version, run1) in found
    assert ("DescribeModel", "quotaTier", "unknown", version, run2) in found
    # logged once, when new: the first run names both, the second run names neither
    assert sorted((d["field"], d["drift"]) for n, d in seen
                  if n == "drift" and d["call"] == "DescribeModel") == [
        ("modelName", "missing"), ("quotaTier", "unknown")]
    assert second.new_drift == []  # every drift of the first run, new or not, seen before
    # the undocumented field is kept in raw
    engine = db.create_engine_for(db_url)
    from catalog.schema import model_versions
    with engine.connect() as conn:
        raw = conn.execute(select(model_versions.c.raw).where(
            model_versions.c.model_id == version)).scalar_one()
    engine.dispose()
    assert raw["quotaTier"] == "gold"


def test_delete_guard_trips_when_the_catalog_is_replaced_by_one_of_the_same_size(
    db_url: str,
) -> None:
    old = FakeCatalog.generate(seed=38, model_sets=3, system_sets=0, comp_tasks=20,
                               eval_exports=0)
    new = FakeCatalog.generate(seed=39, model_sets=3, system_sets=0, comp_tasks=20,
                               eval_exports=0)
    with fake_console(old) as server:
        sync(db_url, server)
    before = stored_rows(db_url)
    # same key and host, so only the guard stands between the user and the loss
    with fake_console(new) as server, pytest.raises(MassDeleteRefused, match="before this run"):
        sync(db_url, server)
    after = stored_rows(db_url)
    for kind, rows in before.items():  # nothing deleted (the new catalog's rows were added)
        assert {k: after[kind][k] for k in rows} == rows, kind


def test_a_database_is_bound_to_its_source(db_url: str) -> None:
    catalog = FakeCatalog.generate(seed=40, model_sets=1, comp_tasks=2, eval_exports=0)
    with fake_console(catalog) as server:
        sync(db_url, server)
        bound = _rows(db_url, catalog_source)
        before = stored_rows(db_url)
        assert sync(db_url, server, base_url=server.url + "/").status == "success"
    assert len(bound) == 1 and bound[0]["base_url"] == server.url
    assert AK not in str(bound) and SK not in str(bound)  # a fingerprint, never the key
    other_key = "another-account-ak"
    with FakeServer(catalog, other_key, SK) as other:
        with pytest.raises(ConfigError, match="--rebind-source") as caught:
            sync(db_url, other, access_key=other_key)
        assert caught.value.exit_code == ExitCode.CONFIG
        assert other_key not in str(caught.value)
        assert stored_rows(db_url) == before
        assert _rows(db_url, catalog_source) == bound
        assert sync(db_url, other, access_key=other_key, rebind_source=True).status == "success"
    assert _rows(db_url, catalog_source)[0]["key_fingerprint"] != bound[0]["key_fingerprint"]


def test_dry_run_on_a_new_database_plans_inserts_and_creates_no_file(tmp_path: Any) -> None:
    path = tmp_path / "new.db"
    catalog = FakeCatalog.generate(seed=41, model_sets=2, comp_tasks=5, eval_exports=0)
    with fake_console(catalog) as server:
        summary = sync(f"sqlite:///{path}", server, dry_run=True)
    assert summary.dry_run and summary.status == "success"
    assert summary.counts["model_set_inserted"] == len(catalog.keys("model_set"))
    assert summary.counts["compression_task_inserted"] == 5
    assert list(tmp_path.iterdir()) == []


@pytest.mark.empty_database
def test_dry_run_on_an_empty_database_plans_inserts_and_creates_no_table(db_url: str) -> None:
    """An empty database (a file made by hand, a PostgreSQL database just created) is planned
    in memory as a missing file is: migrating it would write the schema."""
    path = db.sqlite_file(db_url)
    if path is not None:
        path.touch()
    catalog = FakeCatalog.generate(seed=41, model_sets=2, comp_tasks=5, eval_exports=0)
    with fake_console(catalog) as server:
        summary = sync(db_url, server, dry_run=True)
    assert summary.dry_run and summary.status == "success"
    assert summary.counts["compression_task_inserted"] == 5
    if path is not None:
        assert path.stat().st_size == 0
    engine = db.create_engine_for(db_url)
    try:
        assert inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


def test_in_memory_sqlite_is_refused_for_a_sync() -> None:
    with pytest.raises(ConfigError, match="in-memory"):
        run_sync(SyncOptions(database_url="sqlite:///", access_key="a", secret_key="b"))


def test_check_says_which_kinds_the_key_may_read_and_shows_drift(db_url: str) -> None:
    from click.testing import CliRunner

    from catalog.cli import cli

    catalog = FakeCatalog.generate(seed=42, model_sets=2, system_sets=0, comp_tasks=3,
                                   eval_exports=0)
    version = catalog.keys("model_version")[0]
    catalog.patch("model_version", version, fields={"quotaTier": "gold"}, actions=["DescribeModel"])
    with fake_console(catalog, denied_actions=["DescribeModelExportTask"]) as server:
        sync(db_url, server)
        env = {"CATALOG_DATABASE_URL": db_url, "QIANFAN_ACCESS_KEY": AK,
               "QIANFAN_SECRET_KEY": SK, "QIANFAN_CONSOLE_API_BASE_URL": server.url,
               "CATALOG_CONFIG": None}
        result = CliRunner().invoke(cli, ["check"], env=env)
        # Another account's check shows its own runs' drift: it has none yet.
        other = CliRunner().invoke(cli, ["--account", "other", "check"], env=env)
    assert not [line for line in other.stdout.splitlines() if line.split()[1] == "drift"]
    by_name = {line.split()[1]: line for line in result.stdout.splitlines()}
    assert by_name["model_version"].startswith("ok ")
    assert by_name["compression_task"].startswith("ok ")
    assert by_name["model_export"].startswith("FAIL")
    assert "FullControl" in by_name["model_export"] and "--kinds" in by_name["model_export"]
    assert result.exit_code == ExitCode.API_UNREACHABLE
    drift = [line for line in result.stdout.splitlines()
             if line.split()[1] == "drift" and "DescribeModel " in line]
    assert len(drift) == 1 and drift[0].startswith("NOTE") and "quotaTier" in drift[0]
    assert SK not in result.output


def test_new_drift_is_logged_once_as_a_warning(db_url: str) -> None:
    from catalog import logs

    catalog = FakeCatalog.generate(seed=43, model_sets=1, system_sets=0, comp_tasks=2,
                                   eval_exports=0)
    catalog.patch("compression_task", catalog.keys("compression_task")[0],
                  fields={"quotaTier": "gold"})
    records: list[Any] = []
    log = logs.RunLog()
    handler_events = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            handler_events.append((record.levelno, getattr(record, "event", None),
                                   record.getMessage()))

    logger = logs.logger()
    handler = Keep()
    logger.addHandler(handler)
    try:
        with fake_console(catalog) as server:
            run_sync(options(db_url, server), observer=lambda n, d: (records.append(n), log(n, d)))
            run_sync(options(db_url, server), observer=log)
    finally:
        logger.removeHandler(handler)
    drift = [e for e in handler_events if e[1] == "drift" and "quotaTier" in e[2]]
    assert len(drift) == 1 and drift[0][0] == logging.WARNING
    assert "DescribeModelCompTasks" in drift[0][2] and "quotaTier" in drift[0][2]


@pytest.mark.parametrize(
    ("alone", "needed"),
    [("model_export", "model_set"), ("fine_tuning_task", "fine_tuning_job"),
     ("eval_task_report", "eval_task")],
)
def test_a_kind_without_a_listing_of_its_own_needs_its_parent(alone: str, needed: str) -> None:
    with pytest.raises(ConfigError, match=f"{alone} needs {needed}") as caught:
        run_sync(SyncOptions(database_url="sqlite:///x.db", access_key="a", secret_key="b",
                             kinds=(alone,)))
    assert caught.value.exit_code == ExitCode.CONFIG


def test_a_preset_sets_creation_time_is_asked_once_and_again_only_when_changed_or_failed(
    db_url: str,
) -> None:
    """The preset listing has no ``createTime``; DescribeSystemModelSet answers it (REFERENCE
    §1-2). It is asked for a preset set that is new, changed, or whose last describe call
    failed, and for no other. A failed describe call records the set from its listing (time NULL),
    deletes nothing, and is asked again by the next run, which learns the time."""
    catalog = FakeCatalog.generate(seed=31, model_sets=1, system_sets=3, comp_tasks=2,
                                   eval_exports=0)
    broken, changed, steady = sorted(k for k in catalog.keys("model_set")
                                     if catalog.is_preset_set(k))

    def described(server: FakeServer, since: int) -> list[str]:
        return sorted(c.body["modelSetId"] for c in server.calls[since:]
                      if c.action == "DescribeSystemModelSet")

    def create_time(set_id: str) -> Any:
        return stored_rows(db_url)["model_set"][set_id]["create_time"]

    def told(set_id: str) -> Any:
        return parse_time(catalog.get("model_set", set_id)["createTime"], "createTime")

    with fake_console(catalog) as server:
        answer = server.answer
        failing(server, lambda r, a, b: a == "DescribeSystemModelSet"
                and b.get("modelSetId") == broken,
                V2Error(500, "InternalError", "internal error"))
        first = sync(db_url, server, include_system=True)
        assert first.status == "partial"
        assert described(server, 0).count(broken) == 3  # retried within --max-attempts
        assert set(described(server, 0)) == {broken, changed, steady}
        assert create_time(broken) is None  # recorded from its listing
        assert stored_rows(db_url)["model_set"][broken]["model_set_name"] is not None
        for set_id in (changed, steady):
            assert create_time(set_id) == told(set_id) is not None
        errors = [e for e in _rows(db_url, sync_errors) if e["run_id"] == first.run_id]
        assert [(e["kind"], e["call"], e["entity_id"]) for e in errors] == [
            ("model_set", "DescribeSystemModelSet", broken)]

        server.answer = answer  # the describe call answers again
        catalog.change("model_set", changed, random.Random(3))
        calls = len(server.calls)
        second = sync(db_url, server, include_system=True)
        assert second.status == "success"
        assert described(server, calls) == sorted([broken, changed])
        assert create_time(broken) == told(broken) is not None
        assert second.counts["model_set_deleted"] == 0

        calls = len(server.calls)
        third = sync(db_url, server, include_system=True)
        assert described(server, calls) == []
        assert third.counts["model_set_updated"] == 0


def test_a_describe_answer_without_a_creation_time_is_not_asked_again_in_the_same_run(
    db_url: str,
) -> None:
    """A scoped run's set comes from its describe call. Should that answer lack ``createTime``
    too, the set is recorded as answered (time NULL) instead of being described twice. A full
    run then finds the listing's answer new and asks the call once; the next full run, finding
    the set unchanged, does not ask again whatever the time is: an answer without one is not
    asked for every run."""
    catalog = FakeCatalog.generate(seed=32, model_sets=1, system_sets=1, comp_tasks=2,
                                   eval_exports=0)
    (preset,) = [k for k in catalog.keys("model_set") if catalog.is_preset_set(k)]
    catalog.patch("model_set", preset, drop=["createTime"], actions=["DescribeSystemModelSet"])
    name = catalog.get("model_set", preset)["modelSetName"]
    with fake_console(catalog) as server:
        scoped = sync(db_url, server, model_sets=[name], include_system=True)
        asked = server.call_count("DescribeSystemModelSet")
        custom = server.call_count("DescribeModelSet")
        full = sync(db_url, server, include_system=True)
        again = server.call_count("DescribeSystemModelSet") - asked
        later = sync(db_url, server, include_system=True)
        last = server.call_count("DescribeSystemModelSet") - asked - again
    assert scoped.status == full.status == later.status == "success"
    assert asked == 1  # resolving the --model-set, and no detail call after it
    assert custom == 1  # the custom call tried first when resolving, and no other
    assert again == 1  # the full run: the listing's answer is not the describe call's
    assert last == 0
    assert stored_rows(db_url)["model_set"][preset]["create_time"] is None
