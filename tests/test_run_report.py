"""What a run tells its observer and its summary: the totals progress needs, the rate the
client settled on (also in ``sync_runs``)."""

from __future__ import annotations

from sqlalchemy import select

from catalog import db
from catalog.fake.catalog import FakeCatalog
from catalog.schema import sync_runs
from tests.helpers import fake_console, sync


def test_a_throttled_run_reports_the_rate_it_settled_on(sqlite_url: str) -> None:
    catalog = FakeCatalog.generate(seed=61, model_sets=8, comp_tasks=20, eval_exports=0)
    with fake_console(catalog, rate_limit=25.0, limit_shape="sliding") as server:
        summary = sync(sqlite_url, server, qps=200, workers=4, max_attempts=8)
    assert summary.status == "success"
    assert summary.throttles > 0
    assert summary.qps_settled is not None and summary.qps_settled < 100
    assert f"settled at {summary.qps_settled:.1f} calls/s" in summary.line()
    engine = db.create_engine_for(sqlite_url)
    with engine.connect() as conn:
        stored = conn.execute(select(sync_runs.c.qps_settled)).scalar_one()
    engine.dispose()
    assert stored == summary.qps_settled


def test_an_unthrottled_run_says_nothing_of_a_rate(sqlite_url: str) -> None:
    with fake_console() as server:
        summary = sync(sqlite_url, server, qps=0)
    assert summary.throttles == 0 and "settled" not in summary.line()


def test_totals_are_told_once_the_listings_end(sqlite_url: str) -> None:
    from typing import Any

    from catalog.sync import run_sync
    from tests.helpers import options

    catalog = FakeCatalog.generate(seed=62, model_sets=4, system_sets=2, comp_tasks=25,
                                   eval_exports=0)
    events: list[tuple[str, dict[str, Any]]] = []
    with fake_console(catalog) as server:
        run_sync(options(sqlite_url, server, page_size=3),
                 observer=lambda n, d: events.append((n, d)))
    totals = [(d["kind"], d["total"]) for n, d in events if n == "total"]
    assert totals.count(("model_set", 6)) == 1  # custom and preset listings, told once
    assert ("compression_task", 25) in totals
    sets_told = next(i for i, (n, d) in enumerate(events) if n == "total")
    # told when the listings ended, so after the last page, before the run is over
    assert events[-1][0] == "summary" and sets_told < len(events) - 1
