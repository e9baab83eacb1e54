"""API faults through a whole sync: retried ones leave no trace, the others fail one entity or one
listing (a ``partial`` run that deletes nothing in that scope), and never corrupt the database.

Also the chaos test: many syncs with random faults and catalog mutations in between; a final clean
sync must leave the database equal to the catalog with a gap-free, overlap-free history.
"""

from __future__ import annotations

import functools
import random
from typing import Any

import pytest

from catalog.api.retry import RetryPolicy
from catalog.errors import ApiDown, ApiError, ExitCode, MalformedResponse
from catalog.fake.catalog import FakeCatalog
from catalog.fake.faults import FaultPlan, chaos_plan
from catalog.schema import SPECS, changes, sync_errors, sync_runs
from tests._proc import assert_consistent, dump_db
from tests.helpers import (
    expected_rows,
    failing,
    fake_console,
    stored_rows,
    sync,
    table_rows,
    tracked_only,
)


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Backoff delays of milliseconds: these tests count retries, they do not time them."""
    monkeypatch.setattr("catalog.sync.RetryPolicy",
                        functools.partial(RetryPolicy, base_delay=0.01, max_delay=0.05))


def _errors(db_url: str) -> list[dict[str, Any]]:
    return table_rows(db_url, sync_errors)


def _assert_equals_catalog(db_url: str, catalog: FakeCatalog) -> None:
    assert stored_rows(db_url) == tracked_only(expected_rows(catalog))
    assert_consistent(db_url)


def _deleted_keys(db_url: str) -> dict[str, set[str]]:
    all_rows = stored_rows(db_url, current_only=False)
    alive = stored_rows(db_url)
    return {kind: set(all_rows[kind]) - set(alive[kind]) for kind in all_rows}


def _assert_no_live_entity_deleted(db_url: str, catalog: FakeCatalog,
                                   before: dict[str, set[str]] | None = None) -> None:
    """A fault may leave the database behind the catalog, never mark a live entity deleted.

    ``before``: what was deleted before the run; an entity deleted earlier and back in the
    catalog since may stay deleted through a faulty run (stale, not wrong).
    """
    expected = expected_rows(catalog)
    for kind, keys in _deleted_keys(db_url).items():
        wrongly = (keys - (before or {}).get(kind, set())) & set(expected[kind])
        assert not wrongly, f"live {kind} marked deleted: {sorted(wrongly)[:5]}"


@pytest.mark.parametrize(
    ("target", "fault", "params"),
    [
        ("*", "429", {"retry_after": 0}),
        ("DescribeModel", "429", {"retry_after": "http-date"}),
        ("DescribeModel", "5xx", {"status": 503}),
        ("DescribeModelExportTask", "drop", {}),
        ("DescribeCustomModelSets", "drop", {}),
        ("/wenxinworkshop/modelrepo/eval/result/export/info", "v1_rate_limit", {}),
        ("DescribeModel", "slow", {"seconds": 1.5}),
    ],
)
def test_retryable_faults_leave_no_trace(db_url: str, target: str, fault: str,
                                         params: dict[str, Any]) -> None:
    plan = FaultPlan(seed=3).once(target, fault, times=2 if fault != "slow" else 1, **params)
    with fake_console(faults=plan) as server:
        summary = sync(db_url, server, max_attempts=4, timeout=(1.0, 1.0), page_size=3)
        assert summary.status == "success"
        assert summary.api_retries >= 1
        assert plan.pending() == 0
        _assert_equals_catalog(db_url, server.catalog)
    assert _errors(db_url) == []


def test_retries_exhausted_fail_that_entity_only(db_url: str) -> None:
    with fake_console() as server:
        sync(db_url, server)
        catalog = server.catalog
        victim = catalog.keys("model_version")[0]
        catalog.remove("model_version", victim)
        server.faults = FaultPlan().once("DescribeModel", "5xx", times=3)
        summary = sync(db_url, server, max_attempts=3, workers=1)  # one worker: 3 in a row
        assert summary.status == "partial" and summary.exit_code == ExitCode.PARTIAL
        errors = _errors(db_url)
        assert len(errors) == 1
        assert errors[0]["call"] == "DescribeModel" and errors[0]["kind"] == "model_version"
        assert "gave up after 3 attempts" in errors[0]["message"]
        _assert_no_live_entity_deleted(db_url, catalog)
        server.faults = None
        assert sync(db_url, server).status == "success"
        _assert_equals_catalog(db_url, catalog)
        assert victim in _deleted_keys(db_url)["model_version"]


def test_a_set_listing_that_fails_midway_deletes_no_set(db_url: str) -> None:
    """Sets come from their listing: a page that fails leaves the listing incomplete, so a set
    gone from the account is not deleted in that run (the next complete listing decides)."""
    from catalog.fake.server import V2Error

    with fake_console() as server:
        sync(db_url, server, page_size=2)
        catalog = server.catalog
        gone = catalog.keys("model_set")[-1]
        catalog.remove("model_set", gone)
        answer = failing(
            server,
            lambda route, action, body: action == "DescribeCustomModelSets"
            and bool(body.get("marker")),
            V2Error(500, "InternalError", "injected"),
        )
        summary = sync(db_url, server, max_attempts=1, page_size=2)
        assert summary.status == "partial"
        assert _deleted_keys(db_url)["model_set"] == set()
        assert gone in stored_rows(db_url)["model_set"]
        assert_consistent(db_url)
        server.answer = answer  # type: ignore[method-assign]
        assert sync(db_url, server, page_size=2).status == "success"
        assert gone in _deleted_keys(db_url)["model_set"]


def test_malformed_answers_fail_the_entity_and_are_not_deleted(db_url: str) -> None:
    with fake_console() as server:
        sync(db_url, server)
        catalog = server.catalog
        custom = {m for k in catalog.keys("model_set")
                  if catalog.get("model_set", k)["source"] != "System"
                  for m in catalog.get("model_set", k)["modelIds"]}
        gone = sorted(custom)[0]
        catalog.remove("model_version", gone)  # its set still has other versions
        server.faults = FaultPlan().once("DescribeModel", "malformed", times=1000)
        summary = sync(db_url, server)
        assert summary.status == "partial"
        describe = [e for e in _errors(db_url) if e["call"] == "DescribeModel"]
        assert len(describe) == len(custom) - 1  # every custom version still listed
        assert all("not JSON" in e["message"] and e["entity_id"] for e in describe)
        # the versions whose answers were malformed are kept; the one the set's modelIds
        # stopped listing is deleted, malformed answers or not
        assert _deleted_keys(db_url)["model_version"] == {gone}
        assert_consistent(db_url)
        server.faults = None
        assert sync(db_url, server).status == "success"
        _assert_equals_catalog(db_url, catalog)
        assert _deleted_keys(db_url)["model_version"] == {gone}


@pytest.mark.parametrize("fault", ["page_loop", "truncated_no_marker", "empty_page_more"])
def test_broken_pagination_fails_the_listing_and_deletes_nothing(db_url: str, fault: str) -> None:
    with fake_console() as server:
        sync(db_url, server, page_size=2)
        catalog = server.catalog
        for task_id in catalog.keys("compression_task")[:10]:
            catalog.remove("compression_task", task_id)
        custom = [k for k in catalog.keys("model_set")
                  if catalog.get("model_set", k)["source"] == "UserCreate"]
        catalog.remove("model_set", custom[0])
        plan = FaultPlan()
        for action in ("DescribeModelCompTasks", "DescribeCustomModelSets"):
            # a harmless fault first, so the real one hits page 2 (a loop needs a page to repeat)
            plan.once(action, "dup_items").once(action, fault)
        server.faults = plan
        summary = sync(db_url, server, page_size=2)
        assert summary.status == "partial"
        calls = {e["call"] for e in _errors(db_url)}
        assert calls == {"DescribeModelCompTasks", "DescribeCustomModelSets"}
        assert _deleted_keys(db_url)["compression_task"] == set()
        assert _deleted_keys(db_url)["model_set"] == set()
        _assert_no_live_entity_deleted(db_url, catalog)
        assert_consistent(db_url)
        server.faults = None
        assert sync(db_url, server, page_size=2).status == "success"
        _assert_equals_catalog(db_url, catalog)


def test_items_repeated_across_pages_count_once(db_url: str) -> None:
    plan = FaultPlan().once("DescribeModelCompTasks", "dup_items", times=3)
    with fake_console(faults=plan) as server:
        summary = sync(db_url, server, page_size=4)
        assert summary.status == "success"
        n = len(server.catalog.keys("compression_task"))
        assert summary.counts["compression_task_seen"] == n
        assert summary.counts["compression_task_inserted"] == n
        _assert_equals_catalog(db_url, server.catalog)


def test_failing_first_call_leaves_the_database_untouched(db_url: str) -> None:
    with fake_console() as server:
        sync(db_url, server)
        before = dump_db(db_url)
        # malformed on every attempt: a malformed answer is retried like a 5xx first
        server.faults = FaultPlan().once("DescribeCustomModelSets", "malformed", times=3)
        with pytest.raises(MalformedResponse) as refused:
            sync(db_url, server, max_attempts=3)
        assert refused.value.exit_code == ExitCode.API_UNREACHABLE
        assert str(refused.value).startswith("DescribeCustomModelSets: answer is not JSON")
        assert dump_db(db_url) == before


# ---------------------------------------------------------------------- odd values


ODD = ["it's \"quoted\"; DROP TABLE model_sets; --", "名字🚀 Ünïcode \u200b\u0301",
       "\\x00 '%s' %(a)s"]


def test_odd_ids_names_and_10kb_strings_are_stored_as_is(db_url: str) -> None:
    rng = random.Random(5)
    catalog = FakeCatalog.generate(seed=2)
    big = "".join(rng.choice("abc名字'\"\\ 🚀") for _ in range(10_000))
    with catalog.lock:
        sets = catalog.items("model_set")
        sets[0]["modelSetName"] = ODD[0]
        sets[1]["description"] = big
        sets[2]["modelSetName"] = ODD[1]
        tasks = catalog._store("compression_task")  # noqa: SLF001 - ids the fake cannot make
        for i, odd in enumerate(ODD):
            key = next(iter(tasks))
            item = tasks.pop(key)
            item["id"] = f"{odd[:40]}-{i}"
            item["name"] = odd
            item["description"] = big if i == 0 else odd
            tasks[item["id"]] = item
    with fake_console(catalog) as server:
        assert sync(db_url, server, page_size=2).status == "success"
        _assert_equals_catalog(db_url, catalog)
        # again: nothing changed, nothing written, the odd keys match themselves
        summary = sync(db_url, server, page_size=2)
        assert summary.status == "success"
        assert sum(v for k, v in summary.counts.items() if k.endswith(("_inserted", "_updated",
                                                                         "_deleted"))) == 0
        stored = stored_rows(db_url)
        assert stored["model_set"][sets[1]["modelSetId"]]["description"] == big
        for i, odd in enumerate(ODD):
            assert stored["compression_task"][f"{odd[:40]}-{i}"]["name"] == odd
        # and deleting an odd id works too
        catalog.remove("compression_task", f"{ODD[0][:40]}-0")
        assert sync(db_url, server, page_size=2).status == "success"
        _assert_equals_catalog(db_url, catalog)


# ---------------------------------------------------------------------- chaos


def _mutate(catalog: FakeCatalog, rng: random.Random, removed: list[tuple[str, Any]]) -> None:
    """A few random adds, changes, removals and restores, as between two cron runs."""
    for _ in range(rng.randint(1, 6)):
        op = rng.choice(["add", "change", "change", "change", "remove", "restore"])
        kind = rng.choice(["model_set", "model_version", "compression_task", "model_export",
                           "eval_result_export"])
        keys = catalog.keys(kind)
        try:
            if op == "add" and kind != "eval_result_export":
                catalog.add(kind, rng)
            elif op == "change" and keys:
                catalog.change(kind, rng.choice(keys), rng)
            elif op == "remove" and keys and kind != "eval_result_export":
                removed.append((kind, catalog.remove(kind, rng.choice(keys))))
            elif op == "restore" and removed:
                kind, item = removed.pop(rng.randrange(len(removed)))
                parent_ok = (kind != "model_version"
                             or item["item"]["modelSetId"] in catalog.keys("model_set"))
                export_ok = kind != "model_export" or item["key"] in catalog.keys("model_version")
                if parent_ok and export_ok and item["key"] not in catalog.keys(kind):
                    catalog.restore(kind, item)
        except (ValueError, KeyError):
            continue


@pytest.mark.slow
def test_chaos_many_syncs_with_faults_and_mutations(db_url: str) -> None:
    rng = random.Random(20240601)
    catalog = FakeCatalog.generate(seed=7, model_sets=6, comp_tasks=25)
    removed: list[tuple[str, Any]] = []
    outcomes: dict[str, int] = {}
    with fake_console(catalog) as server:
        sync(db_url, server, page_size=4)
        for round_ in range(10):
            plan = chaos_plan(0.25, seed=round_)
            plan.rate("malformed", 0.03)
            plan.rate("page_loop", 0.1)
            plan.rate("truncated_no_marker", 0.05)
            plan.rate("empty_page_more", 0.05)
            plan.rate("dup_items", 0.1)
            server.faults = plan
            deleted_before = _deleted_keys(db_url)
            before = dump_db(db_url)
            try:
                status = sync(db_url, server, page_size=4, max_attempts=4,
                              allow_mass_delete=True).status
            except ApiError as exc:
                # Only the first call, made before the run starts, may end a sync (README: the
                # API could not be reached, exit 5), and then the database is as it was.
                assert exc.exit_code == ExitCode.API_UNREACHABLE
                assert str(exc).startswith("DescribeCustomModelSets"), str(exc)
                assert dump_db(db_url) == before
                status = "refused before the run"
            outcomes[status] = outcomes.get(status, 0) + 1
            assert_consistent(db_url)
            _assert_no_live_entity_deleted(db_url, catalog, deleted_before)
            _mutate(catalog, rng, removed)
        server.faults = None
        final = sync(db_url, server, page_size=4, allow_mass_delete=True)
        assert final.status == "success", final.message
        _assert_equals_catalog(db_url, catalog)
    assert outcomes.get("partial", 0) >= 1, outcomes  # the faults did bite


def test_a_failed_detail_call_leaves_a_stored_entity_as_it_was(db_url: str) -> None:
    """Every failed task changed (status, reason) and its detail call fails: the listing alone
    would pair the new status with the stored reason, a state the task never had, in history
    and ``changes`` (the 2026-12-03 crash audit). The stored task is left as it was, the failure
    recorded; a new failed task is stored as listed (it exists, and its call may keep failing);
    the next run writes the whole answers, one change each."""
    catalog = FakeCatalog.generate(seed=4, model_sets=3, comp_tasks=120)
    rng = random.Random(9)
    with fake_console(catalog) as server:
        sync(db_url, server)
        before = stored_rows(db_url)["compression_task"]
        failed = {k for k, row in before.items() if row["status"] == "failed"}
        assert failed, "no failed task: the test shows nothing"
        for key in failed:
            catalog.change("compression_task", key, rng)
        server.faults = FaultPlan().once("DescribeModelCompTask", "5xx", times=10_000)
        partial = sync(db_url, server, max_attempts=1)
        assert partial.status == "partial"
        after = stored_rows(db_url)["compression_task"]
        asked = {k for k in failed if catalog.get("compression_task", k)["status"] == "failed"}
        assert asked, "no changed task stayed failed: the test shows nothing"
        assert {k: after[k] for k in asked} == {k: before[k] for k in asked}
        run_id = partial.run_id
        touched = {str(c["entity_id"]) for c in table_rows(db_url, changes)
                   if c["run_id"] == run_id}
        assert not touched & asked
        server.faults = None
        done = sync(db_url, server)
    assert done.status == "success"
    assert stored_rows(db_url) == tracked_only(expected_rows(catalog))
    history = [r for r in table_rows(db_url, SPECS["compression_task"].history)
               if str(r["task_id"]) in asked]
    assert len(history) == 2 * len(asked)  # the first run's version and the whole new one


def test_an_api_that_stops_answering_mid_run_ends_the_run_in_one_error(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mid-run (after 40 calls), every call gets no answer (the connection dropped). Each
    entity failing after its retries took tens of minutes and thousands of error lines (the
    2026-12-03 crash audit); once no call has had an answer for ``OUTAGE`` seconds, the run
    ends: failed, exit 5, nothing deleted, the next run whole."""
    monkeypatch.setattr("catalog.api.client.OUTAGE", 0.5)
    catalog = FakeCatalog.generate(seed=6, model_sets=30, versions_per_set=3, comp_tasks=20)
    with fake_console(catalog, latency=0.02) as server:  # the failing calls outlast OUTAGE
        sync(db_url, server)
        before = stored_rows(db_url)
        record, calls = server.record, [0]

        def outage_after_40(call: Any) -> None:
            record(call)
            calls[0] += 1
            if calls[0] == 40:
                server.faults = FaultPlan().once("*", "drop", times=10**6)

        monkeypatch.setattr(server, "record", outage_after_40)
        with pytest.raises(ApiDown) as info:
            sync(db_url, server, max_attempts=2)
        assert info.value.exit_code == ExitCode.API_UNREACHABLE
        assert "has answered no call for" in str(info.value)
        runs = table_rows(db_url, sync_runs)
        assert runs[-1]["status"] == "failed" and "answered no call" in runs[-1]["error"]
        errors = [e for e in table_rows(db_url, sync_errors) if e["run_id"] == runs[-1]["run_id"]]
        assert len(errors) < len(before["model_version"])  # not one per version
        assert stored_rows(db_url) == before  # nothing deleted, nothing half-written
        monkeypatch.setattr(server, "record", record)
        server.faults = None
        assert sync(db_url, server).status == "success"
    assert stored_rows(db_url) == tracked_only(expected_rows(catalog))


def test_one_call_failing_longer_than_outage_fails_only_its_entity(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With one worker, one version's call fails for longer than ``OUTAGE`` (its three
    attempts, 0.15 s each) and nothing else is answered meanwhile: still that entity's failure,
    not an outage (``OUTAGE_CALLS``); the run goes on, deletes included."""
    monkeypatch.setattr("catalog.api.client.OUTAGE", 0.3)
    catalog = FakeCatalog.generate(seed=6, model_sets=4, versions_per_set=2, comp_tasks=20)
    with fake_console(catalog, latency=0.15) as server:
        server.faults = FaultPlan().once("DescribeModel", "5xx", times=3)
        first = sync(db_url, server, max_attempts=3, workers=1)
    assert first.status == "partial" and first.errors == 1


def test_a_set_whose_describe_call_fails_is_still_written_from_its_listing(db_url: str) -> None:
    """A set's listing is exact but for its creation time, which never changes, and its
    ``modelIds`` decide which versions are deleted: a failed describe call must not freeze the
    set's row while its versions change (``Kind.partial_listing``)."""
    catalog = FakeCatalog.generate(seed=6, model_sets=2, versions_per_set=1, system_sets=2,
                                   comp_tasks=2)
    with fake_console(catalog) as server:
        sync(db_url, server)
        preset = next(k for k, r in stored_rows(db_url)["model_set"].items() if r["is_system"])
        gone = catalog.get("model_set", preset)["modelIds"][-1]
        catalog.remove("model_version", gone)
        server.faults = FaultPlan().once("DescribeSystemModelSet", "5xx", times=100)
        assert sync(db_url, server, max_attempts=1).status == "partial"
        rows = stored_rows(db_url)
    assert gone not in rows["model_version"]
    assert rows["model_set"][preset]["model_ids"] == catalog.get("model_set", preset)["modelIds"]


def test_an_outage_noticed_after_a_stop_leaves_the_ending_to_the_stop() -> None:
    """``ApiDown`` ends the run (a fatal failure) unless a stop came first: then the run ends
    as the stop says (interrupted, exit 9), the outage its entity's failure."""
    import threading

    from catalog.events import Failure
    from catalog.walk import Walker

    for stopped, fatal in ((False, True), (True, False)):
        events: list[Any] = []
        stop = threading.Event()
        if stopped:
            stop.set()
        walker = Walker(object(), lambda task, depth: None, events.append,  # type: ignore[arg-type]
                        stop=stop)
        walker.fail("model_version", "DescribeModel", "amv-1",
                    ApiDown("the API has answered no call", call="DescribeModel", retryable=True))
        [failure] = events
        assert isinstance(failure, Failure) and failure.fatal is fatal
