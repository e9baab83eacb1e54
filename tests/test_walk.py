"""The walk engine (``catalog.walk.Walker``) on its own: what its listings ask and hand on,
and what it reports of a failed or refused call, against a scripted client."""

from __future__ import annotations

import threading
from typing import Any

from catalog.errors import ApiDown, ApiError
from catalog.events import Event, Failure
from catalog.fake.catalog import FakeCatalog
from catalog.kinds import eval_tasks
from catalog.normalize import NormalizeError
from catalog.schema import sync_errors
from catalog.walk import Walker
from tests.helpers import fake_console, sync, table_rows

ACTION = "DescribeModelCompTasks"


class PagedClient:
    """Answers ``ACTION`` with ``pages`` pages of two items each; ``on_call`` runs on each call."""

    def __init__(self, pages: int, on_call: Any = None) -> None:
        self.pages = pages
        self.on_call = on_call
        self.asked: list[dict[str, Any]] = []

    def call(self, action: str, body: dict[str, Any], route: str = "/v2/model") -> dict[str, Any]:
        assert action == ACTION
        self.asked.append(body)
        if self.on_call is not None:
            self.on_call(len(self.asked))
        n = int(body.get("marker") or 0)
        last = n + 1 >= self.pages
        return {
            "taskList": [{"id": f"t{n}a"}, {"id": f"t{n}b"}],
            "pageInfo": {"isTruncated": not last, "nextMarker": "" if last else str(n + 1),
                         "maxKeys": body["maxKeys"]},
        }


def _walker(client: Any, **kw: Any) -> tuple[Walker, list[Event]]:
    events: list[Event] = []
    return Walker(client, lambda task, depth: task(), events.append, **kw), events


def _listed(walker: Walker) -> list[list[str]]:
    return [[item["id"] for item in page]
            for page in walker.pages(ACTION, {}, list_key="taskList", item_key="id")]


def test_a_stop_during_a_listing_hands_on_the_page_fetched_and_asks_no_further_page() -> None:
    """A signal while a page is asked: that page still reaches the writer (what was fetched is
    not lost), and no further page is asked (the run ends; the listing, incomplete, deletes
    nothing)."""
    stop = threading.Event()
    client = PagedClient(3, on_call=lambda n: stop.set() if n == 1 else None)
    walker, _ = _walker(client, stop=stop)
    assert _listed(walker) == [["t0a", "t0b"]]
    assert len(client.asked) == 1


def test_a_refusal_is_one_error_row_of_the_call_naming_no_entity(sqlite_url: str) -> None:
    """A permission refusal is the key's, not an entity's: one ``sync_errors`` row for the call
    that was refused, with no entity id, for a kind's call and for a detail call alike, however
    many entities the refused calls were for."""
    catalog = FakeCatalog.generate(seed=35, model_sets=3, comp_tasks=12, eval_exports=0)
    assert any(t["status"] == "failed" for t in catalog.items("compression_task"))
    denied = ["DescribeModelExportTask", "DescribeModelCompTask"]
    with fake_console(catalog, denied_actions=denied) as server:
        summary = sync(sqlite_url, server)
    assert summary.status == "partial" and summary.denied == ("model_export",)
    rows = sorted((e["kind"], e["call"], e["entity_id"], e["code"])
                  for e in table_rows(sqlite_url, sync_errors))
    assert rows == [
        ("compression_task", "DescribeModelCompTask", None, "AccessDenied"),
        ("model_export", "DescribeModelExportTask", None, "AccessDenied"),
    ]


def _failures(events: list[Event]) -> list[Failure]:
    return [e for e in events if isinstance(e, Failure)]


def test_a_failed_answer_is_its_entity_s_failure_with_the_service_s_code() -> None:
    """Any error other than a refusal fails the entity it was for (the run goes on), with the
    service's error code, or none when the error had none (a timeout, a dropped connection)."""
    walker, events = _walker(PagedClient(1))
    coded = ApiError("busy", call="DescribeModelCompTask", code="500", status=500)
    walker.fail("compression_task", "DescribeModelCompTask", "t1", coded, detail=True)
    uncoded = ApiError("read timed out", call="DescribeModel", retryable=True)
    walker.fail("model_version", "DescribeModel", "am-1", uncoded)
    assert _failures(events) == [
        Failure("compression_task", "DescribeModelCompTask", "t1", str(coded), "500"),
        Failure("model_version", "DescribeModel", "am-1", str(uncoded), None),
    ]
    assert all(not f.fatal for f in _failures(events))
    assert walker.denied_kinds == frozenset()


def test_a_malformed_answer_names_the_call_and_the_entity() -> None:
    walker, events = _walker(PagedClient(1))
    walker.fail("model_version", "DescribeModel", "am-1", NormalizeError("createTime: bad"))
    walker.fail("model_set", "DescribeCustomModelSets", None, NormalizeError("no list"))
    assert _failures(events) == [
        Failure("model_version", "DescribeModel", "am-1",
                "DescribeModel am-1: malformed answer: createTime: bad", "Malformed"),
        Failure("model_set", "DescribeCustomModelSets", None,
                "DescribeCustomModelSets: malformed answer: no list", "Malformed"),
    ]


def test_refused_credentials_and_an_outage_end_the_run_unless_a_stop_came_first() -> None:
    """Refused credentials and an API that stopped answering are the run's failure (fatal,
    carrying the error, which decides the exit); an outage noticed after a stop is not: the
    stop ends the run (interrupted)."""
    stop = threading.Event()
    walker, events = _walker(PagedClient(1), stop=stop)
    auth = ApiError("signature mismatch", call="DescribeModel", code="SignatureDoesNotMatch",
                    status=401)
    down = ApiDown("no answer for 60 s", call="DescribeModel")
    walker.fail("model_version", "DescribeModel", "am-1", auth)
    walker.fail("model_version", "DescribeModel", "am-2", down)
    stop.set()
    walker.fail("model_version", "DescribeModel", "am-3", down)
    failures = _failures(events)
    assert [(f.entity_id, f.fatal) for f in failures] == [
        ("am-1", True), ("am-2", True), ("am-3", False)]
    assert [f.error for f in failures] == [auth, down, down]


def test_a_run_without_eval_task_report_asks_no_report(sqlite_url: str) -> None:
    """A kind left out (``--kinds``) is not read, even where the kind it hangs off is: an ended
    evaluation task's report is not asked."""
    catalog = FakeCatalog.generate(seed=87, model_sets=1, system_sets=0, comp_tasks=0,
                                   eval_exports=0, fine_tuning_jobs=0, eval_tasks=6, services=0)
    ended = [t for t in catalog.items("eval_task") if t["state"] in eval_tasks.FINAL]
    assert ended  # tasks whose report a run with the kind asks
    with fake_console(catalog) as server:
        summary = sync(sqlite_url, server, kinds=("eval_task",), eval_export_ids=[])
        asked = server.call_count("DescribeEvalTaskReport")
    assert summary.status == "success" and summary.counts["eval_task_inserted"] == 6
    assert asked == 0
