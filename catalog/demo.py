"""The demo: a fake console in this process, a real sync into the database, a look at the result.

It is what a newcomer runs first, so it uses exactly the code paths of a real sync; only the API
on the other end is the fake one. Its database is its own (the CLI gives ``./qianfan-demo.db``
unless ``--database-url`` is given), and every line it prints names it: a fake catalog in the
database a real sync uses would later read as a mass deletion.
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import func, select

from catalog import db
from catalog.fake.catalog import FakeCatalog
from catalog.fake.server import FakeServer
from catalog.schema import SPECS, sync_runs
from catalog.sync import SyncOptions, run_sync

DEMO_KEY, DEMO_SECRET = "demo-ak", "demo-sk"


def run_demo(database_url: str, model_sets: int = 12) -> Iterator[str]:
    catalog = FakeCatalog.generate(seed=7, model_sets=model_sets, comp_tasks=model_sets * 5)
    with FakeServer(catalog, DEMO_KEY, DEMO_SECRET) as server:
        yield f"fake console API at {server.url} ({model_sets} model sets)"
        yield f"demo database: {db.describe_url(database_url)}"
        tracked = [str(k) for k in catalog.keys("eval_result_export")]
        summary = run_sync(
            SyncOptions(
                database_url=database_url,
                access_key=DEMO_KEY,
                secret_key=DEMO_SECRET,
                base_url=server.url,
                include_system=True,
                eval_export_ids=tracked,
                qps=0,
            )
        )
        yield summary.line()
    engine = db.create_engine_for(database_url)
    with engine.connect() as conn:
        yield f"in {db.describe_url(database_url)}:"
        width = max(len(spec.table.name) for spec in SPECS.values())
        for kind, spec in SPECS.items():
            alive = conn.execute(
                select(func.count())
                .select_from(spec.table)
                .where(spec.table.c.deleted_at.is_(None))
            ).scalar_one()
            yield f"  {spec.table.name:<{width}} {alive:>6} current rows   (kind {kind})"
        runs = conn.execute(select(func.count()).select_from(sync_runs)).scalar_one()
        yield f"  {'sync_runs':<{width}} {runs:>6} runs"
    engine.dispose()
    yield (
        "next: run it again (nothing changes), look at it with `qianfan-catalog --database-url "
        f"{db.describe_url(database_url)} runs` (or report, changes, history), or query the "
        "current_* views with sqlite3/psql"
    )
