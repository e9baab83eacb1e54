"""Answers that contradict the documents or themselves: each is the entity's or the listing's
failure, and none deletes or overwrites what is stored.

Found by an audit that made the fake answer as a real service might where the documents leave
room (REFERENCE.md): before these checks each of them ended ``success`` with entities marked
deleted or their columns set to NULL.
"""

from __future__ import annotations

import random
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import create_engine, text, update

from catalog import db
from catalog.errors import ConfigError, Interrupted, MassDeleteRefused
from catalog.events import KEPT_ONCE
from catalog.fake.catalog import FakeCatalog
from catalog.fake.server import FakeServer, V2Error, _Reply
from catalog.schema import SPECS, changes, sync_errors, sync_runs
from catalog.sync import RunSummary, run_sync
from tests.helpers import fake_console, options, stored_rows, sync, table_rows

Answer = Callable[[FakeServer, str, str, dict[str, Any], Any], Any]
ANSWER = FakeServer.answer


def _resync_with(
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    catalog: FakeCatalog,
    answer: Answer | None = None,
    reply: Callable[..., _Reply] | None = None,
    between: Callable[[], None] | None = None,
    **kw: Any,
) -> tuple[RunSummary, dict[str, dict[str, dict[str, Any]]], list[dict[str, Any]]]:
    """A clean sync, then (after ``between``) one with the fake answering through ``answer`` (or
    ``reply``): that run's summary, the rows stored before it, and the change rows it
    recorded."""
    with fake_console(catalog) as server:
        assert sync(db_url, server, max_attempts=1, **kw).status == "success"
        before = stored_rows(db_url)
        if between is not None:
            between()
        if answer is not None:
            monkeypatch.setattr(FakeServer, "answer", answer)
        if reply is not None:
            monkeypatch.setattr(FakeServer, "reply", reply)
        summary = sync(db_url, server, max_attempts=1, **kw)
    recorded = [c for c in table_rows(db_url, changes) if c["run_id"] == summary.run_id]
    return summary, before, recorded


def _errors(summary: RunSummary, db_url: str) -> list[str]:
    return [e["message"] for e in table_rows(db_url, sync_errors)
            if e["run_id"] == summary.run_id]


def test_a_last_page_that_still_points_on_fails_the_listing(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Documented: ``nextMarker`` comes only with ``isTruncated`` true. Trusting the "last" of
    a page that carries one deleted every task on the pages after it."""

    def answer(self: FakeServer, route: str, action: str, body: dict[str, Any], f: Any) -> Any:
        result = ANSWER(self, route, action, body, f)
        if action == "DescribeModelCompTasks" and not body.get("marker"):
            result["pageInfo"]["isTruncated"] = False  # nextMarker kept
        return result

    catalog = FakeCatalog.generate(seed=1, comp_tasks=30)
    summary, before, recorded = _resync_with(db_url, monkeypatch, catalog, answer, page_size=10)
    assert summary.status == "partial"
    assert not [c for c in recorded if c["operation"] == "delete"]
    assert set(stored_rows(db_url)["compression_task"]) == set(before["compression_task"])
    assert any("isTruncated false but nextMarker" in m for m in _errors(summary, db_url))


def test_an_error_code_in_an_http_200_answer_is_an_error(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``code``/``message`` next to ``requestId`` are the documented error shape; sent with HTTP
    200 beside an empty last page, the page's "end" deleted every task it held."""
    reply = FakeServer.reply

    def errs(self: FakeServer, route: str, action: str, body: dict[str, Any], f: Any) -> _Reply:
        if action == "DescribeModelCompTasks" and body.get("marker"):
            page = {"modelCompTaskList": [], "pageInfo": {"isTruncated": False}}
            return _Reply(200, {"requestId": "r-1", "code": "InternalError",
                                "message": "busy", "result": page})
        return reply(self, route, action, body, f)

    catalog = FakeCatalog.generate(seed=1, comp_tasks=30)
    summary, before, recorded = _resync_with(
        db_url, monkeypatch, catalog, reply=errs, page_size=10
    )
    assert summary.status == "partial"
    assert not [c for c in recorded if c["operation"] == "delete"]
    assert set(stored_rows(db_url)["compression_task"]) == set(before["compression_task"])
    assert any("busy" in m for m in _errors(summary, db_url))


#: Per detail call: its kind, the body key that names the entity, the answer's id field, and
#: the listing's field edited so that it is asked again (None: asked every run).
DETAILS = {
    "DescribeModelCompTask": ("compression_task", "modelCompTaskId", "id", "description"),
    "DescribeModel": ("model_version", "modelId", "modelId", None),
    "DescribeService": ("service", "serviceId", "serviceId", None),
    "DescribeFineTuningTask": ("fine_tuning_task", "taskId", "taskId", "jobDescription"),
    "DescribeEvalTask": ("eval_task", "taskId", "taskId", "description"),
}


@pytest.mark.parametrize("shape", ["another", "empty"])
@pytest.mark.parametrize("call", list(DETAILS))
def test_a_detail_answer_for_another_entity_or_none_changes_nothing(
    db_url: str, monkeypatch: pytest.MonkeyPatch, call: str, shape: str
) -> None:
    """A detail call that answers for another entity (or with ``{}``) is that entity's failure:
    it stays as stored. Before, the asked entity was deleted and the other written with its
    fields (``another``), or its detail-only columns set to NULL (``empty``)."""
    kind, asked_by, id_field, edited = DETAILS[call]
    catalog = FakeCatalog.generate(seed=1, comp_tasks=30)
    asked: set[str] = set()

    def answer(self: FakeServer, route: str, action: str, body: dict[str, Any], f: Any) -> Any:
        result = ANSWER(self, route, action, body, f)
        if action != call:
            return result
        asked.add(str(body[asked_by]))
        if shape == "empty":
            return {}
        other = next(k for k in catalog.keys(kind) if str(k) != str(body[asked_by]))
        return {**result, id_field: other}

    with fake_console(catalog) as server:
        assert sync(db_url, server, max_attempts=1).status == "success"
        before = stored_rows(db_url)
        for key in catalog.keys(kind) if edited else ():  # so that each is asked again
            catalog.patch(kind, key, fields={edited: f"edited {key}"})
        monkeypatch.setattr(FakeServer, "answer", answer)
        summary = sync(db_url, server, max_attempts=1)
    recorded = [c for c in table_rows(db_url, changes) if c["run_id"] == summary.run_id]
    assert asked, f"no {call} was asked"
    assert summary.status == "partial"
    assert not [c for c in recorded if c["operation"] == "delete"]
    after = stored_rows(db_url)
    assert {k: set(rows) for k, rows in after.items()} == {
        k: set(rows) for k, rows in before.items()
    }
    assert {key: after[kind][key] for key in asked} == {key: before[kind][key] for key in asked}
    assert any("the answer is not for" in m for m in _errors(summary, db_url))


@pytest.mark.parametrize("has_record", ["absent", None])
def test_an_export_answer_without_has_record_keeps_the_stored_export(
    db_url: str, monkeypatch: pytest.MonkeyPatch, has_record: str | None
) -> None:
    """``hasRecord`` decides between an export and none; read as "has one", an answer without
    it stored an export of NULLs over the real one (and one for versions that have none)."""

    def answer(self: FakeServer, route: str, action: str, body: dict[str, Any], f: Any) -> Any:
        result = ANSWER(self, route, action, body, f)
        if action == "DescribeModelExportTask":
            result = {"exportId": result.get("exportId")}
            if has_record is None:
                result["hasRecord"] = None
        return result

    catalog = FakeCatalog.generate(seed=1, comp_tasks=10)
    summary, before, recorded = _resync_with(db_url, monkeypatch, catalog, answer)
    assert before["model_export"], "the catalog has no export to keep"
    assert summary.status == "partial"
    assert not [c for c in recorded if c["kind"] == "model_export"]
    assert stored_rows(db_url)["model_export"] == before["model_export"]


def test_a_report_whose_units_the_catalog_cannot_tell_apart_is_kept(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Units are keyed by task, what they evaluated and mode, no documented field telling two
    apart: a report with two alike was stored as one unit, the other's metrics lost. It fails
    instead, and the units stored stay as they were."""
    catalog = FakeCatalog.generate(seed=1, comp_tasks=10)
    doubled: list[str] = []

    def answer(self: FakeServer, route: str, action: str, body: dict[str, Any], f: Any) -> Any:
        result = ANSWER(self, route, action, body, f)
        if action == "DescribeEvalTaskReport" and result:
            doubled.append(body["taskId"])
            twin = {**result[0], "effectMetric": {"accuracy": 0.123}}
            return [*result, twin]
        return result

    def edit() -> None:  # each task changes, so that each ended one's report is asked again
        for key in catalog.keys("eval_task"):
            catalog.patch("eval_task", key, fields={"description": f"edited {key}"})

    summary, before, recorded = _resync_with(db_url, monkeypatch, catalog, answer, between=edit)
    assert doubled and before["eval_task_report"], "no evaluation task has a report"
    assert summary.status == "partial"
    assert stored_rows(db_url)["eval_task_report"] == before["eval_task_report"]
    assert not [c for c in recorded if c["kind"] == "eval_task_report"]
    assert any("two units evaluate the same" in m for m in _errors(summary, db_url))


def test_units_of_two_object_types_naming_one_model_are_two_units(db_url: str) -> None:
    """REFERENCE §7 lists ``modelId`` and ``inferDatasetId`` on every unit, and
    ``evalObjectType`` says which was evaluated: an ``inferDataset`` unit naming the model that
    produced the dataset is not that model's unit (both were keyed by the model)."""
    catalog = FakeCatalog.generate(seed=1, comp_tasks=10)

    def answer(self: FakeServer, route: str, action: str, body: dict[str, Any], f: Any) -> Any:
        result = ANSWER(self, route, action, body, f)
        if action == "DescribeEvalTaskReport" and result:
            model = {**result[0], "evalObjectType": "model", "modelId": "amv-x",
                     "inferDatasetId": ""}
            dataset = {**model, "evalObjectType": "inferDataset", "inferDatasetId": "ds-1",
                       "effectMetric": {"accuracy": 0.5}}
            return [model, dataset]
        return result

    with fake_console(catalog) as server, pytest.MonkeyPatch.context() as mp:
        mp.setattr(FakeServer, "answer", answer)
        summary = sync(db_url, server, max_attempts=1)
    assert summary.status == "success"
    per_task: dict[str, list[str]] = {}
    for unit in stored_rows(db_url)["eval_task_report"].values():
        per_task.setdefault(unit["task_id"], []).append(unit["eval_object_type"])
    assert per_task, "no evaluation task has a report"
    assert all(sorted(types) == ["inferDataset", "model"] for types in per_task.values())


def test_a_set_naming_a_padded_version_id_keeps_its_versions(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``modelIds`` decide which versions are deleted: a padded id (``"amv-1 "``) is not the
    stored ``amv-1``, whose describe call was then never asked and which the set's complete
    list no longer named. The set's answer is malformed instead: its versions stay."""
    catalog = FakeCatalog.generate(seed=1, comp_tasks=10)
    padded: list[str] = []

    def answer(self: FakeServer, route: str, action: str, body: dict[str, Any], f: Any) -> Any:
        result = ANSWER(self, route, action, body, f)
        if action == "DescribeCustomModelSets":
            item = next(i for i in result["customModelSetList"] if i["modelIds"])
            item["modelIds"] = [f"{item['modelIds'][0]} ", *item["modelIds"][1:]]
            padded.append(item["modelSetId"])
        return result

    summary, before, recorded = _resync_with(db_url, monkeypatch, catalog, answer)
    assert padded and summary.status == "partial"
    assert not [c for c in recorded if c["operation"] == "delete"]
    assert stored_rows(db_url)["model_version"] == before["model_version"]


#: Per kind: its listing, the listing's key, the items' id, and the detail call a delete asks.
LISTS = {
    "compression_task": (
        "DescribeModelCompTasks", "modelCompTaskList", "id", "DescribeModelCompTask",
        "modelCompTaskId",
    ),
    "model_set": (
        "DescribeCustomModelSets", "customModelSetList", "modelSetId", "DescribeModelSet",
        "modelSetId",
    ),
    "fine_tuning_task": (
        "DescribeFineTuningTasks", "taskList", "taskId", "DescribeFineTuningTask", "taskId",
    ),
    "eval_task": ("DescribeEvalTasks", "evalTaskList", "taskId", "DescribeEvalTask", "taskId"),
    "service": ("DescribeServices", "serviceList", "serviceId", "DescribeService", "serviceId"),
}


@pytest.mark.parametrize("kind", list(LISTS))
def test_an_entity_a_listing_missed_while_its_detail_answers_is_kept_once(
    db_url: str, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """A listing read page by page may miss an entity that moves while it is read (the order and
    the marker are not documented). Before the delete, the entity's own detail call is asked:
    answered, it is kept that run (a warning, no change row); missed again next run, it is
    deleted without asking; listed again, it is back. One really deleted, whose call answers
    "not found", is deleted at once."""
    call, list_key, id_field, detail, by = LISTS[kind]
    catalog = FakeCatalog.generate(
        seed=1, model_sets=8, comp_tasks=30, eval_tasks=8, services=8, tasks_per_job=4
    )
    custom = [k for k in catalog.keys(kind) if not (
        kind == "model_set" and catalog.is_preset_set(k)
        or kind == "service" and str(k).startswith("svcp-")
    )]
    missed, gone = str(custom[3]), str(custom[5])
    hide = {"on": True}

    def answer(self: FakeServer, route: str, action: str, body: dict[str, Any], f: Any) -> Any:
        result = ANSWER(self, route, action, body, f)
        if action == call and hide["on"]:
            result[list_key] = [i for i in result[list_key] if str(i[id_field]) != missed]
        return result

    spec = SPECS[kind]

    def deleted() -> set[str]:
        rows = table_rows(db_url, spec.table)
        return {str(r[spec.key]) for r in rows if r["deleted_at"] is not None}

    def asked(server: FakeServer, since: int) -> set[str]:
        return {str(c.body[by]) for c in server.calls[since:] if c.action == detail}

    def versions_deleted() -> set[str]:
        return {str(r["model_id"]) for r in table_rows(db_url, SPECS["model_version"].table)
                if r["deleted_at"] is not None and r["model_set_id"] == missed}

    with fake_console(catalog) as server:
        assert sync(db_url, server, page_size=10).status == "success"
        monkeypatch.setattr(FakeServer, "answer", answer)
        catalog.remove(kind, gone)
        kept: list[dict[str, Any]] = []
        n = len(server.calls)
        second = run_sync(options(db_url, server, page_size=10),
                          observer=lambda name, d: kept.append(d) if name == "kept" else None)
        assert second.status == "success"
        assert kept == [{"kind": kind, "key": missed}]
        assert {missed, gone} <= asked(server, n)
        assert deleted() == {gone} and not versions_deleted()
        n = len(server.calls)
        third = sync(db_url, server, page_size=10)  # missed again: deleted, not asked
        assert missed not in asked(server, n)
        assert third.kinds[kind].deleted == 1 and deleted() == {gone, missed}
        if kind == "model_set":
            assert versions_deleted() == set(catalog.get("model_set", missed)["modelIds"])
        hide["on"] = False
        fourth = sync(db_url, server, page_size=10)
        assert fourth.status == "success" and deleted() == {gone}
        # Kept once, then listed: its answer replaces the mark, so a later miss is asked again.
        hide["on"] = True
        kept.clear()
        run_sync(options(db_url, server, page_size=10),
                 observer=lambda name, d: kept.append(d) if name == "kept" else None)
        hide["on"] = False
        sixth = sync(db_url, server, page_size=10)
        hide["on"] = True
        n = len(server.calls)
        seventh = sync(db_url, server, page_size=10)
    assert kept == [{"kind": kind, "key": missed}] and missed in asked(server, n)
    assert sixth.kinds[kind].deleted == seventh.kinds[kind].deleted == 0
    mine = [c for c in table_rows(db_url, changes) if c["entity_id"] == missed]
    assert [c["run_id"] for c in mine if c["kind"] == kind and c["operation"] == "delete"] == [
        third.run_id
    ]
    assert not [c for c in mine if c["run_id"] > fourth.run_id]  # kept, listed, kept: no change


def test_a_missed_entity_without_an_answer_hash_is_asked_before_its_delete(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows stored before answer hashes were (migration 0004) have ``raw_hash`` NULL: in an
    upgraded database, such a row a complete listing missed is asked about like any other (only
    the ``KEPT_ONCE`` mark spares the question). Read as "not unmarked", every such row was
    deleted unasked, whatever its detail call would have said."""
    catalog = FakeCatalog.generate(seed=1, comp_tasks=30)
    missed = str(catalog.keys("compression_task")[3])
    t = SPECS["compression_task"].table

    def row() -> dict[str, Any]:
        return next(r for r in table_rows(db_url, t) if str(r["task_id"]) == missed)

    with fake_console(catalog) as server:
        assert sync(db_url, server).status == "success"
        engine = db.create_engine_for(db_url)
        with engine.begin() as conn:  # as a row from before migration 0004
            conn.execute(update(t).where(t.c.task_id == missed).values(raw_hash=None))
        engine.dispose()
        assert row()["raw_hash"] is None
        monkeypatch.setattr(FakeServer, "answer", _hiding("compression_task", {missed}))
        kept: list[dict[str, Any]] = []
        n = len(server.calls)
        summary = run_sync(options(db_url, server),
                           observer=lambda name, d: kept.append(d) if name == "kept" else None)
        asked = [c for c in server.calls[n:] if c.action == "DescribeModelCompTask"
                 and c.body["modelCompTaskId"] == missed]
    assert summary.status == "success" and asked
    assert kept == [{"kind": "compression_task", "key": missed}]
    assert summary.kinds["compression_task"].deleted == 0
    assert row()["deleted_at"] is None and row()["raw_hash"] == KEPT_ONCE


def test_an_entity_kept_once_is_logged_as_a_warning() -> None:
    import logging

    from catalog import logs

    seen: list[tuple[int, Any, str]] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append((record.levelno, getattr(record, "event", None), record.getMessage()))

    handler = Catch()
    logs.logger().addHandler(handler)
    try:
        logs.RunLog()("kept", {"kind": "compression_task", "key": "amva-1"})
    finally:
        logs.logger().removeHandler(handler)
    assert [(level, event) for level, event, _ in seen] == [(logging.WARNING, "kept")]
    assert "compression_task amva-1 is missing from its complete listing" in seen[0][2]


def _hiding(kind: str, keys: set[str]) -> Answer:
    """The fake's answers, less ``keys`` in the listing of ``kind`` (their detail calls still
    answer them: the listing missed them while it was read)."""
    call, list_key, id_field, _, _ = LISTS[kind]

    def answer(self: FakeServer, route: str, action: str, body: dict[str, Any], f: Any) -> Any:
        result = ANSWER(self, route, action, body, f)
        if action == call:
            result[list_key] = [i for i in result[list_key] if str(i[id_field]) not in keys]
        return result

    return answer


def test_a_stop_while_deletes_are_confirmed_deletes_nothing_and_asks_nothing_more(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A signal while the detail calls before the deletes are asked ends the run there:
    ``interrupted``, nothing deleted, nothing marked kept (each would have been: their detail
    calls answer). No confirm call starts after it: only those already under way (at most one
    per worker) are made. Asking the rest first (each with its retries) kept the run from
    ending for as long as they all took, to delete nothing anyway."""
    catalog = FakeCatalog.generate(seed=1, comp_tasks=30)
    missed = {str(k) for k in catalog.keys("compression_task")[:12]}
    stop = threading.Event()
    hidden = _hiding("compression_task", missed)
    asked: list[str] = []

    def answer(self: FakeServer, route: str, action: str, body: dict[str, Any], f: Any) -> Any:
        if action == "DescribeModelCompTask" and body["modelCompTaskId"] in missed:
            asked.append(body["modelCompTaskId"])
            stop.set()  # the signal comes while the first of them is asked
        return hidden(self, route, action, body, f)

    with fake_console(catalog) as server:
        assert sync(db_url, server).status == "success"
        before = stored_rows(db_url)
        monkeypatch.setattr(FakeServer, "answer", answer)
        with pytest.raises(Interrupted, match="before the deletes; nothing was deleted"):
            run_sync(options(db_url, server, workers=2), stop=stop)
    assert 1 <= len(asked) <= 2
    assert stored_rows(db_url)["compression_task"] == before["compression_task"]
    assert [r["status"] for r in table_rows(db_url, sync_runs)] == ["success", "interrupted"]
    rows = table_rows(db_url, SPECS["compression_task"].table)
    assert not [r for r in rows if r["raw_hash"] == KEPT_ONCE]


def test_the_tasks_of_a_deleted_job_go_with_it_unasked(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fine-tuning jobs have no detail call: one its listing no longer names is deleted, and its
    tasks with it. Asked about and kept, they were in no delete scope afterwards (their job
    neither alive nor listed): kept for ever."""
    catalog = FakeCatalog.generate(seed=1, comp_tasks=10, tasks_per_job=2)
    job = str(catalog.keys("fine_tuning_job")[0])

    def answer(self: FakeServer, route: str, action: str, body: dict[str, Any], f: Any) -> Any:
        result = ANSWER(self, route, action, body, f)
        if action == "DescribeFineTuningJobs":
            result["jobList"] = [j for j in result["jobList"] if str(j["jobId"]) != job]
        return result

    tasks = {str(t["taskId"]) for t in catalog.items("fine_tuning_task")
             if str(t["jobId"]) == job}
    with fake_console(catalog) as server:
        assert sync(db_url, server).status == "success"
        monkeypatch.setattr(FakeServer, "answer", answer)
        n = len(server.calls)
        summary = sync(db_url, server)
        asked = {c.body.get("taskId") for c in server.calls[n:]
                 if c.action == "DescribeFineTuningTask"}
    assert tasks and not asked & tasks
    assert summary.kinds["fine_tuning_job"].deleted == 1
    assert summary.kinds["fine_tuning_task"].deleted == len(tasks)
    rows = table_rows(db_url, SPECS["fine_tuning_task"].table)
    assert {str(r["task_id"]) for r in rows if r["deleted_at"] is not None} == tasks


def test_the_confirm_calls_hold_no_transaction(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The detail calls before the deletes are made with the writer's transaction ended: on
    SQLite it held the file's write lock (another account's sync could not write), on
    PostgreSQL it sat idle in a transaction as long as the calls took."""
    catalog = FakeCatalog.generate(seed=1, comp_tasks=30)
    missed = {str(catalog.keys("compression_task")[2])}
    hidden = _hiding("compression_task", missed)
    looked: list[str] = []

    def state() -> str:
        if db_url.startswith("sqlite"):
            other = sqlite3.connect(db_url.removeprefix("sqlite:///"), timeout=0)
            try:
                other.execute("BEGIN IMMEDIATE")  # fails at once if the sync holds the lock
                other.rollback()
                return "free"
            except sqlite3.OperationalError as exc:
                return str(exc)
            finally:
                other.close()
        engine = create_engine(db_url)
        try:
            with engine.connect() as conn:
                # The writer's session; the hash reader's scans (a cursor of their own, read
                # apart from the run's transactions) may still be going on in a run this short.
                busy = conn.execute(text(
                    "SELECT query FROM pg_stat_activity WHERE application_name = :app "
                    "AND state = 'idle in transaction' AND query NOT LIKE :scan"),
                    {"app": "qianfan-catalog", "scan": '%"catalog_scan"%'}).scalars()
                return "free" if not (idle := list(busy)) else f"idle in transaction: {idle}"
        finally:
            engine.dispose()

    def answer(self: FakeServer, route: str, action: str, body: dict[str, Any], f: Any) -> Any:
        if action == "DescribeModelCompTask" and body["modelCompTaskId"] in missed:
            looked.append(state())
        return hidden(self, route, action, body, f)

    with fake_console(catalog) as server:
        assert sync(db_url, server).status == "success"
        monkeypatch.setattr(FakeServer, "answer", answer)
        assert sync(db_url, server, workers=1).status == "success"
    assert looked == ["free"]


def test_a_kept_entity_named_again_without_its_detail_loses_the_mark(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kept once, then named by a listing whose detail call fails (kept as stored): the mark
    goes, so that a later miss asks again instead of deleting without asking."""
    catalog = FakeCatalog.generate(seed=1, comp_tasks=10, eval_tasks=8)
    missed = str(catalog.keys("eval_task")[2])
    hidden = _hiding("eval_task", {missed})

    def failing(self: FakeServer, route: str, action: str, body: dict[str, Any], f: Any) -> Any:
        if action == "DescribeEvalTask" and body["taskId"] == missed:
            raise V2Error(500, "InternalError", "busy")
        return ANSWER(self, route, action, body, f)

    def mark() -> str:
        rows = table_rows(db_url, SPECS["eval_task"].table)
        return next(r["raw_hash"] for r in rows if str(r["task_id"]) == missed)

    with fake_console(catalog) as server:
        assert sync(db_url, server).status == "success"
        monkeypatch.setattr(FakeServer, "answer", hidden)
        assert sync(db_url, server).status == "success" and mark() == KEPT_ONCE
        catalog.patch("eval_task", missed, fields={"description": "edited"})
        monkeypatch.setattr(FakeServer, "answer", failing)
        assert sync(db_url, server, max_attempts=1).status == "partial"
        assert mark() != KEPT_ONCE
        monkeypatch.setattr(FakeServer, "answer", hidden)
        n = len(server.calls)
        last = sync(db_url, server)
        asked = [c for c in server.calls[n:] if c.action == "DescribeEvalTask"
                 and c.body["taskId"] == missed]
    assert asked and last.kinds["eval_task"].deleted == 0


def test_deletes_the_guard_refuses_ask_nothing(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With one kind over ``--max-delete-share`` the run deletes nothing: no entity of any kind
    is asked about, nor reported kept."""
    catalog = FakeCatalog.generate(seed=1, comp_tasks=30, eval_tasks=8)
    tasks = {str(k) for k in catalog.keys("compression_task")[:20]}
    missed = str(catalog.keys("eval_task")[2])
    hide_tasks, hide_eval = _hiding("compression_task", tasks), _hiding("eval_task", {missed})

    def answer(self: FakeServer, route: str, action: str, body: dict[str, Any], f: Any) -> Any:
        if action == "DescribeEvalTasks":
            return hide_eval(self, route, action, body, f)
        return hide_tasks(self, route, action, body, f)

    kept: list[Any] = []
    with fake_console(catalog) as server:
        assert sync(db_url, server).status == "success"
        monkeypatch.setattr(FakeServer, "answer", answer)
        n = len(server.calls)
        with pytest.raises(MassDeleteRefused):
            run_sync(options(db_url, server),
                     observer=lambda name, d: kept.append(d) if name == "kept" else None)
        asked = [c for c in server.calls[n:] if c.action == "DescribeEvalTask"
                 or c.body.get("modelCompTaskId") in tasks]
    assert not asked and not kept


@pytest.mark.parametrize("call", ["/wenxinworkshop/modelrepo/eval/result/export/info",
                                  "DescribeEvalResultExportTask"])
def test_an_export_answer_for_another_export_changes_neither(
    db_url: str, monkeypatch: pytest.MonkeyPatch, call: str
) -> None:
    """A tracked export's answer naming another export is that ref's failure: before, it was
    written as that other export's row (V1), and the asked one's left as it was."""
    catalog = FakeCatalog.generate(seed=1, comp_tasks=10, eval_export_tasks=2)
    v2 = call.startswith("Describe")
    kind = "eval_result_export_task" if v2 else "eval_result_export"
    refs = [str(k) for k in catalog.keys(kind)]
    id_field = "taskId" if v2 else "exportID"

    def answer(self: FakeServer, route: str, action: str, body: dict[str, Any], f: Any) -> Any:
        result = ANSWER(self, route, action, body, f)
        if (action if v2 else route) == call:
            asked = str(body["taskId" if v2 else "exportID"])
            other = next(r for r in refs if r != asked)
            return {**result, id_field: other if v2 else int(other)}
        return result

    kinds = ["eval_result_export_task"] if v2 else ["eval_result_export"]
    with fake_console(catalog) as server:
        assert sync(db_url, server, kinds=kinds, eval_export_ids=refs).status == "success"
        before = stored_rows(db_url)[kind]
        for key in refs:
            catalog.change(kind, catalog.keys(kind)[refs.index(key)], random.Random(key))
        monkeypatch.setattr(FakeServer, "answer", answer)
        summary = sync(db_url, server, kinds=kinds, eval_export_ids=refs)
    assert summary.status == "partial"
    assert stored_rows(db_url)[kind] == before
    assert any("the answer is not for" in m for m in _errors(summary, db_url))


def test_a_new_export_id_answered_for_another_is_refused_before_the_run(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new ``--eval-export-id`` is asked before it is tracked; an answer for another export
    refuses it (exit 4) instead of tracking an id whose every run would fail."""
    catalog = FakeCatalog.generate(seed=1, comp_tasks=10)
    refs = [str(k) for k in catalog.keys("eval_result_export")]

    def answer(self: FakeServer, route: str, action: str, body: dict[str, Any], f: Any) -> Any:
        result = ANSWER(self, route, action, body, f)
        if "exportID" in body:
            return {**result, "exportID": int(refs[0]), "exportIDStr": refs[0]}
        return result

    with fake_console(catalog) as server:
        monkeypatch.setattr(FakeServer, "answer", answer)
        with pytest.raises(ConfigError, match=f"unknown --eval-export-id '{refs[1]}'.*not for"):
            sync(db_url, server, eval_export_ids=[refs[1]])


def test_a_preset_service_a_partial_preset_answer_left_out_is_kept_once(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DescribePresetServices documents no paging: an answer listing only some presets, with
    nothing to say so, deleted the others. Asked for the missing one alone (``serviceIds``), it
    answers it: kept that run; left out again next run, it is deleted without asking."""
    catalog = FakeCatalog.generate(seed=1, comp_tasks=10)
    presets = [str(k) for k in catalog.keys("preset_service")]
    assert len(presets) >= 2

    def answer(self: FakeServer, route: str, action: str, body: dict[str, Any], f: Any) -> Any:
        result = ANSWER(self, route, action, body, f)
        if action == "DescribePresetServices" and not body.get("serviceIds"):
            result["serviceList"] = [s for s in result["serviceList"]
                                     if s["serviceId"] != presets[0]]
        return result

    def alone(server: FakeServer, since: int) -> list[Any]:
        return [c.body.get("serviceIds") for c in server.calls[since:]
                if c.action == "DescribePresetServices" and c.body.get("serviceIds")]

    with fake_console(catalog) as server:
        assert sync(db_url, server).status == "success"
        before = stored_rows(db_url)["service"]
        monkeypatch.setattr(FakeServer, "answer", answer)
        n = len(server.calls)
        second = sync(db_url, server)
        assert alone(server, n) == [[presets[0]]]
        assert second.status == "success" and second.kinds["service"].deleted == 0
        assert set(stored_rows(db_url)["service"]) == set(before)
        rows = table_rows(db_url, SPECS["service"].table)
        assert {str(r["service_id"]) for r in rows if r["raw_hash"] == KEPT_ONCE} == {presets[0]}
        n = len(server.calls)
        third = sync(db_url, server)
        assert not alone(server, n) and third.kinds["service"].deleted == 1


def test_a_removed_preset_service_is_deleted_though_the_call_for_it_answers_others(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The preset asked for alone (``serviceIds``) is kept only if the answer names it: a
    service that ignores the filter answers every other preset, which says nothing of the one
    removed. Read as "it answered", a really removed preset was kept a run more."""
    catalog = FakeCatalog.generate(seed=1, comp_tasks=10)
    presets = [str(k) for k in catalog.keys("preset_service")]
    assert len(presets) >= 2
    gone = presets[0]

    def answer(self: FakeServer, route: str, action: str, body: dict[str, Any], f: Any) -> Any:
        if action == "DescribePresetServices":  # the filter ignored: every preset answered
            body = {k: v for k, v in body.items() if k != "serviceIds"}
        return ANSWER(self, route, action, body, f)

    with fake_console(catalog) as server:
        assert sync(db_url, server).status == "success"
        catalog.remove("preset_service", gone)
        monkeypatch.setattr(FakeServer, "answer", answer)
        kept: list[dict[str, Any]] = []
        n = len(server.calls)
        second = run_sync(options(db_url, server),
                          observer=lambda name, d: kept.append(d) if name == "kept" else None)
        alone = [c.body.get("serviceIds") for c in server.calls[n:]
                 if c.action == "DescribePresetServices" and c.body.get("serviceIds")]
    assert alone == [[gone]]  # asked, and answered with the other presets
    assert second.status == "success" and not kept
    assert second.kinds["service"].deleted == 1
    rows = table_rows(db_url, SPECS["service"].table)
    assert {str(r["service_id"]) for r in rows if r["deleted_at"] is not None} == {gone}
