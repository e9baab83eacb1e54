"""Property: history and changes replay the catalog exactly, whatever happened to it.

A seeded generator (not hypothesis: each example needs a live server and a database, and a seed
in the failure message is all it takes to replay one) makes a random sequence of mutations in the
fake console -- add, change fields, remove, bring back, on every entity kind -- and syncs after
each step. Then, for every step k:

* ``as-of`` at run k's timestamp equals the catalog as it was at step k, field by field;
* the ``changes`` rows of run k equal the difference between the catalog at step k-1 and step k
  (insert / restore / delete rows carrying every tracked column, one update row per field), and
  every mutation made shows up there.

One database per backend per chunk of sequences, emptied between sequences, keeps it fast.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, func, select

from catalog import db, queries
from catalog.bulk import to_json
from catalog.fake.catalog import FakeCatalog
from catalog.schema import SPECS, metadata, sync_runs, tracked_eval_exports
from tests.helpers import expected_rows, fake_console, sync, tracked_only

KINDS = tuple(SPECS)
#: What the generator mutates directly. A report's units change only with their task (a
#: report of an ended task is final), so reports move through eval_task mutations.
MUTATED = tuple(kind for kind in KINDS if kind != "eval_task_report")
SEQUENCES_PER_CHUNK = 5
#: 15 sequences per backend, 30 in all (25 before, cut for the suite's 10-minute budget): each
#: chunk still covers every operation (asserted).
CHUNKS = 3

Rows = dict[str, dict[str, dict[str, Any]]]


@dataclass
class Step:
    """What one step did to the catalog, per (kind, key) as text."""

    added: set[tuple[str, str]] = field(default_factory=set)
    changed: set[tuple[str, str]] = field(default_factory=set)
    removed: set[tuple[str, str]] = field(default_factory=set)
    restored: set[tuple[str, str]] = field(default_factory=set)


def _parent_present(catalog: FakeCatalog, removal: dict[str, Any]) -> bool:
    """Whether bringing ``removal`` back would make it reachable by the walk again."""
    item = removal["item"]
    if removal["kind"] == "model_version":
        return item["modelSetId"] in catalog.keys("model_set")
    if removal["kind"] == "model_export":
        return removal["key"] in catalog.keys("model_version")
    return True


def _keys_of(removal: dict[str, Any]) -> list[tuple[str, str]]:
    out = [(removal["kind"], str(removal["key"]))]
    for child in removal["children"]:
        out.extend(_keys_of(child))
    return out


def mutate(catalog: FakeCatalog, rng: random.Random, removed: list[dict[str, Any]],
           ops: Counter[str], every_kind: bool = False) -> Step:
    """1-3 random valid mutations (and one per kind first if ``every_kind``); removals are kept
    in ``removed`` so they can come back."""
    step = Step()
    kinds = [*(MUTATED if every_kind else ()), *(None for _ in range(rng.randint(1, 3)))]
    for wanted in kinds:
        for _attempt in range(20):
            op = rng.choice(("add", "change", "change", "remove", "restore", "restore")
                            if removed else ("add", "change", "change", "remove"))
            kind = wanted or rng.choice(MUTATED)
            keys = catalog.keys(kind)
            if op == "add":
                if kind == "model_export" and all(
                    m in catalog.keys("model_export") for m in catalog.keys("model_version")
                ):
                    continue
                if kind in ("model_version", "compression_task") and not catalog.keys("model_set"):
                    continue
                try:
                    key = catalog.add(kind, rng)
                except ValueError:  # nothing it could hang off (e.g. no version to serve)
                    continue
                step.added.add((kind, str(key)))
                if kind == "model_version":  # the set's modelIds and modifyTime move too
                    step.changed.add(("model_set", catalog.get(kind, key)["modelSetId"]))
            elif op == "change":
                if not keys:
                    continue
                key = rng.choice(keys)
                catalog.change(kind, key, rng)
                step.changed.add((kind, str(key)))
            elif op == "remove":
                if not keys:
                    continue
                removal = catalog.remove(kind, rng.choice(keys))
                removed.append(removal)
                step.removed.update(_keys_of(removal))
            else:  # of the wanted kind, else any removed one (eleven kinds: a drawn kind
                # rarely has one)
                candidates = [r for r in removed
                              if (wanted is None or r["kind"] == kind)
                              and _parent_present(catalog, r)]
                if not candidates:
                    continue
                removal = rng.choice(candidates)
                kind = removal["kind"]
                removed.remove(removal)
                catalog.restore(kind, removal)
                step.restored.update(_keys_of(removal))
            ops[f"{op}:{kind}"] += 1
            break
    return step


def expected_changes(before: Rows, after: Rows, ever: dict[str, set[str]]) -> list[tuple[Any, ...]]:
    """The change rows a sync from ``before`` to ``after`` must write, as comparable tuples."""
    out: list[tuple[Any, ...]] = []
    for kind, spec in SPECS.items():
        old, new = before[kind], after[kind]
        for key in new.keys() - old.keys():
            op = "restore" if key in ever[kind] else "insert"
            tracked = {c: new[key][c] for c in spec.tracked}
            out.append((kind, key, op, None, None, to_json(tracked)))
        for key in old.keys() - new.keys():
            tracked = {c: old[key][c] for c in spec.tracked}
            out.append((kind, key, "delete", None, to_json(tracked), None))
        for key in old.keys() & new.keys():
            for c in spec.tracked:
                if old[key][c] != new[key][c]:
                    o, n = old[key][c], new[key][c]
                    out.append((kind, key, "update", c,
                                None if o is None else to_json(o),
                                None if n is None else to_json(n)))
    return sorted(out, key=repr)


def _reset(db_url: str) -> None:
    """Empty every catalog table (the schema stays), so the next sequence starts from nothing."""
    engine = db.create_engine_for(db_url)
    with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())
    engine.dispose()


def _untrack_all_but(db_url: str, refs: list[str]) -> None:
    """What a user does when an evaluation export is gone: untrack it (the sync then deletes
    it; an error answer for it never would)."""
    engine = db.create_engine_for(db_url)
    with engine.begin() as conn:
        if db.schema_state(conn) == "current":
            conn.execute(
                tracked_eval_exports.delete().where(tracked_eval_exports.c.export_ref.not_in(refs))
            )
    engine.dispose()


def _as_of_rows(conn: Connection, kind: str, moment: dt.datetime) -> dict[str, dict[str, Any]]:
    columns, rows = queries.as_of(conn, kind, moment)
    key = SPECS[kind].key
    assert {r[columns.index("account")] for r in rows} <= {"default"}
    out = {}
    for r in rows:
        row = dict(zip(columns, r, strict=True))
        del row["account"]
        out[str(row[key])] = row
    return out


def run_sequence(db_url: str, seed: int, ops: Counter[str]) -> None:
    rng = random.Random(seed)
    catalog = FakeCatalog.generate(
        seed=seed, model_sets=rng.randint(2, 3), versions_per_set=2,
        comp_tasks=rng.randint(6, 10), eval_exports=2, system_sets=rng.randint(0, 1),
    )
    removed: list[dict[str, Any]] = []
    snapshots: list[Rows] = []
    steps: list[Step] = [Step()]
    run_ids: list[int] = []
    with fake_console(catalog) as server:
        for k in range(rng.randint(3, 4)):  # the first sync, then 2-3 steps of mutations
            if k:
                steps.append(mutate(catalog, rng, removed, ops, every_kind=k == 1))
            # every kind, the opt-in V2 export tasks too (tracked by their amemt- ids)
            tasks = catalog.keys("eval_result_export_task")
            refs = [*(str(key) for key in catalog.keys("eval_result_export")), *tasks]
            _untrack_all_but(db_url, refs)  # an export leaves the catalog only by `eval untrack`
            summary = sync(db_url, server, workers=2, allow_mass_delete=True,
                           eval_export_ids=refs, kinds=KINDS)
            assert summary.status == "success", (seed, k, summary.message)
            assert summary.run_id is not None
            run_ids.append(summary.run_id)
            snapshots.append(tracked_only(expected_rows(catalog, export_tasks=tasks)))

    engine = db.create_engine_for(db_url)
    with engine.connect() as conn:
        stamps = dict(conn.execute(select(sync_runs.c.run_id, sync_runs.c.started_at)).all())
        ever: dict[str, set[str]] = {kind: set() for kind in KINDS}
        for k, run_id in enumerate(run_ids):
            moment = stamps[run_id]
            for kind in KINDS:
                got = _as_of_rows(conn, kind, moment)
                assert got == snapshots[k][kind], (seed, k, kind)
                # just before the run, the state of the step before (nothing before run 0)
                before = _as_of_rows(conn, kind, moment - dt.timedelta(microseconds=1))
                assert before == (snapshots[k - 1][kind] if k else {}), (seed, k, kind, "before")
            columns, rows = queries.changes_query(conn, run_id=run_id)
            got_changes = sorted(
                (tuple(r[columns.index(c)] for c in
                       ("kind", "entity_id", "operation", "field", "old_value", "new_value"))
                 for r in rows),
                key=repr,
            )
            previous = snapshots[k - 1] if k else {kind: {} for kind in KINDS}
            assert got_changes == expected_changes(previous, snapshots[k], ever), (seed, k)
            touched = {(r[0], r[1]): r[2] for r in got_changes}
            step = steps[k]
            now = {(kind, key) for kind in KINDS for key in snapshots[k][kind]}
            then = {(kind, key) for kind in KINDS for key in previous[kind]}
            for key in (step.added | step.restored) & now - then:
                assert touched.get(key) in ("insert", "restore"), (seed, k, key)
            for key in step.removed & then - now:
                assert touched.get(key) == "delete", (seed, k, key)
            live = now & then
            for key in step.changed:
                if key in live and key[0] != "model_export":  # an export may toggle back
                    assert touched.get(key) == "update", (seed, k, key)
            for kind in KINDS:
                ever[kind] |= set(snapshots[k][kind])
        # an unchanged re-sync would have been a run with no change rows: covered by test_history
        n_history = sum(
            int(conn.execute(select(func.count()).select_from(s.history)).scalar_one())
            for s in SPECS.values()
        )
        assert n_history >= sum(len(snapshots[0][kind]) for kind in KINDS)
    engine.dispose()


@pytest.fixture
def one_engine_per_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each sync makes (and disposes) its own engine, and with it SQLAlchemy's compiled-SQL
    cache, so ~200 syncs spend a third of their time compiling the same statements. Here one
    engine per URL is reused (``dispose()`` only empties its pool): what a long-lived process
    would do, and the same SQL."""
    engines: dict[str, Engine] = {}
    create = db.create_engine_for

    def cached(url: str, **kw: Any) -> Engine:
        if kw:
            return create(url, **kw)
        if url not in engines:
            engines[url] = create(url)
        return engines[url]

    monkeypatch.setattr(db, "create_engine_for", cached)
    yield
    for engine in engines.values():
        engine.dispose()


@pytest.mark.parametrize("chunk", range(CHUNKS))
@pytest.mark.usefixtures("one_engine_per_url")
def test_as_of_and_changes_replay_random_mutation_sequences(db_url: str, chunk: int) -> None:
    ops: Counter[str] = Counter()
    for n in range(SEQUENCES_PER_CHUNK):
        seed = 1000 + chunk * SEQUENCES_PER_CHUNK + n
        if n:
            _reset(db_url)
        run_sequence(db_url, seed, ops)
    # the generator really exercised every kind, and every kind of mutation
    for kind in MUTATED:
        assert ops[f"add:{kind}"] + ops[f"change:{kind}"] + ops[f"remove:{kind}"] > 0, (kind, ops)
    for op in ("add", "change", "remove", "restore"):
        assert sum(v for k, v in ops.items() if k.startswith(f"{op}:")) > 0, (op, ops)
