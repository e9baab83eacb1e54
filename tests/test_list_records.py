"""``kinds.base.list_records``: how a listing reaches the writer, page by page; and
``list_items``, a whole listing read item by item (sets, fine-tuning jobs, custom services).

They decide what may be deleted afterwards (their ``ScopeDone``), so each way a page can go
wrong is checked here against a stand-in walk that only collects what the listing emitted.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from catalog.bulk import answer_hash
from catalog.documented import DriftLog
from catalog.errors import ApiError
from catalog.events import Page, ScopeDone
from catalog.kinds.base import list_items, list_records

CALL = "DescribeModelCompTasks"


class _Walk:
    def __init__(self) -> None:
        self.drift = DriftLog()
        self.events: list[Any] = []
        self.failures: list[tuple[str, str, str | None, Exception]] = []

    def emit(self, event: Any) -> None:
        self.events.append(event)

    def fail(self, kind: str, call: str, entity: str | None, exc: Exception) -> None:
        self.failures.append((kind, call, entity, exc))


def _row(item: dict[str, Any]) -> dict[str, Any]:
    return {"task_id": item["id"], "name": item.get("name")}


def _list(walk: _Walk, pages: Iterator[list[dict[str, Any]]], **kw: Any) -> None:
    options: dict[str, Any] = {"whole": True, "listing": None, **kw}
    list_records(walk, "compression_task", CALL, pages, "id", _row, "*", **options)  # type: ignore[arg-type]


def test_each_page_is_one_hand_off_and_the_scope_closes_with_the_count() -> None:
    walk = _Walk()
    first = [{"id": "t1", "name": "a"}, {"id": "t2", "name": "b"}]
    second = [{"id": "t3", "name": "c"}]
    _list(walk, iter([first, second]))
    pages = [e for e in walk.events if isinstance(e, Page)]
    assert [[r.key for r in p.records] for p in pages] == [["t1", "t2"], ["t3"]]
    record = pages[0].records[0]
    assert record.raw_hash == answer_hash(first[0]) and record.call == CALL
    assert record.build() == {"task_id": "t1", "name": "a"}  # built only when asked
    assert walk.events[-1] == ScopeDone("compression_task", "*", 3)
    assert walk.failures == []


def _failing_after(first: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
    """A listing whose first page names ``first`` and whose second page fails."""
    yield [first]
    raise ApiError("answer is not JSON", call=CALL)


def test_a_failed_page_fails_the_listing_and_closes_no_scope() -> None:
    walk = _Walk()
    _list(walk, _failing_after({"id": "t1"}), listing="amv-1")
    assert not any(isinstance(e, ScopeDone) for e in walk.events)
    assert [(f[0], f[1], f[2]) for f in walk.failures] == [("compression_task", CALL, "amv-1")]
    # What the first page named is still recorded (seen, never deleted for this run).
    assert [r.key for e in walk.events if isinstance(e, Page) for r in e.records] == ["t1"]


def test_a_parents_scope_closes_without_a_count() -> None:
    walk = _Walk()
    _list(walk, iter([[{"id": "t1"}]]), whole=False, listing="job-1")
    assert walk.events[-1] == ScopeDone("compression_task", "*", None)


def _items(walk: _Walk, pages: Iterator[list[dict[str, Any]]]) -> list[str]:
    """The ids ``list_items`` handed to ``each``, in order."""
    seen: list[str] = []
    list_items(walk, "fine_tuning_job", CALL, pages, lambda item: seen.append(item["id"]), "*")  # type: ignore[arg-type]
    return seen


def test_list_items_hands_each_item_in_order_then_closes_the_scope_with_the_count() -> None:
    walk = _Walk()
    assert _items(walk, iter([[{"id": "j1"}, {"id": "j2"}], [{"id": "j3"}]])) == ["j1", "j2", "j3"]
    assert walk.events == [ScopeDone("fine_tuning_job", "*", 3)]
    assert walk.failures == []


def test_list_items_a_failed_page_fails_the_listing_and_closes_no_scope() -> None:
    walk = _Walk()
    # What the first page named is still handed on (recorded: seen, never deleted).
    assert _items(walk, _failing_after({"id": "j1"})) == ["j1"]
    assert walk.events == []
    assert [(f[0], f[1], f[2]) for f in walk.failures] == [("fine_tuning_job", CALL, None)]


def test_drift_is_found_page_by_page_as_item_by_item() -> None:
    """``check_page`` passes a conforming page in one step; any other page must give what
    checking each item gives: the same fields, counts and first example."""
    import random

    from catalog.documented import call_fields

    documented = call_fields()[CALL]
    required, optional = sorted(documented.required), sorted(documented.optional)
    assert required, "the listing's documents name fields that are always present"
    rng = random.Random(5)
    for _ in range(200):
        page = []
        for n in range(rng.randint(1, 6)):
            item: dict[str, Any] = {"id": f"t{n}"}
            for name in required + optional:
                if name in required and rng.random() > 0.1 or rng.random() < 0.5:
                    item[name] = "x"
            if rng.random() < 0.1:
                item["quotaTier"] = 1  # a field no document names
            page.append(item)
        by_page, by_item = DriftLog(), DriftLog()
        by_page.check_page("compression_task", CALL, page, "id")
        for item in page:
            by_item.check("compression_task", CALL, item, str(item["id"]))
        assert by_page.found == by_item.found
    # A page that keeps to the documents records nothing.
    clean = DriftLog()
    clean.check_page("compression_task", CALL, [dict.fromkeys(required, "x")], "id")
    assert clean.found == {}


def test_a_set_whose_answer_cannot_be_built_is_kept_whatever_id_the_listing_accepted() -> None:
    """The listing accepts an integer id, 0 included (``normalize.is_id``); a set whose row
    cannot be built is then kept as stored (``Keep``), or the listing's end would delete it."""
    from catalog.events import Keep
    from catalog.kinds import model_sets

    for set_id in (0, "am-1"):
        walk = _Walk()
        broken = {"modelSetId": set_id, "modelSetName": "x"}  # no modelIds: cannot be built
        model_sets._record(walk, broken, "DescribeModelSets", system=False, from_listing=True)  # type: ignore[arg-type]
        assert walk.events == [Keep("model_set", str(set_id))]
        assert [f[2] for f in walk.failures] == [str(set_id)]
