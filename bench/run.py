#!/usr/bin/env python3
"""Benchmark of qianfan-catalog: is a sync at the API's floor, and is the database never the limit?

Modes (``python3 bench/run.py MODE --help``):

``api``  starts the fake console in its own process (a ``multiprocessing`` child holding a
         :class:`FakeServer` over a generated catalog, with per-call latency and a server-side
         rate limit), then on each database (SQLite file, throwaway PostgreSQL server) runs, each
         sync in a subprocess of its own: 1. a full sync into an empty database, 2. a re-sync
         with no change, 3. a re-sync after 1% of the entities of every kind changed. Per sync it
         reports API calls made and the minimum, wall seconds and the floor (calls / rate limit),
         the 429s the server sent, rows written per table (counted from the rowcount of every
         INSERT/UPDATE/DELETE the sync executed) and per second, and the sync process's peak RSS.
``rss``  the same full sync with no latency and no rate limit at two compression-task counts, to
         show that peak memory does not grow with the catalog.
``db``   database only, no HTTP: feeds ``Store.write_batch`` compression-task rows in batches as the
         sync's writer does, and reports entity rows per second (insert pass, no-change pass, a pass
         where every row changed), history and change rows included.

Every result is printed and written as JSON to ``bench/results/``.

The fake's mutations are asked for through a ``multiprocessing`` pipe that only the benchmark
holds: the fake server itself gains no control route.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing as mp
import os
import platform
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results"
AK, SK = "bench-ak", "bench-secret-key-0123456789abcdef"
PAGE_SIZE = 100
#: Tables a sync may legitimately write to when nothing changed (its own ledger row).
LEDGER_TABLES = {"sync_runs"}
#: Connection-local bookkeeping of the run, not part of the catalog.
TEMP_TABLES = {"catalog_run_seen", "catalog_run_scope"}


# ----------------------------------------------------------------------------- machine


def machine() -> dict[str, Any]:
    """What the figures came from: they mean little without it."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gb": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "sqlite": __import__("sqlite3").sqlite_version,
    }


# ----------------------------------------------------------------------------- fake server process


def _server_main(conn: Pipe, spec: dict[str, Any]) -> None:
    """The fake console's process: serve, and answer the benchmark's requests on the pipe."""
    from catalog.fake.catalog import FakeCatalog
    from catalog.fake.server import FakeServer, TokenBucket

    catalog = FakeCatalog.generate(
        seed=spec["seed"],
        model_sets=spec["model_sets"],
        versions_per_set=spec["versions_per_set"],
        comp_tasks=spec["comp_tasks"],
        eval_exports=spec["eval_exports"],
        system_sets=0,
        export_share=spec["export_share"],
    )
    throttled = Counter[str]()

    class CountingBucket(TokenBucket):
        """The server's own limiter, counting the calls it refused (429 / in-band code 18)."""

        def try_acquire(self) -> bool:
            ok = super().try_acquire()
            if not ok:
                throttled["refused"] += 1
            return ok

    server = FakeServer(catalog, AK, SK, latency=spec["latency"])
    if spec["rate_limit"]:
        server.limiter = CountingBucket(spec["rate_limit"])
    server.start()
    conn.send({"url": server.url, "eval_ids": [str(k) for k in catalog.keys("eval_result_export")]})
    rng = random.Random(spec["seed"] + 1)
    try:
        while True:
            cmd, arg = conn.recv()
            if cmd == "stats":
                with server._calls_lock:
                    calls = list(server.calls)
                conn.send(
                    {
                        "calls": len(calls),
                        "by_action": dict(Counter(c.action for c in calls)),
                        "status_429": sum(1 for c in calls if c.status == 429),
                        "throttled": throttled["refused"],
                    }
                )
            elif cmd == "reset":
                with server._calls_lock:
                    server.calls.clear()
                throttled.clear()
                conn.send(True)
            elif cmd == "mutate":
                changed: dict[str, int] = {}
                for kind in catalog.KINDS:
                    keys = catalog.keys(kind)
                    n = max(1, round(len(keys) * arg)) if keys else 0
                    for key in rng.sample(keys, n):
                        catalog.change(kind, key, rng)
                    changed[kind] = n
                conn.send(changed)
            elif cmd == "stop":
                break
    finally:
        server.stop()


@contextmanager
def fake_server(**spec: Any) -> Iterator[tuple[Pipe, dict[str, Any]]]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(
        target=_server_main, args=(child, spec), name="bench-fake-console", daemon=True
    )
    proc.start()
    try:
        if not parent.poll(600):
            raise RuntimeError("the fake server did not start")
        info = parent.recv()
        yield parent, info
    finally:
        with contextlib.suppress(BrokenPipeError, OSError):
            parent.send(("stop", None))
        proc.join(10)
        if proc.is_alive():
            proc.terminate()
            proc.join(5)


def ask(pipe: Pipe, cmd: str, arg: Any = None) -> Any:
    pipe.send((cmd, arg))
    return pipe.recv()


# ----------------------------------------------------------------------------- databases


@contextmanager
def databases(which: str) -> Iterator[Iterator[tuple[str, str]]]:
    """Yields a generator of (name, fresh empty database URL) for each asked-for backend."""
    tmp = Path(tempfile.mkdtemp(prefix="qfcat-bench-"))
    pg = None

    def gen() -> Iterator[tuple[str, str]]:
        nonlocal pg
        for name in which.split(","):
            if name == "sqlite":
                yield name, f"sqlite:///{tmp}/bench-{uuid.uuid4().hex[:8]}.db"
            elif name == "postgresql":
                if pg is None:
                    from tests.pg import PostgresServer

                    pg = PostgresServer()
                    pg.start()
                dbname = f"bench_{uuid.uuid4().hex[:8]}"
                pg.create_database(dbname)
                yield name, pg.url(dbname)
            else:
                raise SystemExit(f"unknown database {name!r}: sqlite or postgresql")

    try:
        yield gen()
    finally:
        if pg is not None:
            pg.stop()
        for f in tmp.iterdir():
            f.unlink()
        tmp.rmdir()


def table_counts(url: str) -> dict[str, int]:
    from sqlalchemy import func, inspect, select, table

    from catalog import db

    engine = db.create_engine_for(url)
    try:
        with engine.connect() as conn:
            names = inspect(conn).get_table_names()
            return {
                n: int(conn.execute(select(func.count()).select_from(table(n))).scalar_one())
                for n in sorted(names)
            }
    finally:
        engine.dispose()


# ----------------------------------------------------------------------------- one sync, in a child


_WRITE = re.compile(r"^\s*(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+\"?(\w+)\"?", re.IGNORECASE)


def _sync_child() -> None:
    """Run one sync in this process and print one JSON line: summary, writes per table, peak RSS.

    The sync's options arrive as JSON on stdin.
    """
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from catalog.sync import SyncOptions, run_sync

    writes: Counter[str] = Counter()
    statements: Counter[str] = Counter()

    def count(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        m = _WRITE.match(statement)
        if m:
            table = m.group(2)
            statements[table] += 1
            writes[table] += max(cursor.rowcount, 0)

    event.listen(Engine, "after_cursor_execute", count)
    opts = json.loads(sys.stdin.read())
    opts["timeout"] = tuple(opts.get("timeout", (5.0, 30.0)))
    t0 = time.monotonic()
    summary = run_sync(SyncOptions(**opts))
    wall = time.monotonic() - t0
    print(
        json.dumps(
            {
                "status": summary.status,
                "counts": summary.counts,
                "api_calls": summary.api_calls,
                "api_retries": summary.api_retries,
                "errors": summary.errors,
                "wall": wall,
                "rows_written": dict(writes),
                "write_statements": dict(statements),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def run_sync_process(
    url: str,
    base_url: str,
    eval_ids: list[str],
    qps: float,
    workers: int,
    batch_size: int,
    commit_interval: float,
) -> dict[str, Any]:
    opts = {
        "database_url": url,
        "access_key": AK,
        "secret_key": SK,
        "base_url": base_url,
        "eval_export_ids": eval_ids,
        "qps": qps,
        "workers": workers,
        "batch_size": batch_size,
        "commit_interval": commit_interval,
        "page_size": PAGE_SIZE,
        "include_system": False,
    }
    t0 = time.monotonic()
    proc = subprocess.run(  # options on stdin: a secret in argv would show in `ps`
        [sys.executable, __file__, "_sync"],
        input=json.dumps(opts),
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    elapsed = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"sync failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_wall"] = elapsed
    return out


# ----------------------------------------------------------------------------- api mode


def minimum_calls(spec: dict[str, Any], eval_count: int) -> dict[str, int]:
    """The calls a full sync cannot do without (see walk.py): the formula, term by term."""
    sets = spec["model_sets"]
    versions = sets * spec["versions_per_set"]
    return {
        "set_pages": max(1, math.ceil(sets / PAGE_SIZE)),
        "DescribeModelSet": sets,
        "DescribeModel": versions,
        "DescribeModelExportTask": versions,
        "task_pages": max(1, math.ceil(spec["comp_tasks"] / PAGE_SIZE)),
        "eval_exports": eval_count,
    }


def one_step(
    name: str,
    db: str,
    url: str,
    pipe: Pipe,
    info: dict[str, Any],
    spec: dict[str, Any],
    args: argparse.Namespace,
    minimum: int | None,
) -> dict[str, Any]:
    ask(pipe, "reset")
    before = table_counts(url)
    res = run_sync_process(
        url,
        info["url"],
        info["eval_ids"],
        args.qps,
        args.workers,
        args.batch_size,
        args.commit_interval,
    )
    after = table_counts(url)
    stats = ask(pipe, "stats")
    rate = spec["rate_limit"]
    catalog_writes = {t: n for t, n in res["rows_written"].items() if t not in TEMP_TABLES and n}
    written = sum(n for t, n in catalog_writes.items() if t not in LEDGER_TABLES | {"sync_errors"})
    floor = stats["calls"] / rate if rate else None
    out = {
        "step": name,
        "db": db,
        "status": res["status"],
        "api_calls": res["api_calls"],
        "server_calls": stats["calls"],
        "minimum_calls": minimum,
        "calls_by_action": stats["by_action"],
        "status_429": stats["status_429"],
        "throttled": stats["throttled"],
        "retries": res["api_retries"],
        "errors": res["errors"],
        "wall_s": round(res["wall"], 2),
        "process_wall_s": round(res["process_wall"], 2),
        "floor_s": round(floor, 2) if floor else None,
        "wall_over_floor": round(res["wall"] / floor, 3) if floor else None,
        "rows_written": written,
        "rows_written_per_s": round(written / res["wall"], 1),
        "writes_by_table": catalog_writes,
        "row_count_delta": {
            t: after.get(t, 0) - before.get(t, 0)
            for t in after
            if after.get(t, 0) != before.get(t, 0)
        },
        "peak_rss_mb": round(res["peak_rss_mb"], 1),
        "counts": {k: v for k, v in res["counts"].items() if v},
    }
    if name == "resync-nochange":
        out["zero_writes_ok"] = written == 0 and set(out["row_count_delta"]) <= LEDGER_TABLES
    ratio = f"{out['wall_over_floor']:.3f}x floor {out['floor_s']}s" if floor else "no floor"
    print(
        f"  {db:10} {name:16} {res['status']:8} calls {res['api_calls']} (min {minimum}) "
        f"429s {stats['status_429']} | {out['wall_s']}s = {ratio} | rows {written} "
        f"({out['rows_written_per_s']}/s) | rss {out['peak_rss_mb']} MB",
        flush=True,
    )
    return out


def api_mode(args: argparse.Namespace) -> dict[str, Any]:
    spec = {
        "seed": args.seed,
        "model_sets": args.model_sets,
        "versions_per_set": args.versions_per_set,
        "comp_tasks": args.comp_tasks,
        "eval_exports": args.eval_exports,
        "export_share": args.export_share,
        "latency": args.latency,
        "rate_limit": args.rate_limit,
    }
    results: list[dict[str, Any]] = []
    with fake_server(**spec) as (pipe, info), databases(args.db) as dbs:
        terms = minimum_calls(spec, len(info["eval_ids"]))
        minimum = sum(terms.values())
        print(f"fake console {info['url']}: {spec}; minimum calls {minimum} {terms}", flush=True)
        for db, url in dbs:
            results.append(one_step("full", db, url, pipe, info, spec, args, minimum))
            results.append(one_step("resync-nochange", db, url, pipe, info, spec, args, minimum))
            changed = ask(pipe, "mutate", args.change_share)
            step = one_step("resync-1pct", db, url, pipe, info, spec, args, minimum)
            step["entities_changed"] = changed
            results.append(step)
            # The next database starts empty, so the changed catalog is just another catalog.
    return {
        "mode": "api",
        "spec": spec,
        "qps": args.qps,
        "workers": args.workers,
        "batch_size": args.batch_size,
        "minimum_terms": terms,
        "results": results,
    }


def rss_mode(args: argparse.Namespace) -> dict[str, Any]:
    results = []
    for tasks in args.sizes:
        spec = {
            "seed": args.seed,
            "model_sets": args.model_sets,
            "versions_per_set": args.versions_per_set,
            "comp_tasks": tasks,
            "eval_exports": args.eval_exports,
            "export_share": args.export_share,
            "latency": 0.0,
            "rate_limit": 0,
        }
        with fake_server(**spec) as (pipe, info), databases(args.db) as dbs:
            minimum = sum(minimum_calls(spec, len(info["eval_ids"])).values())
            for db, url in dbs:
                step = one_step(f"full-{tasks}", db, url, pipe, info, spec, args, minimum)
                step["comp_tasks"] = tasks
                results.append(step)
    by_db: dict[str, list[float]] = {}
    for r in results:
        by_db.setdefault(r["db"], []).append(r["peak_rss_mb"])
    growth = {db: round(v[-1] / v[0] - 1, 3) for db, v in by_db.items() if len(v) > 1}
    print(f"  peak RSS growth from {args.sizes[0]} to {args.sizes[-1]} tasks: {growth}")
    return {"mode": "rss", "sizes": args.sizes, "results": results, "rss_growth": growth}


# ----------------------------------------------------------------------------- db-only mode


def task_rows(n: int, seed: int) -> list[dict[str, Any]]:
    from catalog import normalize
    from catalog.fake.catalog import FakeCatalog

    catalog = FakeCatalog.generate(
        seed=seed, model_sets=20, versions_per_set=5, comp_tasks=n, eval_exports=0, system_sets=0
    )
    with catalog.lock:
        return [normalize.compression_task_row(item) for item in catalog.items("compression_task")]


def db_pass(
    url: str, rows: list[dict[str, Any]], batch: int, label: str, commit_interval: float
) -> dict[str, Any]:
    from catalog import db, runs
    from catalog.store import Store

    engine = db.writer_engine(url)  # the engine the sync writes with
    conn = db.connect(engine)
    try:
        db.ensure_schema(conn, True)
        run_id, run_ts = runs.start_run(conn, {})
        conn.commit()
        store = Store(conn, run_id, run_ts)
        pacer = db.CommitPacer(conn.commit, commit_interval)  # as the sync's writer commits
        counts: Counter[str] = Counter()
        t0, c0 = time.perf_counter(), time.process_time()
        for start in range(0, len(rows), batch):
            res = store.write_batch("compression_task", rows[start : start + batch])
            counts["inserted"] += len(res.inserted)
            counts["updated"] += len(res.updated)
            counts["unchanged"] += res.unchanged
            pacer.wrote()
        pacer.now()
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        runs.finish_run(conn, run_id, "success", {}, 0, 0, 0, None)
        conn.commit()
    finally:
        conn.close()
        engine.dispose()
    return {
        "pass": label,
        "rows": len(rows),
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu, 3),
        "rows_per_s": round(len(rows) / seconds),
        **counts,
    }


def changed_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        new = dict(row)
        new["status"] = "stopped" if row.get("status") != "stopped" else "failed"
        new["name"] = f"{row.get('name')}-v2"
        out.append(new)
    return out


def db_mode(args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    rows = task_rows(args.tasks, args.seed)
    print(
        f"generated {len(rows)} compression-task rows in {time.perf_counter() - t0:.1f}s",
        flush=True,
    )
    results = []
    with databases(args.db) as dbs:
        for db, url in dbs:
            if args.profile:
                import cProfile
                import pstats

                prof = cProfile.Profile()
                prof.enable()
            for label, data in (
                ("insert", rows),
                ("nochange", rows),
                ("all-changed", changed_rows(rows)),
            ):
                r = db_pass(url, data, args.batch_size, label, args.commit_interval)
                r["db"] = db
                print(
                    f"  {db:10} {label:12} {r['rows']} rows in {r['seconds']}s "
                    f"(cpu {r['cpu_seconds']}s) "
                    f"= {r['rows_per_s']} rows/s",
                    flush=True,
                )
                results.append(r)
            if args.profile:
                prof.disable()
                pstats.Stats(prof).sort_stats("cumulative").print_stats(35)
    return {
        "mode": "db",
        "tasks": args.tasks,
        "batch_size": args.batch_size,
        "commit_interval": args.commit_interval,
        "results": results,
    }


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_sync"]:
        _sync_child()
        return
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="mode", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--db", default="sqlite,postgresql", help="comma list: sqlite,postgresql")
        sp.add_argument("--seed", type=int, default=7)
        sp.add_argument("--batch-size", type=int, default=500, help="the sync's --batch-size")
        sp.add_argument(
            "--commit-interval", type=float, default=1.0, help="the sync's --commit-interval"
        )
        sp.add_argument("--out", help="JSON file (default bench/results/<mode>-<time>.json)")

    def catalog_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--model-sets", type=int, default=1000)
        sp.add_argument("--versions-per-set", type=int, default=5)
        sp.add_argument("--eval-exports", type=int, default=10, help="tracked evaluation exports")
        sp.add_argument(
            "--export-share", type=float, default=1.0, help="share of versions exported"
        )
        sp.add_argument("--workers", type=int, default=8, help="the sync's --workers")

    a = sub.add_parser("api", help="full sync, no-change re-sync, 1%% re-sync against the fake")
    common(a)
    catalog_args(a)
    a.add_argument("--comp-tasks", type=int, default=20000)
    a.add_argument("--latency", type=float, default=0.030, help="seconds per call, server side")
    a.add_argument("--rate-limit", type=float, default=50.0, help="server calls/s (0: none)")
    a.add_argument("--qps", type=float, default=None, help="the sync's --qps (default: rate limit)")
    a.add_argument("--change-share", type=float, default=0.01)

    r = sub.add_parser("rss", help="peak RSS of a full sync at several compression-task counts")
    common(r)
    catalog_args(r)
    r.set_defaults(model_sets=20, versions_per_set=5)
    r.add_argument(
        "--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[10_000, 100_000]
    )

    d = sub.add_parser("db", help="database only: Store.write_batch rows/s with history")
    common(d)
    d.add_argument("--tasks", type=int, default=100_000)
    d.add_argument("--profile", action="store_true", help="cProfile the passes")

    args = p.parse_args(argv)
    if args.mode == "api" and args.qps is None:
        args.qps = args.rate_limit
    if args.mode == "rss":
        args.qps = 0
    started = time.strftime("%Y%m%d-%H%M%S")
    print(f"machine: {machine()}", flush=True)
    result = {"api": api_mode, "rss": rss_mode, "db": db_mode}[args.mode](args)
    result["machine"] = machine()
    result["command"] = " ".join(["python3", "bench/run.py", *argv])
    out = Path(args.out) if args.out else RESULTS / f"{args.mode}-{started}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
