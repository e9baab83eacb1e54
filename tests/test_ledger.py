"""The in-memory ledger of stored answer hashes (``catalog.ledger``): what counts as unchanged,
what is counted once, and what goes back to SQL."""

from __future__ import annotations

import random
import sys
import threading

from catalog.ledger import ANSWERED, Ledger


def _filled(rows: list[tuple[str, str]], answered: bool = False) -> Ledger:
    """A ledger of stored (key, hash) rows, fingerprinted as the store does: each row's hash."""
    ledger = Ledger(len(rows), answered)
    assert ledger.fill(map(hash, rows))
    return ledger


def test_only_the_same_key_with_the_same_hash_is_settled() -> None:
    ledger = _filled([("a", "h1"), ("b", "h2"), ("7", "h3")])
    rest = ledger.settle({"a": "h1", "b": "other", "c": "h1", "7": "h3"}, False, [])
    assert rest == {"b": "other", "c": "h1"}
    assert ledger.counted == 2


def test_a_detail_check_settles_only_rows_whose_detail_was_answered() -> None:
    ledger = _filled([("a", "h" + ANSWERED), ("b", "h")], answered=True)
    assert ledger.settle({"a": "h", "b": "h"}, True, []) == {"b": "h"}
    assert ledger.counted == 1
    # Without a detail check either form is the same answer.
    assert ledger.settle({"a": "h", "b": "h"}, False, []) == {}
    assert ledger.counted == 2


def test_a_kind_without_detail_columns_is_not_asked_for_the_answered_form() -> None:
    ledger = _filled([("a", "h" + ANSWERED)], answered=False)
    assert ledger.settle({"a": "h"}, False, []) == {"a": "h"}


def test_a_key_named_twice_is_counted_once() -> None:
    ledger = _filled([("a", "h"), ("b", "h")])
    ledger.settle({"a": "h"}, False, [])
    ledger.settle({"a": "h", "b": "h"}, False, [])
    assert ledger.counted == 2


def test_a_forgotten_row_goes_back_to_sql_and_leaves_the_count() -> None:
    ledger = _filled([("a", "h"), ("b", "h" + ANSWERED)], answered=True)
    ledger.settle({"a": "h"}, False, [])
    ledger.forget(Ledger.fingerprints("a", "h"))  # the run wrote it
    ledger.forget(Ledger.fingerprints("b", "h"))  # deleted it (held in its answered form)
    ledger.forget(Ledger.fingerprints("c", "h"))  # never held: nothing to do
    assert ledger.counted == 0
    assert ledger.settle({"a": "h", "b": "h"}, False, []) == {"a": "h", "b": "h"}


def test_take_gives_each_counted_row_once_and_later_hits_are_listed() -> None:
    ledger = _filled([("a", "h"), ("b", "h"), ("c", "h")])
    ledger.settle({"a": "h", "b": "h"}, False, [])
    taken = [ledger.take(hash((k, "h"))) for k in ("a", "b", "c", "a")]
    assert taken == [True, True, False, False]
    assert ledger.counted == 0
    ledger.list_counted()
    listed: list[str] = []
    assert ledger.settle({"a": "h", "c": "h"}, False, listed) == {}
    assert listed == ["c"]  # a was seen (and listed) already
    assert ledger.counted == 0


def test_a_ledger_refuses_more_rows_than_it_was_sized_for() -> None:
    rows = [(f"k{n}", "h") for n in range(40)]
    assert not Ledger(2, False).fill(map(hash, rows))
    assert Ledger(40, False).fill(map(hash, rows))


def test_many_rows_share_neighbouring_slots_and_are_still_told_apart() -> None:
    """Slots are chosen modulo the table's size, so rows probe past each other; every held
    pair must still be found, and no pair that was not held."""
    rng = random.Random(5)
    rows = [(f"k{n}", f"{rng.getrandbits(64):x}") for n in range(5000)]
    ledger = _filled(rows + rows[:10])  # a row twice: one entry
    assert ledger.entries == 5000
    asked = dict(rows[::2])
    asked.update({f"k{n}": "changed" for n in range(1, 5000, 4)})
    asked.update({f"new{n}": "x" for n in range(100)})
    rest = ledger.settle(asked, False, [])
    assert set(rest) == {f"k{n}" for n in range(1, 5000, 4)} | {f"new{n}" for n in range(100)}
    assert ledger.counted == 2500


def test_rows_sql_marked_before_the_ledger_was_taken_up_are_not_counted_again() -> None:
    ledger = _filled([("a", "h"), ("b", "h" + ANSWERED), ("c", "h")], answered=True)
    ledger.mark_listed([*Ledger.fingerprints("a", "h"), *Ledger.fingerprints("b", "h")])
    assert ledger.settle({"a": "h", "b": "h", "c": "h"}, False, []) == {}
    assert ledger.counted == 1  # c only: a and b are in the temporary table already
    assert not ledger.take(hash(("a", "h")))


def test_the_walks_settle_marks_nothing_once_the_counted_keys_are_listed() -> None:
    """The walk's thread cannot write a key to the temporary table: once the counted keys are
    listed, ``settle_counted`` leaves the whole page to the writer (None), marking nothing."""
    ledger = _filled([("a", "h"), ("b", "h")])
    assert ledger.settle_counted({"a": "h", "x": "h"}, {}) == {"x": "h"}
    assert ledger.counted == 1
    ledger.list_counted()
    assert ledger.settle_counted({"b": "h"}, {}) is None
    listed: list[str] = []
    assert ledger.settle({"b": "h"}, False, listed) == {}  # the writer's, which lists it
    assert listed == ["b"] and ledger.counted == 1


def test_two_threads_settling_the_same_keys_count_each_once() -> None:
    """The walk's thread and the writer's settle with one ledger (a listing may name a key on
    two pages, one settled by each): however their steps interleave, each key counts once."""
    rows = [(f"k{n}", "h") for n in range(64)]
    page = dict(rows)
    rounds, wrong = 300, []
    barrier = threading.Barrier(2)
    ledgers: list[Ledger] = []

    def settle(by_walk: bool) -> None:
        for n in range(rounds):
            barrier.wait()  # both threads on the same fresh ledger at once
            ledger = ledgers[n]
            if by_walk:
                ledger.settle_counted(page, {})
            else:
                ledger.settle(page, False, [])

    ledgers.extend(_filled(rows) for _ in range(rounds))
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    try:
        threads = [threading.Thread(target=settle, args=(walk,)) for walk in (True, False)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    wrong = [ledger.counted for ledger in ledgers if ledger.counted != len(rows)]
    assert wrong == []
