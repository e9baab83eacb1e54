"""``events.back_from_detail``: a listed answer as it comes back from its detail call.

Its hash decides whether the next run asks again, so each way the kinds use it is checked
here: answered, failed, stopped, and the two ways a kind says otherwise (``keep_hash``).
"""

from __future__ import annotations

from typing import Any

from catalog.bulk import answer_hash
from catalog.events import FAILED, STOPPED, UNANSWERED, Record, back_from_detail

ITEM = {"id": "t1", "status": "failed"}


def _listed() -> Record:
    return Record("compression_task", "t1", ITEM, answer_hash(ITEM),
                  lambda: {"task_id": "t1"}, "DescribeModelCompTasks")


def _detail_row() -> dict[str, Any]:
    return {"task_id": "t1", "failed_reason": "OOM"}


def test_answered_keeps_the_listing_hash_with_the_detail_row() -> None:
    listed = _listed()
    back = back_from_detail(listed, _detail_row)
    assert back.detailed and back.incomplete is None
    assert back.raw_hash == listed.raw_hash and back.build() == _detail_row()
    assert (back.kind, back.key, back.obj, back.call) == (
        listed.kind, listed.key, listed.obj, listed.call
    )


def test_not_answered_goes_as_listed_without_a_hash() -> None:
    listed = _listed()
    for incomplete in (None, FAILED, STOPPED):  # refused, failed, a stop came first
        back = back_from_detail(listed, None, incomplete)
        assert back.detailed and back.incomplete == incomplete
        assert back.raw_hash == UNANSWERED and back.build is listed.build


def test_keep_hash_overrides_what_the_answer_decides() -> None:
    listed = _listed()
    # A failed call whose kind marks it in a NULL column: the hash stays.
    kept = back_from_detail(listed, None, FAILED, keep_hash=True)
    assert kept.raw_hash == listed.raw_hash and kept.build is listed.build
    assert kept.incomplete == FAILED
    # An answered call whose further call failed (a report): no hash, the detail row kept.
    dropped = back_from_detail(listed, _detail_row, keep_hash=False)
    assert dropped.raw_hash == UNANSWERED and dropped.build() == _detail_row()
    assert dropped.incomplete is None
