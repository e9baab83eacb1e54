"""Property: a scoped run (``--model-set``) makes its scope what the console serves, and leaves
everything else as it was.

Random mutations on every kind (the history property test's generator), then a run scoped to one
model set. Inside the scope (the set, the versions it has or had, their export states, the
compression tasks the set's versions list now) and in the account-wide listings (fine-tuning,
evaluation, services, tracked exports) the stored rows must equal the fake's answers; every other
row must be exactly as the full run before left it, whatever happened to it in the console.
A delete rule that never fires in a scoped run, or one that reaches outside it, fails here.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from catalog import queries
from catalog.fake.catalog import FakeCatalog
from catalog.fake.server import ACTION_ROUTES, FakeServer
from catalog.kinds import model_sets
from tests.helpers import expected_rows, fake_console, stored_rows, sync, tracked_only
from tests.test_history import _query
from tests.test_property_history import _untrack_all_but, mutate

#: Read in full by a scoped run: their listings are the account's.
ACCOUNT_WIDE = ("fine_tuning_job", "fine_tuning_task", "eval_task", "eval_task_report",
                "service", "eval_result_export")


def _split(rows: dict[str, dict[str, Any]], inside: set[str], column: str) -> tuple[
    dict[str, dict[str, Any]], dict[str, dict[str, Any]]
]:
    """(rows whose ``column`` is in ``inside``, the others)."""
    ins = {k: r for k, r in rows.items() if str(r[column]) in inside}
    return ins, {k: r for k, r in rows.items() if k not in ins}


def _described(catalog: FakeCatalog, set_id: str, system: bool) -> dict[str, Any]:
    """A set's row as its describe call (what a scoped run reads) answers it."""
    action = model_sets.SET_ACTIONS[system]
    answer = FakeServer(catalog).answer(ACTION_ROUTES[action], action, {"modelSetId": set_id}, None)
    return model_sets.row(answer, is_system=system)


@pytest.mark.parametrize("seed", [2101, 2102, 2103, 2104])
def test_a_scoped_run_matches_the_console_inside_its_scope_and_keeps_the_rest(
    db_url: str, seed: int
) -> None:
    rng = random.Random(seed)
    catalog = FakeCatalog.generate(
        seed=seed, model_sets=3, versions_per_set=2, comp_tasks=14, eval_exports=2,
        system_sets=0, fine_tuning_jobs=2, tasks_per_job=2, eval_tasks=3, services=2,
    )
    ops: Counter[str] = Counter()
    with fake_console(catalog) as server:
        assert sync(db_url, server, include_system=False).status == "success"
        before = stored_rows(db_url)
        removed: list[dict[str, Any]] = []
        for step in range(3):
            mutate(catalog, rng, removed, ops, every_kind=step == 0)
        _untrack_all_but(db_url, [str(k) for k in catalog.keys("eval_result_export")])
        target = rng.choice(catalog.keys("model_set"))
        name = catalog.get("model_set", target)["modelSetName"]
        scoped = sync(db_url, server, model_sets=[name], include_system=False,
                      allow_mass_delete=True)
    assert scoped.status == "success", (seed, scoped.message)
    after = stored_rows(db_url)
    want = tracked_only(expected_rows(catalog))

    for kind in ACCOUNT_WIDE:
        assert after[kind] == want[kind], (seed, kind)

    # the set itself, as its describe call answers it; every other set as it was
    described = _described(catalog, target, system=False)
    listed = want["model_set"][target]
    assert after["model_set"].get(target) == {c: described.get(c, listed[c]) for c in listed}
    others = {k: r for k, r in before["model_set"].items() if k != target}
    assert {k: r for k, r in after["model_set"].items() if k != target} == others, seed

    # the versions the set has now or had: what the console says; the others as they were
    had = {k for k, r in before["model_version"].items() if r["model_set_id"] == target}
    has = set(catalog.get("model_set", target)["modelIds"])
    versions = had | has
    for kind, column in (("model_version", "model_id"), ("model_export", "model_id")):
        got_in, got_out = _split(after[kind], versions, column)
        want_in, _ = _split(want[kind], versions, column)
        _, was_out = _split(before[kind], versions, column)
        assert got_in == want_in, (seed, kind)
        assert got_out == was_out, (seed, kind)

    # compression tasks: those the set's versions list now are the console's; others untouched
    got_in, got_out = _split(after["compression_task"], has, "source_model_id")
    want_in, _ = _split(want["compression_task"], has, "source_model_id")
    _, was_out = _split(before["compression_task"], has, "source_model_id")
    assert got_in == want_in, seed
    assert got_out == was_out, seed


@pytest.mark.parametrize("system", [False, True], ids=["custom", "preset"])
def test_full_and_scoped_runs_in_turn_record_no_change_when_the_console_has_none(
    db_url: str, system: bool
) -> None:
    """A set's listing and its describe call answer different fields (the custom listing has no
    ``description``, the preset listing no ``createTime``). A custom set's description is
    learnt by the first scoped run (one update, from NULL); a preset set's creation time by the
    first full run, which asks the describe call for it. After that, a run reading one call
    after a run that read the other keeps what it was not told instead of recording it as
    changed to NULL and back."""
    catalog = FakeCatalog.generate(seed=2111, model_sets=2, system_sets=2, comp_tasks=4,
                                   eval_exports=0)
    target = [k for k in catalog.keys("model_set") if catalog.is_preset_set(k) == system][0]
    if not system:
        catalog.patch("model_set", target, fields={"description": "told by DescribeModelSet"},
                      actions=["DescribeModelSet"])
    name = catalog.get("model_set", target)["modelSetName"]
    column = "create_time" if system else "description"
    runs, after = [], []
    with fake_console(catalog) as server:
        for scoped in (False, True, False, True):
            scope = {"model_sets": [name]} if scoped else {}
            runs.append(sync(db_url, server, include_system=True, **scope))
            after.append(stored_rows(db_url)["model_set"][target][column])
    assert [r.status for r in runs] == ["success"] * 4
    described = _described(catalog, target, system)
    assert described[column] is not None
    learnt = [(r["entity_id"], r["operation"], r["field"], r["old_value"])
              for r in _changes(db_url, runs[1].run_id)]
    assert learnt == ([] if system else [(target, "update", column, None)])
    assert (after[0] is not None) == system  # the full run described the preset set
    assert after[1:] == [described[column]] * 3
    for run in runs[2:]:
        assert run.counts["model_set_updated"] == 0, run.line()
        assert _changes(db_url, run.run_id) == []
    assert stored_rows(db_url)["model_set"][target][column] == described[column]


def _changes(db_url: str, run_id: int | None) -> list[dict[str, Any]]:
    return _query(db_url, queries.changes_query, run_id=run_id)
