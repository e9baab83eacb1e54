"""Answers the documents do not promise, each of which once deleted data or lost a field.

Every case runs a sync against the fake console, then makes the fake answer one thing
differently and syncs again. What the second sync could not read must stay as it was stored:
an answer it cannot use is that entity's failure (a ``partial`` run), never an empty listing.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from catalog import db
from catalog.fake.catalog import FakeCatalog
from catalog.schema import SPECS, sync_errors
from catalog.sync import run_sync
from tests.helpers import fake_console, options, stored_rows, sync, table_rows

Rewrite = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]


def _rewriting(server: Any, action: str, rewrite: Rewrite) -> None:
    """Make the fake pass each ``result`` of ``action`` through ``rewrite(result, body)``."""
    answer = server.answer

    def patched(route: str, act: str, body: dict[str, Any], fault: Any) -> Any:
        result = answer(route, act, body, fault)
        return rewrite(copy.deepcopy(result), body) if act == action else result

    server.answer = patched


def _errors(db_url: str) -> list[dict[str, Any]]:
    return table_rows(db_url, sync_errors)


def _deleted(db_url: str, kind: str) -> set[str]:
    spec = SPECS[kind]
    engine = db.create_engine_for(db_url)
    with engine.connect() as conn:
        keys = conn.execute(
            select(spec.table.c[spec.key]).where(spec.table.c.deleted_at.is_not(None))
        ).scalars()
        out = {str(k) for k in keys}
    engine.dispose()
    return out


def test_a_listed_job_whose_item_cannot_be_read_is_kept_with_its_tasks(db_url: str) -> None:
    catalog = FakeCatalog.generate(seed=41, model_sets=1, comp_tasks=1, eval_exports=0,
                                   fine_tuning_jobs=3)
    job = catalog.keys("fine_tuning_job")[0]
    with fake_console(catalog) as server:
        assert sync(db_url, server).status == "success"
        before = stored_rows(db_url)
        tasks = {k for k, r in before["fine_tuning_task"].items() if r["job_id"] == job}
        assert tasks

        def bad_date(result: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
            for item in result["jobList"]:
                if item["jobId"] == job:
                    item["createDate"] = "2024/01/01 10:00"  # no format the parser knows
            return result

        _rewriting(server, "DescribeFineTuningJobs", bad_date)
        summary = sync(db_url, server)
    assert summary.status == "partial"
    after = stored_rows(db_url)
    assert after["fine_tuning_job"][job] == before["fine_tuning_job"][job]
    assert tasks <= set(after["fine_tuning_task"])
    assert not _deleted(db_url, "fine_tuning_job") and not _deleted(db_url, "fine_tuning_task")
    assert any(e["entity_id"] == job and "createDate" in e["message"] for e in _errors(db_url))


def test_a_listed_service_whose_detail_cannot_be_read_is_kept_run_after_run(
    db_url: str,
) -> None:
    """The custom listing completed and named the service; only its detail could not be read.
    Listed, it counts as seen: not deleted, not even kept once by its detail call (which still
    answers), for kept once it would be deleted by the next run that cannot read it either."""
    catalog = FakeCatalog.generate(seed=46, model_sets=1, comp_tasks=1, eval_exports=0,
                                   services=3, preset_services=1)
    service = catalog.keys("service")[0]

    def bad_date(result: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        if body.get("serviceId") == service:
            result["createTime"] = "2024/01/01 10:00"  # no format the parser knows
        return result

    kept: list[dict[str, Any]] = []
    with fake_console(catalog) as server:
        assert sync(db_url, server).status == "success"
        before = stored_rows(db_url)["service"]
        _rewriting(server, "DescribeService", bad_date)
        summaries = [
            run_sync(options(db_url, server),
                     observer=lambda name, d: kept.append(d) if name == "kept" else None)
            for _ in range(2)
        ]
    assert [s.status for s in summaries] == ["partial", "partial"]
    assert [s.counts["service_deleted"] for s in summaries] == [0, 0]
    assert stored_rows(db_url)["service"] == before
    assert not _deleted(db_url, "service")
    assert kept == []
    assert any(e["entity_id"] == service and "createTime" in e["message"]
               for e in _errors(db_url))


def _set_item_rewrite(set_id: str, change: Callable[[dict[str, Any]], None]) -> Rewrite:
    def rewrite(result: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        for item in result["customModelSetList"]:
            if item["modelSetId"] == set_id:
                change(item)
        return result

    return rewrite


def test_a_set_item_without_usable_model_ids_keeps_the_set_and_its_versions(
    db_url: str,
) -> None:
    """``modelIds`` is the complete listing of a set's versions. Read as ``[]`` when absent or
    null, it deleted every version of the set (and their export states) in a run that ended
    ``success``. A ``modelCount`` other than the ids' number is not trusted either."""
    catalog = FakeCatalog.generate(seed=42, model_sets=3, system_sets=0, comp_tasks=2,
                                   eval_exports=0, export_share=1.0)
    set_ids = catalog.keys("model_set")
    changes: list[Callable[[dict[str, Any]], None]] = [
        lambda item: item.pop("modelIds"),
        lambda item: item.update(modelIds=None),
        lambda item: item.update(modelCount=item["modelCount"] + 1),
    ]
    with fake_console(catalog) as server:
        assert sync(db_url, server).status == "success"
        before = stored_rows(db_url)
        for set_id, change in zip(set_ids, changes, strict=True):
            _rewriting(server, "DescribeCustomModelSets", _set_item_rewrite(set_id, change))
        summary = sync(db_url, server)
    assert summary.status == "partial"
    after = stored_rows(db_url)
    for kind in ("model_set", "model_version", "model_export"):
        assert after[kind] == before[kind], kind
        assert not _deleted(db_url, kind), kind
    messages = {e["entity_id"]: e["message"] for e in _errors(db_url)}
    assert "modelIds: missing" in messages[set_ids[0]]
    assert "modelIds: missing" in messages[set_ids[1]]
    assert "modelCount is" in messages[set_ids[2]]


def test_presets_are_deleted_only_by_an_answer_that_holds_them_all(db_url: str) -> None:
    """No paging is documented for DescribePresetServices: an answer that shows paging marks,
    or a total above what it lists, or an item without an id, deletes no preset."""
    catalog = FakeCatalog.generate(seed=43, model_sets=1, comp_tasks=1, eval_exports=0,
                                   preset_services=3)
    with fake_console(catalog) as server:
        assert sync(db_url, server).status == "success"
        presets = {k for k, r in stored_rows(db_url)["service"].items() if r["is_preset"]}
        assert len(presets) == 3
        ways: list[Rewrite] = [
            lambda r, b: {**r, "serviceList": r["serviceList"][:1],
                          "pageInfo": {"isTruncated": True, "nextMarker": "svcp-x"}},
            # truncated, with no marker to go on: still not the whole answer
            lambda r, b: {**r, "serviceList": r["serviceList"][:2],
                          "pageInfo": {"isTruncated": True}},
            lambda r, b: {**r, "serviceList": r["serviceList"][:1], "totalCount": 3},
            lambda r, b: {**r, "serviceList": r["serviceList"][:2], "totalCount": 3},  # one short
            lambda r, b: {**r, "serviceList": [{"name": "no id"}, *r["serviceList"][:1]]},
        ]
        for way in ways:
            _rewriting(server, "DescribePresetServices", way)
            # Twice: a preset a wrongly trusted answer misses is kept once by its own call
            # (which the rewrite leaves whole), and deleted by the run after.
            summaries = [sync(db_url, server) for _ in range(2)]
            server.answer = type(server).answer.__get__(server)  # the fake's own answers again
            assert not _deleted(db_url, "service")
            assert [s.status for s in summaries] == ["partial", "partial"]
            stored = stored_rows(db_url)["service"]
            assert presets <= set(stored) and "None" not in stored
        # The fake's whole answer again: nothing was lost, nothing to delete.
        assert sync(db_url, server).status == "success"
    messages = [e["message"] for e in _errors(db_url) if e["call"] == "DescribePresetServices"]
    assert any("pageInfo" in m and "nextMarker" not in m for m in messages)
    assert any("pageInfo" in m and "nextMarker" in m for m in messages)
    assert any("totalCount is 3 but the answer lists 1" in m for m in messages)
    assert any("totalCount is 3 but the answer lists 2" in m for m in messages)
    assert any("without a usable serviceId" in m for m in messages)


def test_a_failed_task_spelt_state_gets_its_reason(db_url: str) -> None:
    """The seeds spell a task's status ``status`` and ``state``: both are read, and a failed
    task's reason is asked for in both cases."""
    catalog = FakeCatalog.generate(seed=44, model_sets=2, comp_tasks=20, eval_exports=0)
    failed = [k for k in catalog.keys("compression_task")
              if catalog.get("compression_task", k)["status"] == "failed"]
    assert failed

    def as_state(result: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        for item in result["modelCompTaskList"]:
            item["state"] = item.pop("status")
        return result

    with fake_console(catalog) as server:
        _rewriting(server, "DescribeModelCompTasks", as_state)
        assert sync(db_url, server).status == "success"
        asked = [c for c in server.calls if c.action == "DescribeModelCompTask"]
    rows = stored_rows(db_url)["compression_task"]
    assert {rows[k]["status"] for k in failed} == {"failed"}
    assert all(rows[k]["failed_reason"] is not None for k in failed)
    assert len(asked) == len(failed)


def test_metrics_of_any_json_shape_are_stored_as_answered(db_url: str) -> None:
    """The documents cut the field's name off ("metr..."); only the SDK's mock shows an
    object. A list was refused, and every finished task then failed every run."""
    catalog = FakeCatalog.generate(seed=45, model_sets=1, comp_tasks=1, eval_exports=0,
                                   fine_tuning_jobs=2)
    metrics = [{"name": "BLEU-4", "value": 0.5}]

    def as_list(result: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        return {**result, "metrics": metrics}

    with fake_console(catalog) as server:
        _rewriting(server, "DescribeFineTuningTask", as_list)
        assert sync(db_url, server).status == "success"
    rows = stored_rows(db_url)["fine_tuning_task"]
    assert rows and all(r["metrics"] == metrics for r in rows.values())
