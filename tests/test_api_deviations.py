"""Answers that contradict the documents or themselves: each is the entity's or the listing's
failure, and none deletes or overwrites what is stored.

Found by an audit that made the fake answer as a real service might where the documents leave
room (REFERENCE.md): before these checks each of them ended ``success`` with entities marked
deleted or their columns set to NULL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from catalog.fake.catalog import FakeCatalog
from catalog.fake.server import FakeServer, _Reply
from catalog.schema import changes, sync_errors
from catalog.sync import RunSummary
from tests.helpers import fake_console, stored_rows, sync, table_rows

Answer = Callable[[FakeServer, str, str, dict[str, Any], Any], Any]
ANSWER = FakeServer.answer


def _resync_with(
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    catalog: FakeCatalog,
    answer: Answer | None = None,
    reply: Callable[..., _Reply] | None = None,
    **kw: Any,
) -> tuple[RunSummary, dict[str, dict[str, dict[str, Any]]], list[dict[str, Any]]]:
    """A clean sync, then one with the fake answering through ``answer`` (or ``reply``): that
    run's summary, the rows stored before it, and the change rows it recorded."""
    with fake_console(catalog) as server:
        assert sync(db_url, server, max_attempts=1, **kw).status == "success"
        before = stored_rows(db_url)
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
    """Units are keyed by task, model (or dataset) and mode, no documented field telling two
    apart: a report with two alike was stored as one unit, the other's metrics lost."""
    catalog = FakeCatalog.generate(seed=1, comp_tasks=10)
    doubled: list[str] = []

    def answer(self: FakeServer, route: str, action: str, body: dict[str, Any], f: Any) -> Any:
        result = ANSWER(self, route, action, body, f)
        if action == "DescribeEvalTaskReport" and result:
            doubled.append(body["taskId"])
            twin = {**result[0], "effectMetric": {"accuracy": 0.123}}
            return [*result, twin]
        return result

    with fake_console(catalog) as server:
        monkeypatch.setattr(FakeServer, "answer", answer)
        summary = sync(db_url, server, max_attempts=1)
    assert doubled, "no evaluation task has a report"
    assert summary.status == "partial"
    stored = stored_rows(db_url)["eval_task_report"]
    assert not [u for u in stored.values() if u["task_id"] in doubled]
    assert any("two units evaluate the same" in m for m in _errors(summary, db_url))


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
