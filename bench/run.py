#!/usr/bin/env python3
"""Benchmark of qianfan-catalog: is a sync at the API's floor, and is the database never the limit?

Modes (``python3 bench/run.py MODE --help``):

``api``  starts the fake console in its own process (a ``multiprocessing`` child holding a
         :class:`FakeServer` over a generated catalog, with per-call latency and a server-side
         rate limit), then for each server rate (``--rate-limit 50,30``) and limiter shape
         (``--limit-shape bucket,fixed,sliding``: token bucket with a one-second burst, fixed or
         sliding one-second windows; ``fixed-bare``, fixed windows refusing with no
         ``Retry-After``; see ``catalog/fake/limiters.py``), on each database (SQLite
         file, throwaway PostgreSQL server) runs, each sync in a subprocess of its own and into a
         fresh database: 1. a full sync, 2. a re-sync with no change, 3. a re-sync after 1% of the
         entities of every kind the sync reads changed (``--steps`` picks some). The catalog holds
         fine-tuning jobs and tasks, evaluation tasks and services beside the model catalog, in
         proportion to its model sets (``--lifecycle-share``). Per sync it reports API calls made
         and the minimum (the README's formula, per call, and where the two differ), wall seconds
         and the floor (calls / the lower of the server's rate and ``--qps``), the 429s the
         server sent, the rate the client settled on and how soon its pace came within 5% of the
         server's, rows written per table (counted from the rowcount of every
         INSERT/UPDATE/DELETE the sync executed on entity, history and change tables; the run's
         ledger and the schema's own rows apart) and per second, and the sync process's peak
         RSS. Issue 12's setting::

             bench/run.py api --db sqlite --model-sets 100 --versions-per-set 5 \
                 --comp-tasks 2000 --qps 50 --rate-limit 50,30 \
                 --limit-shape bucket,fixed,sliding --steps full
``rss``  the same full sync with no latency and no rate limit at two compression-task counts, to
         show that peak memory does not grow with the catalog.
``db``   database only, no HTTP: feeds ``Store.write_batch`` compression-task rows in batches as the
         sync's writer does, and reports entity rows per second (insert pass, no-change pass, a pass
         where every row changed), history and change rows included.
``accounts`` N accounts (``--accounts 1,2,4,8``), each with a fake console of its own (its own
         catalog, rate limit and process) and a sync process of its own, all started together
         into one database (PostgreSQL by default): total wall time against one account's, calls
         per second in total, throttled answers. Issue 15's target: 8 accounts take <= 1.2x the
         wall time of one.
``noop`` the database-bound pair, in one run: against a fake with no latency and no rate limit
         holding ``--comp-tasks`` (100,000) compression tasks, a full sync (set-up; on
         PostgreSQL followed by the ``VACUUM (ANALYZE)`` autovacuum would run: ``settle``),
         then the no-op re-sync between two fetch-only walks of the same listing (the same
         pages through the same client, answers parsed, nothing normalised or written), each in
         its own process; reports wall and CPU seconds of each and the re-sync's ratio to the
         mean of the two walks around it (the machine's speed drifts between runs).
``reads`` the read side on a long history, no HTTP: ``--tasks`` compression tasks, then
         ``--runs`` daily runs each changing ``--change-share`` of them, written as the sync's
         writer writes; then the views and read commands a BI tool or a person runs, timed, and
         the exports (CSV, JSON, tables) as commands of their own, for their wall time and
         peak memory.

Every result is printed and written as JSON to ``bench/results/``.

The fake's mutations are asked for through a ``multiprocessing`` pipe that only the benchmark
holds: the fake server itself gains no control route.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import multiprocessing as mp
import os
import platform
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
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
#: Tables a sync writes to whatever changed: its own ledger row, and the run's record of answers
#: that differ from the documents (``api_drift`` holds each run's, docs/schema.md; the fake
#: serves a few fields the documents do not name).
LEDGER_TABLES = {"sync_runs", "api_drift"}
#: Connection-local bookkeeping of the run, not part of the catalog.
TEMP_TABLES = {"catalog_run_seen", "catalog_run_scope"}
#: The fake's kinds the benchmark's syncs do not read: ``eval_result_export_task`` is opt-in
#: (off unless named in ``--kinds``, docs/api.md) and the benchmark keeps the default kinds, so
#: changing them would change nothing a sync sees and the 1% re-sync leaves them be.
UNREAD_KINDS = {"eval_result_export_task"}
#: The evaluation-export call as the fake's call log names it (the V1 route has no Action).
EVAL_EXPORT_CALL = "/wenxinworkshop/modelrepo/eval/result/export/info"


# ----------------------------------------------------------------------------- machine


def compile_package() -> None:
    """Write the package's bytecode before any sync process starts, as installing it does
    (pip compiles what it installs). A source checkout run with ``PYTHONDONTWRITEBYTECODE``
    set, as on the machine these figures come from, never writes it, and then every sync
    process compiles the package again at start: about 0.2 s of CPU each, eight at once in
    the accounts mode, which no installed deployment pays."""
    import compileall

    compileall.compile_dir(str(ROOT / "catalog"), quiet=1)


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


def _listing(server: Any, action: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One listing's items as the sync pages it (id -> the item as served), so "new or changed
    since the last run" means what it means to the sync."""
    from catalog.fake.server import ACTION_ROUTES, LISTINGS

    listing = LISTINGS[action]
    items: dict[str, Any] = {}
    page: dict[str, Any] = {**(body or {}), "maxKeys": PAGE_SIZE}
    while True:
        result = server.answer(ACTION_ROUTES[action], action, page, None)
        for item in result[listing.list_key]:
            items[str(item[listing.id_field])] = item
        info = result["pageInfo"]
        if not info.get("isTruncated"):
            return items
        page = {**(body or {}), "maxKeys": PAGE_SIZE, "marker": info["nextMarker"]}


def _walk_ahead(server: Any, before: dict[str, dict[str, Any]] | None) -> tuple[
    dict[str, Any], dict[str, dict[str, Any]]
]:
    """What the next sync's listings will find: the sizes its paging depends on, and the detail
    calls it owes (the formula's variable terms), judged as the sync judges them: an item is new
    or changed when its answer's hash differs from the one the last sync saw (``before``; None:
    the database is new). Returns those figures and what the listings show now (the next
    ``before``)."""
    from catalog.bulk import answer_hash
    from catalog.kinds.eval_tasks import EVAL_TYPES, FINAL

    now: dict[str, dict[str, Any]] = {
        "compression_task": _listing(server, "DescribeModelCompTasks"),
        "fine_tuning_task": {},
        "eval_task": {},
    }
    jobs = _listing(server, "DescribeFineTuningJobs")
    per_job = []
    for job_id in jobs:
        tasks = _listing(server, "DescribeFineTuningTasks", {"jobId": job_id})
        per_job.append(len(tasks))
        now["fine_tuning_task"].update(tasks)
    per_type = []
    for eval_type in EVAL_TYPES:
        tasks = _listing(server, "DescribeEvalTasks", {"evalType": eval_type})
        per_type.append(len(tasks))
        now["eval_task"].update(tasks)
    last = before or {kind: {} for kind in now}

    def due(kind: str) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
        """(item now, item as the last sync saw it) of those new or changed since."""
        seen = last[kind]
        return [
            (item, seen.get(key))
            for key, item in now[kind].items()
            if key not in seen or answer_hash(seen[key]) != answer_hash(item)
        ]

    evals = due("eval_task")
    ft_due = {str(item["taskId"]) for item, _ in due("fine_tuning_task")}
    running = now["fine_tuning_task"].items()
    ft_due |= {key for key, item in running if item.get("runStatus") == "Running"}
    figures = {
        "failed_tasks_due": sum(1 for item, _ in due("compression_task")
                                if item.get("status") == "failed"),
        "jobs": len(jobs),
        "tasks_per_job": per_job,
        "ft_tasks_due": len(ft_due),
        "eval_tasks_per_type": per_type,
        "eval_tasks_due": len(evals),
        # ended, or ended when last stored (its units may be gone)
        "reports_due": sum(
            1 for item, was in evals
            if item.get("state") in FINAL or (was or {}).get("state") in FINAL
        ),
        "custom_services": len(_listing(server, "DescribeServices")),
    }
    return figures, now


def _server_main(conns: list[Pipe], specs: list[dict[str, Any]]) -> None:
    """The fake consoles' process: one server per spec, each answering the benchmark's requests
    on its own pipe.

    Several accounts' consoles share this one process. A real console runs elsewhere, so its
    CPU is not on the syncs' host; eight console processes beside eight syncs each woke cold for
    every call, and cost the machine about twice the CPU per call one busy process does.
    """
    import threading

    threads = [
        threading.Thread(target=_console, args=(conn, spec), name=f"console-{i}")
        for i, (conn, spec) in enumerate(zip(conns, specs, strict=True))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _console(conn: Pipe, spec: dict[str, Any]) -> None:
    """One fake console: serve, and answer the benchmark's requests on the pipe."""
    from catalog.fake.catalog import FakeCatalog
    from catalog.fake.limiters import make_limiter
    from catalog.fake.server import FakeServer

    catalog = FakeCatalog.generate(
        seed=spec["seed"],
        model_sets=spec["model_sets"],
        versions_per_set=spec["versions_per_set"],
        comp_tasks=spec["comp_tasks"],
        eval_exports=spec["eval_exports"],
        system_sets=0,
        export_share=spec["export_share"],
        fine_tuning_jobs=spec["fine_tuning_jobs"],
        tasks_per_job=spec["tasks_per_job"],
        eval_tasks=spec["eval_tasks"],
        services=spec["services"],
    )
    server = FakeServer(catalog, AK, SK, latency=spec["latency"])
    server.start()
    conn.send(
        {
            "url": server.url,
            "eval_ids": [str(k) for k in catalog.keys("eval_result_export")],
            "pid": os.getpid(),
        }
    )
    rng = random.Random(spec["seed"] + 1)
    seen: dict[str, dict[str, Any]] | None = None  # the listings as the last sync saw them
    try:
        while True:
            cmd, arg = conn.recv()
            if cmd == "stats":
                with server._calls_lock:
                    calls = list(server.calls)
                limiter = server.limiter
                conn.send(
                    {
                        "calls": len(calls),
                        "by_action": dict(Counter(c.action for c in calls)),
                        "status_429": sum(1 for c in calls if c.status == 429),
                        # 429s and the eval route's in-band code 18 alike
                        "throttled": limiter.refused if limiter is not None else 0,
                    }
                )
            elif cmd == "reset":
                with server._calls_lock:
                    server.calls.clear()
                conn.send(True)
            elif cmd == "limiter":  # (shape, rate): a fresh limiter, as a fresh server has
                shape, rate = arg
                server.limiter = make_limiter(shape, rate) if rate else None
                conn.send(True)
            elif cmd == "due":  # ``arg``: the database is new
                figures, seen = _walk_ahead(server, None if arg else seen)
                conn.send(figures)
            elif cmd == "mutate":
                changed: dict[str, int] = {}
                for kind in (k for k in catalog.ALL_KINDS if k not in UNREAD_KINDS):
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
def fake_servers(specs: list[dict[str, Any]]) -> Iterator[list[tuple[Pipe, dict[str, Any]]]]:
    """One fake console per spec, all in one process: (pipe, info) each."""
    ctx = mp.get_context("spawn")
    pipes = [ctx.Pipe() for _ in specs]
    proc = ctx.Process(
        target=_server_main,
        args=([child for _parent, child in pipes], specs),
        name="bench-fake-console",
        daemon=True,
    )
    proc.start()
    try:
        servers = []
        for parent, _child in pipes:
            if not parent.poll(600):
                raise RuntimeError("the fake server did not start")
            servers.append((parent, parent.recv()))
        yield servers
    finally:
        for parent, _child in pipes:
            with contextlib.suppress(BrokenPipeError, OSError):
                parent.send(("stop", None))
        proc.join(10)
        if proc.is_alive():
            proc.terminate()
            proc.join(5)


@contextmanager
def fake_server(**spec: Any) -> Iterator[tuple[Pipe, dict[str, Any]]]:
    with fake_servers([spec]) as servers:
        yield servers[0]


def ask(pipe: Pipe, cmd: str, arg: Any = None) -> Any:
    pipe.send((cmd, arg))
    return pipe.recv()


# ----------------------------------------------------------------------------- databases


@contextmanager
def databases(which: str) -> Iterator[Callable[[], Iterator[tuple[str, str]]]]:
    """Yields ``fresh()``: each call a generator of (name, new empty database URL), one for each
    asked-for backend; a throwaway PostgreSQL server is started once, when first needed."""
    tmp = Path(tempfile.mkdtemp(prefix="qfcat-bench-"))
    pg = None

    def fresh() -> Iterator[tuple[str, str]]:
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
        yield fresh
    finally:
        if pg is not None:
            pg.stop()
        for f in tmp.iterdir():
            f.unlink()
        tmp.rmdir()


def catalog_tables() -> set[str]:
    """The tables "rows written" counts (README): entity, history and ``changes``."""
    from catalog.schema import SPECS, changes

    return {t.name for spec in SPECS.values() for t in (spec.table, spec.history)} | {
        changes.name
    }


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


class _Pace:
    """The sync's limiter, watched from inside the child: its rate every 0.1 s and each send.

    ``catalog.sync`` builds the limiter itself; the child swaps in a subclass that remembers the
    instance, so the figures are the limiter's own, not a reconstruction.
    """

    def __init__(self) -> None:
        import threading

        import catalog.sync
        from catalog.api.pacing import RateLimiter

        watch = self
        self.limiter: RateLimiter | None = None
        self.sends: list[tuple[float, bool]] = []
        self.samples: list[tuple[float, float]] = []
        self.cuts: list[dict[str, Any]] = []
        self.t0 = time.monotonic()

        class Watched(RateLimiter):
            def __init__(self, *a: Any, **kw: Any) -> None:
                super().__init__(*a, **kw)
                watch.limiter = self

            def feedback(self, sent_at: float, throttled: bool) -> None:
                watch.sends.append((sent_at - watch.t0, throttled))  # list.append is atomic
                super().feedback(sent_at, throttled)

            def _cut(self, now: float, sent_at: float) -> None:  # called under the lock
                count = self._accepted_before(sent_at - self.window, sent_at)
                before = self._rate
                super()._cut(now, sent_at)
                watch.cuts.append(
                    {
                        "t": round(now - watch.t0, 2),
                        "sent": round(sent_at - watch.t0, 3),
                        "from": round(before, 2),
                        "to": round(self._rate, 2),
                        "accepted_in_window": count,
                        "refused": round(self._refused or 0, 2),
                    }
                )

        catalog.sync.RateLimiter = Watched  # type: ignore[attr-defined]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            if self.limiter is not None:
                self.samples.append((time.monotonic() - self.t0, self.limiter.rate))

    def report(self, target: float | None) -> dict[str, Any]:
        """Settled rate, and how soon and how closely the pace followed ``target`` calls/s."""
        self._stop.set()
        self._thread.join()
        limiter = self.limiter
        if limiter is None:
            return {}
        out: dict[str, Any] = {
            "settled_rate": limiter.settled_rate(),
            "refused_rate": limiter.refused_rate,
            "throttles": limiter.throttles,
            "cuts": limiter.cuts,
            "cut_log": self.cuts,
        }
        if not self.sends:
            return out
        times = sorted(t for t, _ in self.sends)
        per_second = Counter(int(t) for t in times)
        out.update(
            {
                "first_call_s": round(times[0], 2),
                "last_call_s": round(times[-1], 2),
                "calls_per_second": [per_second.get(s, 0) for s in range(int(times[-1]) + 1)],
            }
        )
        if not target:
            return out
        within = [abs(rate - target) <= 0.05 * target for _, rate in self.samples]
        # the first sample from which the pace stayed within 5% of the target to the end
        converged = None
        for (t, _), ok in zip(self.samples, within, strict=True):
            converged = (t if converged is None else converged) if ok else None
        late = [t for t, _ in self.sends if t >= 10.0]
        rates_late = [rate for t, rate in self.samples if t >= 10.0]
        out.update(
            {
                "pace_within_5pct_from_s": None if converged is None else round(converged, 1),
                "pace_after_10s": [round(min(rates_late), 2), round(max(rates_late), 2)]
                if rates_late
                else None,
                "sent_per_s_after_10s": round(len(late) / (late[-1] - 10.0), 2)
                if len(late) > 1 and late[-1] > 10.0
                else None,
                "throttled_after_10s": sum(1 for t, hit in self.sends if hit and t >= 10.0),
            }
        )
        return out


def _sync_child() -> None:
    """Run one sync in this process and print one JSON line: summary, writes per table, peak RSS,
    and what the limiter did.

    The sync's options arrive as JSON on stdin (``_target``: the rate the pace should find).
    """
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from catalog import logs, progress
    from catalog.collector import end_of_process
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
    target = opts.pop("_target", None)
    opts["timeout"] = tuple(opts.get("timeout", (5.0, 30.0)))
    pace = _Pace()
    t0, c0 = time.monotonic(), time.process_time()
    # The command line's observer without a display, as a cron job runs: its logs are told of
    # the run's events (not of each answer: only a display counts those).
    observer = progress.RunObserver(None, logs.RunLog())
    summary = run_sync(SyncOptions(**opts), observer=observer)
    wall, cpu = time.monotonic() - t0, time.process_time() - c0
    paced = pace.report(target)
    # The summary's own figure once the sync reports it; the limiter's until then.
    settled = getattr(summary, "qps_settled", None)
    print(
        json.dumps(
            {
                "status": summary.status,
                "counts": summary.counts,
                "api_calls": summary.api_calls,
                "api_retries": summary.api_retries,
                "errors": summary.errors,
                "wall": wall,
                "cpu": cpu,
                "rows_written": dict(writes),
                "write_statements": dict(statements),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "summary_line": summary.line(),
                "settled_from": "summary" if settled is not None else "limiter",
                **paced,
                **({"settled_rate": settled} if settled is not None else {}),
            }
        ),
        flush=True,
    )
    end_of_process()  # as the command line's entry point does


def _fetch_child() -> None:
    """The fetch-only walk: the sync's pages through the sync's client, answers parsed, nothing
    normalised or written. Prints one JSON line (wall and CPU seconds, calls, items)."""
    from catalog.api.client import ConsoleClient
    from catalog.api.paging import iter_pages

    opts = json.loads(sys.stdin.read())
    items = 0
    t0, c0 = time.monotonic(), time.process_time()
    with ConsoleClient(opts["base_url"], opts["access_key"], opts["secret_key"]) as client:
        for action, key in (("DescribeCustomModelSets", "modelSetId"),
                            ("DescribeModelCompTasks", "id")):
            for page in iter_pages(client, action, {}, item_key=key, max_keys=PAGE_SIZE):
                items += len(page)
                if action == "DescribeCustomModelSets":
                    for model_set in page:
                        for model_id in model_set.get("modelIds") or []:
                            client.call("DescribeModel", {"modelId": model_id})
                            client.call("DescribeModelExportTask", {"modelId": model_id})
        calls = client.calls_made
    wall, cpu = time.monotonic() - t0, time.process_time() - c0
    print(json.dumps({"wall": wall, "cpu": cpu, "api_calls": calls, "items": items}))


def _child(kind: str, opts: dict[str, Any]) -> dict[str, Any]:
    """Run ``bench/run.py _sync|_fetch`` with ``opts`` on stdin; its last stdout line, parsed."""
    t0 = time.monotonic()
    proc = subprocess.run(  # options on stdin: a secret in argv would show in `ps`
        [sys.executable, __file__, kind],
        input=json.dumps(opts),
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    elapsed = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_wall"] = elapsed
    return out


def run_sync_process(
    url: str,
    base_url: str,
    eval_ids: list[str],
    qps: float,
    workers: int,
    batch_size: int,
    commit_interval: float,
    target: float | None = None,
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
        "_target": target,
    }
    return _child("_sync", opts)


# ----------------------------------------------------------------------------- api mode


def minimum_calls(spec: dict[str, Any], eval_count: int, ahead: dict[str, Any]) -> dict[str, int]:
    """The calls a sync cannot do without (README, "What a sync calls"), per call.

    ``ahead``: what the sync's listings will find (``_walk_ahead``): the lifecycle listings'
    sizes, and the detail calls owed for what is new or changed since the last sync (failed
    compression tasks, fine-tuning tasks, or still Running, evaluation tasks, and the reports of
    those ended or ended when last stored).
    """
    def pages(n: int) -> int:
        return max(1, math.ceil(n / PAGE_SIZE))

    versions = spec["model_sets"] * spec["versions_per_set"]
    return {
        "DescribeCustomModelSets": pages(spec["model_sets"]),
        "DescribeModel": versions,
        "DescribeModelExportTask": versions,
        "DescribeModelCompTasks": pages(spec["comp_tasks"]),
        "DescribeModelCompTask": ahead["failed_tasks_due"],
        EVAL_EXPORT_CALL: eval_count,
        "DescribeFineTuningJobs": pages(ahead["jobs"]),
        "DescribeFineTuningTasks": sum(pages(n) for n in ahead["tasks_per_job"]),
        "DescribeFineTuningTask": ahead["ft_tasks_due"],
        "DescribeEvalTasks": sum(pages(n) for n in ahead["eval_tasks_per_type"]),
        "DescribeEvalTask": ahead["eval_tasks_due"],
        "DescribeEvalTaskReport": ahead["reports_due"],
        "DescribeServices": pages(ahead["custom_services"]),
        "DescribeService": ahead["custom_services"],
        "DescribePresetServices": 1,
    }


def one_step(
    name: str,
    db: str,
    url: str,
    pipe: Pipe,
    info: dict[str, Any],
    spec: dict[str, Any],
    args: argparse.Namespace,
    fresh_db: bool,
) -> dict[str, Any]:
    terms = minimum_calls(spec, len(info["eval_ids"]), ask(pipe, "due", fresh_db))
    minimum = sum(terms.values())
    ask(pipe, "reset")
    before = table_counts(url)
    rate = spec["rate_limit"]
    lower = min(r for r in (rate, args.qps) if r) if rate or args.qps else None
    res = run_sync_process(
        url,
        info["url"],
        info["eval_ids"],
        args.qps,
        args.workers,
        args.batch_size,
        args.commit_interval,
        target=lower,
    )
    after = table_counts(url)
    stats = ask(pipe, "stats")
    catalog_writes = {t: n for t, n in res["rows_written"].items() if t not in TEMP_TABLES and n}
    entity_tables = catalog_tables()
    written = sum(n for t, n in catalog_writes.items() if t in entity_tables)
    floor = stats["calls"] / lower if lower else None
    out = {
        "step": name,
        "db": db,
        "limit_shape": spec.get("limit_shape") if rate else None,
        "server_rate": rate or None,
        "qps": args.qps,
        "status": res["status"],
        "api_calls": res["api_calls"],
        "server_calls": stats["calls"],
        "minimum_calls": minimum,
        "minimum_terms": terms,
        "calls_by_action": stats["by_action"],
        # per call, made - minimum where they differ: where a run strays from the formula
        "over_minimum": {
            a: stats["by_action"].get(a, 0) - n
            for a, n in terms.items()
            if stats["by_action"].get(a, 0) != n
        },
        # calls the formula (README) does not name at all
        "outside_formula": {a: n for a, n in stats["by_action"].items() if a not in terms},
        "status_429": stats["status_429"],
        "throttled": stats["throttled"],
        "throttled_share": round(stats["throttled"] / stats["calls"], 4) if stats["calls"] else 0,
        "retries": res["api_retries"],
        "errors": res["errors"],
        "wall_s": round(res["wall"], 2),
        "cpu_s": round(res["cpu"], 2),
        "process_wall_s": round(res["process_wall"], 2),
        "floor_s": round(floor, 2) if floor else None,
        "wall_over_floor": round(res["wall"] / floor, 3) if floor else None,
        "settled_rate": round(res["settled_rate"], 2) if res.get("settled_rate") else None,
        "settled_from": res.get("settled_from"),
        "refused_rate": res.get("refused_rate"),
        "cuts": res.get("cuts"),
        "cut_log": res.get("cut_log"),
        "pace_within_5pct_from_s": res.get("pace_within_5pct_from_s"),
        "pace_after_10s": res.get("pace_after_10s"),
        "sent_per_s_after_10s": res.get("sent_per_s_after_10s"),
        "throttled_after_10s": res.get("throttled_after_10s"),
        "first_call_s": res.get("first_call_s"),
        "last_call_s": res.get("last_call_s"),
        "calls_per_second": res.get("calls_per_second"),
        "rows_written": written,
        # the run's ledger, and on a new database the schema's and the source binding's rows
        "other_rows": {t: n for t, n in catalog_writes.items() if t not in entity_tables},
        "rows_written_per_s": round(written / res["wall"], 1),
        "writes_by_table": catalog_writes,
        "row_count_delta": {
            t: after.get(t, 0) - before.get(t, 0)
            for t in after
            if after.get(t, 0) != before.get(t, 0)
        },
        "peak_rss_mb": round(res["peak_rss_mb"], 1),
        "counts": {k: v for k, v in res["counts"].items() if v},
        "summary_line": res.get("summary_line"),
        "load_before": os.getloadavg()[0],
    }
    if name == "resync-nochange":
        out["zero_writes_ok"] = written == 0 and set(out["row_count_delta"]) <= LEDGER_TABLES
    ratio = f"{out['wall_over_floor']:.3f}x floor {out['floor_s']}s" if floor else "no floor"
    case = f"{out['limit_shape']}@{rate:g}" if rate else "unlimited"
    settled = f"settled {out['settled_rate']}/s" if out["settled_rate"] else "not paced"
    near = out["pace_within_5pct_from_s"]
    print(
        f"  {db:10} {case:12} {name:16} {res['status']:8} calls {res['api_calls']} "
        f"(min {minimum}) 429s {stats['status_429']} | {out['wall_s']}s = {ratio} | {settled}"
        + (f", within 5% from {near}s" if near is not None else "")
        + (f" | over the minimum {out['over_minimum']}" if out["over_minimum"] else "")
        + (f" | outside the formula {out['outside_formula']}" if out["outside_formula"] else "")
        + f" | rows {written} ({out['rows_written_per_s']}/s), other {out['other_rows']}"
        + f" | rss {out['peak_rss_mb']} MB",
        flush=True,
    )
    return out


STEPS = ("full", "resync-nochange", "resync-1pct")


def catalog_spec(args: argparse.Namespace, **overrides: Any) -> dict[str, Any]:
    """The fake's catalog and latency, from the command line unless overridden.

    The lifecycle kinds scale with the model sets (``--lifecycle-share``): as many fine-tuning
    jobs, evaluation tasks and custom services each, so a larger catalog is larger in every kind.
    """
    lifecycle = round(args.model_sets * args.lifecycle_share)
    spec = {
        "seed": args.seed,
        "model_sets": args.model_sets,
        "versions_per_set": args.versions_per_set,
        "comp_tasks": getattr(args, "comp_tasks", 0),
        "eval_exports": args.eval_exports,
        "export_share": args.export_share,
        "fine_tuning_jobs": lifecycle,
        "tasks_per_job": args.tasks_per_job,
        "eval_tasks": lifecycle,
        "services": lifecycle,
        "latency": getattr(args, "latency", 0.0),
    }
    return {**spec, **overrides}


def api_mode(args: argparse.Namespace) -> dict[str, Any]:
    spec = catalog_spec(args)
    results: list[dict[str, Any]] = []
    with fake_server(**spec) as (pipe, info), databases(args.db) as fresh:
        print(f"fake console {info['url']}: {spec}", flush=True)
        for rate in args.rate_limit:
            for shape in args.limit_shape if rate else ["bucket"]:
                case = {**spec, "rate_limit": rate, "limit_shape": shape}
                for db, url in fresh():
                    ask(pipe, "limiter", (shape, rate))  # each case starts on a fresh limiter
                    first = True
                    for name in args.steps:
                        if name == "resync-1pct":
                            changed = ask(pipe, "mutate", args.change_share)
                        step = one_step(name, db, url, pipe, info, case, args, fresh_db=first)
                        if name == "resync-1pct":
                            step["entities_changed"] = changed
                        results.append(step)
                        first = False
    return {
        "mode": "api",
        "spec": spec,
        "rate_limits": args.rate_limit,
        "limit_shapes": args.limit_shape,
        "qps": args.qps,
        "workers": args.workers,
        "batch_size": args.batch_size,
        "results": results,
    }


def rss_mode(args: argparse.Namespace) -> dict[str, Any]:
    results = []
    for tasks in args.sizes:
        spec = catalog_spec(args, comp_tasks=tasks, latency=0.0, rate_limit=0)
        with fake_server(**spec) as (pipe, info), databases(args.db) as fresh:
            for db, url in fresh():
                step = one_step(f"full-{tasks}", db, url, pipe, info, spec, args, fresh_db=True)
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
    from catalog.bulk import answer_hash
    from catalog.fake.catalog import FakeCatalog
    from catalog.kinds import compression_tasks

    catalog = FakeCatalog.generate(
        seed=seed, model_sets=20, versions_per_set=5, comp_tasks=n, eval_exports=0, system_sets=0
    )
    with catalog.lock:
        items = list(catalog.items("compression_task"))
    # Rows as the sync's writer hands them to the store: with the answer's hash (a row without
    # it took the writer's slow per-value path, and the figures were the slow path's).
    return [{**compression_tasks.row(item), "raw_hash": answer_hash(item)} for item in items]


def db_pass(
    url: str, rows: list[dict[str, Any]], batch: int, label: str, commit_interval: float
) -> dict[str, Any]:
    from catalog import db, runs
    from catalog.store import Store
    from catalog.writer import CommitPacer

    engine = db.writer_engine(url)  # the engine the sync writes with
    conn = db.connect(engine)
    try:
        db.ensure_schema(conn, True)
        run_id, run_ts = runs.start_run(conn, {})
        conn.commit()
        store = Store(conn, run_id, run_ts)
        pacer = CommitPacer(conn.commit, commit_interval)  # as the sync's writer commits
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
    from catalog.bulk import answer_hash

    out = []
    for row in rows:
        new = dict(row)
        new["status"] = "stopped" if row.get("status") != "stopped" else "failed"
        new["name"] = f"{row.get('name')}-v2"
        new["raw_hash"] = answer_hash({**row["raw"], "status": new["status"], "name": new["name"]})
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
    with databases(args.db) as fresh:
        for db, url in fresh():
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
                if label == "insert":
                    # A database's next sync finds the tables analysed: without statistics on
                    # the 100,000 rows just inserted, PostgreSQL closed each batch's history
                    # rows by scanning them all (80 s for the all-changed pass, 18 s after).
                    settle(db, url)
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


# ----------------------------------------------------------------------------- reads mode


def _median_ms(read: Callable[[], Any], repeat: int = 3) -> tuple[float, int]:
    """The median wall time of ``read`` in ms, and the rows its answer held."""
    times, rows = [], 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        answer = read()
        times.append((time.perf_counter() - t0) * 1000)
        rows = len(list(answer[1])) if isinstance(answer, tuple) else len(answer)
    return round(sorted(times)[len(times) // 2], 1), rows


def _cli_peak(url: str, argv: list[str]) -> dict[str, Any]:
    """One read command in a process of its own, its output thrown away: wall s and peak RSS."""
    code = (
        "import contextlib, os, sys\n"
        "from catalog.cli import cli\n"
        "with open(os.devnull, 'w') as out, contextlib.redirect_stdout(out):\n"
        "    try:\n"
        "        cli(sys.argv[1:], prog_name='qianfan-catalog')\n"
        "    except SystemExit as done:\n"
        "        assert not done.code, done.code\n"
        # VmHWM, not ru_maxrss: that one keeps the high-water mark of the process this one
        # was forked from (the benchmark, holding every row) across exec.
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
        "print(hwm.split()[1], file=sys.stderr)\n"
    )
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code, "--database-url", url, *argv],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )
    return {
        "command": " ".join(argv),
        "seconds": round(time.perf_counter() - t0, 2),
        "peak_rss_mb": round(int(done.stderr.split()[-1]) / 1024),
    }


def _write_versions(url: str, ids: set[str]) -> None:
    """Model versions for the tasks' ids, so that ``lineage`` finds the version it starts at."""
    from catalog import db, runs
    from catalog.bulk import answer_hash
    from catalog.kinds import model_versions
    from catalog.store import Store

    engine = db.writer_engine(url)
    with engine.connect() as conn:
        run_id, run_ts = runs.start_run(conn, {})
        store = Store(conn, run_id, run_ts)
        objs = [{"modelId": i, "modelName": i, "modelSetId": "am-bench"} for i in sorted(ids)]
        for start in range(0, len(objs), 500):
            store.write_batch("model_version", [
                {**model_versions.row(o), "raw_hash": answer_hash(o)}
                for o in objs[start : start + 500]
            ])
        runs.finish_run(conn, run_id, "success", {}, 0, 0, 0, None)
        conn.commit()
    engine.dispose()


def _reads(week: Any, last: int, task: str, version: str) -> dict[str, Callable[[Any], Any]]:
    """The reads timed, by the name a user knows them by."""
    from catalog import lineage, queries

    return {
        "report latest_changes": lambda c: queries.report(c, "latest_changes"),
        "changes --since (a week)": lambda c: queries.changes_query(c, since=week),
        "changes --run (the last)": lambda c: queries.changes_query(c, run_id=last),
        "history (no --account)": lambda c: queries.history(c, "compression_task", task),
        "lineage": lambda c: lineage.lineage(c, version, None, "default"),
        "lineage --as-of": lambda c: lineage.lineage(
            c, version, dt.datetime.now(dt.UTC), "default"
        ),
    }


def reads_mode(args: argparse.Namespace) -> dict[str, Any]:
    """The read side on a long history: --runs daily runs after the first, each changing
    --change-share of --tasks compression tasks (status and name: a history row and two change
    rows each), written through the store as a sync writes them. Then the views and commands a
    BI tool or a person runs, each timed (median of three), and the exports' peak memory."""
    from sqlalchemy import func, select, text

    from catalog import db as catalog_db
    from catalog import queries
    from catalog.schema import changes, compression_tasks_history, sync_runs

    first = task_rows(args.tasks, args.seed)
    share = max(1, int(len(first) * args.change_share))
    results = []
    with databases(args.db) as fresh:
        for db, url in fresh():
            rows, rng = list(first), random.Random(args.seed)  # the same history on each
            t0 = time.perf_counter()
            db_pass(url, rows, args.batch_size, "insert", 0)
            _write_versions(url, {row["source_model_id"] for row in rows} | {
                row["model_id"] for row in rows if row["model_id"]})
            for _ in range(args.runs):
                picked = rng.sample(range(len(rows)), share)
                for i, row in zip(picked, changed_rows([rows[i] for i in picked]), strict=True):
                    rows[i] = row
                db_pass(url, [rows[i] for i in sorted(picked)], args.batch_size, "changes", 0)
            settle(db, url)
            engine = catalog_db.create_engine_for(url)
            with engine.connect() as conn:
                counts = {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                          for t in (changes, compression_tasks_history, sync_runs)}
                last = conn.execute(text("SELECT max(run_id) FROM sync_runs")).scalar_one()
                week = conn.execute(
                    text("SELECT started_at FROM sync_runs WHERE run_id = :r"),
                    {"r": max(1, last - 6)},
                ).scalar_one()
            engine.dispose()
            print(f"  {db:10} history built in {time.perf_counter() - t0:.0f}s: {counts}",
                  flush=True)
            if isinstance(week, str):
                week = queries.parse_timestamp(week)
            reads = _reads(week, last, rows[0]["task_id"], rows[0]["source_model_id"])
            engine = catalog_db.create_engine_for(url)
            with engine.connect() as conn:
                for name, read in reads.items():
                    ms, n = _median_ms(lambda read=read: read(conn))
                    print(f"  {db:10} {name:28} {ms:9.1f} ms  {n} rows", flush=True)
                    results.append({"db": db, "read": name, "ms": ms, "rows": n})
                    conn.rollback()
            engine.dispose()
            now = dt.datetime.now(dt.UTC).isoformat()
            for argv in (["runs", "--limit", "1", "--format", "csv"],
                         ["changes", "--run", str(last), "--format", "csv"],
                         ["changes", "--format", "csv"], ["changes", "--format", "json"],
                         ["changes", "--format", "table"], ["as-of", now, "compression_task"]):
                r = _cli_peak(url, argv)
                print(f"  {db:10} {r['command']:28} {r['seconds']:7.2f} s  "
                      f"peak {r['peak_rss_mb']} MB", flush=True)
                results.append({"db": db, **r})
    return {"mode": "reads", "tasks": args.tasks, "runs": args.runs,
            "change_share": args.change_share, "results": results}


# ----------------------------------------------------------------------------- noop mode


def settle(db: str, url: str) -> None:
    """After the set-up sync: on PostgreSQL, the vacuum and analyze its 300,000 new rows call
    for, done now rather than by autovacuum somewhere in the pairs.

    Until autovacuum's first pass over the set-up's tables (it looks at each database once a
    minute), the no-op re-sync ran slower on the server's side: 1.25-1.28x against 1.20-1.26x
    after it, with the sync's own CPU unchanged (README, the no-op pair). A cron job's next
    re-sync comes after that pass; this is that state. SQLite has no such pass.
    """
    if db != "postgresql":
        return
    from catalog import db as catalog_db

    engine = catalog_db.create_engine_for(url)
    try:
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")  # VACUUM refuses a transaction
            conn.exec_driver_sql("VACUUM (ANALYZE)")
    finally:
        engine.dispose()
    print(f"  {db:10} set-up's tables vacuumed and analysed (as autovacuum would)", flush=True)


def noop_mode(args: argparse.Namespace) -> dict[str, Any]:
    """The no-op re-sync next to a fetch-only walk of the same pages, on each database."""
    spec = catalog_spec(args, eval_exports=0, latency=0.0, rate_limit=0)
    results: list[dict[str, Any]] = []
    with fake_server(**spec) as (pipe, info), databases(args.db) as fresh:
        print(f"fake console {info['url']}: {spec}", flush=True)
        creds = {"base_url": info["url"], "access_key": AK, "secret_key": SK}

        def fetch_only() -> tuple[dict[str, Any], int]:
            ask(pipe, "reset")
            out = _child("_fetch", creds)
            return out, ask(pipe, "stats")["calls"]

        for db, url in fresh():
            setup = one_step("full", db, url, pipe, info, spec, args, fresh_db=True)
            results.append(setup)
            settle(db, url)
            for _ in range(args.repeat):
                # The fetch-only walk runs just before and just after the re-sync, and the ratio
                # is against their mean: this machine's speed drifts by a third within minutes,
                # and a single fetch-only run on either side moved the ratio with it.
                stolen_at = _stolen()
                before, _calls = fetch_only()
                noop = one_step("resync-nochange", db, url, pipe, info, spec, args, fresh_db=False)
                after, fetch_calls = fetch_only()
                stolen = [b - a for a, b in zip(stolen_at, _stolen(), strict=True)]
                fetch = {k: (before[k] + after[k]) / 2 for k in ("wall", "cpu")}
                fetch["items"] = after["items"]
                pair = {
                    "step": "noop-vs-fetch",
                    "db": db,
                    "noop_wall_s": noop["wall_s"],
                    "noop_cpu_s": noop["cpu_s"],
                    "noop_calls": noop["server_calls"],
                    "noop_zero_writes_ok": noop["zero_writes_ok"],
                    "fetch_wall_s": round(fetch["wall"], 2),
                    "fetch_walls_s": [round(before["wall"], 2), round(after["wall"], 2)],
                    "fetch_cpu_s": round(fetch["cpu"], 2),
                    "fetch_calls": fetch_calls,
                    "fetch_items": fetch["items"],
                    "wall_ratio": round(noop["wall_s"] / fetch["wall"], 3),
                    "cpu_ratio": round(noop["cpu_s"] / fetch["cpu"], 3),
                    "load_before": noop["load_before"],
                    # A pair on a virtual machine whose host took a share of its cores
                    # measures the host as much as the sync: 0.0 on a machine of its own.
                    "steal_share": round(stolen[0] / stolen[1], 3) if stolen[1] else 0.0,
                }
                print(
                    f"  {db:10} no-op re-sync {noop['wall_s']}s (cpu {noop['cpu_s']}s, "
                    f"{noop['server_calls']} calls) vs fetch-only {pair['fetch_wall_s']}s "
                    f"(mean of {pair['fetch_walls_s']}) "
                    f"(cpu {pair['fetch_cpu_s']}s, {fetch_calls} calls): "
                    f"{pair['wall_ratio']}x wall, {pair['cpu_ratio']}x cpu; "
                    f"{pair['steal_share']:.0%} of the machine's CPU time stolen by its host",
                    flush=True,
                )
                results += [noop, pair]
            ratios = [r["wall_ratio"] for r in results if r.get("db") == db and "wall_ratio" in r]
            if len(ratios) > 1:
                print(f"  {db:10} median {statistics.median(ratios)}x wall over {len(ratios)} "
                      f"pairs ({min(ratios)}-{max(ratios)}x)", flush=True)
    return {"mode": "noop", "spec": spec, "results": results}


# ----------------------------------------------------------------------------- accounts mode


def _start_child(kind: str, opts: dict[str, Any]) -> subprocess.Popen[str]:
    """``bench/run.py _sync|_fetch`` started with ``opts`` on stdin (not in argv: `ps`)."""
    proc = subprocess.Popen(
        [sys.executable, __file__, kind],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(opts))
    proc.stdin.close()
    proc.stdin = None  # written and closed: communicate() only reads
    return proc


def _machine_cpu() -> list[float]:
    """The whole machine's CPU seconds so far by state (user, nice, system, idle, iowait, irq,
    softirq, steal, ...), all cores, from /proc/stat's first line."""
    ticks = os.sysconf("SC_CLK_TCK")
    return [float(x) / ticks for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]


def _cpu_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far (all cores)."""
    fields = _machine_cpu()
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _stolen() -> tuple[float, float]:
    """(steal, total) CPU seconds of the whole machine so far: on a virtual machine, the time
    its host ran something else while a core of this one wanted to run."""
    fields = _machine_cpu()
    return (fields[7] if len(fields) > 7 else 0.0), sum(fields)


def _process_cpu(pid: int, children: bool = False) -> float:
    """CPU seconds of process ``pid`` so far (with ``children``: those of its reaped children
    too, which for PostgreSQL's postmaster are the ended sessions' backends)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = [int(f) for f in fields[11:15]]  # utime, stime, cutime, cstime
    return sum(ticks if children else ticks[:2]) / os.sysconf("SC_CLK_TCK")


def _postmaster_pid(url: str) -> int | None:
    """The PostgreSQL server's pid, when it runs on this machine (its data directory is here)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            data = conn.execute(text("SHOW data_directory")).scalar_one()
    finally:
        engine.dispose()
    pidfile = Path(data) / "postmaster.pid"
    try:
        return int(pidfile.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None


def accounts_mode(args: argparse.Namespace) -> dict[str, Any]:
    """N accounts, each its own fake console (own catalog, own rate limit, own process) and its
    own sync process, all started together into one database: total wall time against one
    account's, and calls per second in total."""
    results: list[dict[str, Any]] = []
    spec = catalog_spec(args)
    one: dict[str, float] = {}
    with databases(args.db) as fresh:
        for n in args.accounts:
            specs = [{**spec, "seed": spec["seed"] + i} for i in range(n)]
            with fake_servers(specs) as servers:
                fake_pids = {info["pid"] for _pipe, info in servers}
                for db, url in fresh():
                    for pipe, _info in servers:
                        ask(pipe, "limiter", ("bucket", args.rate_limit))
                        ask(pipe, "reset")
                    pg_pid = _postmaster_pid(url) if db == "postgresql" else None
                    fakes0 = sum(_process_cpu(pid) for pid in fake_pids)
                    pg0 = _process_cpu(pg_pid, children=True) if pg_pid else 0.0
                    syncs0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                    t0 = time.monotonic()
                    busy0, total0 = _cpu_busy()
                    procs = [
                        _start_child(
                            "_sync",
                            {
                                "database_url": url,
                                "account": f"account-{i}",
                                "access_key": AK,
                                "secret_key": SK,
                                "base_url": info["url"],
                                "eval_export_ids": info["eval_ids"],
                                "qps": args.rate_limit,
                                "workers": args.workers,
                                "batch_size": args.batch_size,
                                "commit_interval": args.commit_interval,
                                "page_size": PAGE_SIZE,
                                "include_system": False,
                                "lock_timeout": 60.0,
                            },
                        )
                        for i, (_pipe, info) in enumerate(servers)
                    ]
                    outs = []
                    for proc in procs:
                        stdout, stderr = proc.communicate()
                        if proc.returncode != 0:
                            raise RuntimeError(
                                f"sync failed ({proc.returncode}):\n{stderr[-3000:]}"
                            )
                        outs.append(json.loads(stdout.strip().splitlines()[-1]))
                    wall = time.monotonic() - t0
                    busy1, total1 = _cpu_busy()
                    syncs1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                    fakes_cpu = sum(_process_cpu(pid) for pid in fake_pids) - fakes0
                    pg_cpu = (_process_cpu(pg_pid, children=True) - pg0) if pg_pid else None
                    # Whole processes, start-up (imports, schema) included: the sync children
                    # are reaped by now; the fake consoles live on, so theirs is a difference.
                    syncs_cpu = (syncs1.ru_utime + syncs1.ru_stime) - (
                        syncs0.ru_utime + syncs0.ru_stime
                    )
                    stats = [ask(pipe, "stats") for pipe, _info in servers]
                    calls = sum(st["calls"] for st in stats)
                    throttled = sum(st["throttled"] for st in stats)
                    if n == 1:
                        one[db] = wall
                    row = {
                        "db": db,
                        "accounts": n,
                        "statuses": sorted({o["status"] for o in outs}),
                        "wall_s": round(wall, 2),
                        "slowest_sync_s": round(max(o["wall"] for o in outs), 2),
                        "calls": calls,
                        "calls_per_s": round(calls / wall, 1),
                        "per_account_floor_s": round(
                            max(o["api_calls"] for o in outs) / args.rate_limit, 2
                        ),
                        "throttled": throttled,
                        "wall_over_one": round(wall / one[db], 3) if db in one else None,
                        "peak_rss_mb": round(max(o["peak_rss_mb"] for o in outs), 1),
                        # The machine's cores busy during the run (fake servers, syncs and the
                        # database together), and the syncs' own share: near 100% busy, the
                        # bound is this machine's CPU, not the accounts' limits.
                        "machine_busy": round((busy1 - busy0) / (total1 - total0), 3),
                        "sync_cpu_s": round(sum(o["cpu"] for o in outs), 1),
                        "cpu_ms_per_call": round(1000 * (busy1 - busy0) / calls, 2),
                        # Where the machine's CPU went, in ms per call: the sync processes whole
                        # (start-up included), the fake consoles, the database server.
                        "ms_per_call": {
                            "syncs": round(1000 * syncs_cpu / calls, 2),
                            "fakes": round(1000 * fakes_cpu / calls, 2),
                            "database": round(1000 * pg_cpu / calls, 2)
                            if pg_cpu is not None
                            else None,
                        },
                    }
                    results.append(row)
                    print(
                        f"  {db:10} {n} account(s): {row['wall_s']}s wall "
                        f"({row['wall_over_one']}x one account), {calls} calls, "
                        f"{row['calls_per_s']} calls/s in total, {throttled} throttled, "
                        f"statuses {row['statuses']}; machine {row['machine_busy']:.0%} busy, "
                        f"{row['cpu_ms_per_call']} ms CPU per call: syncs "
                        f"{row['ms_per_call']['syncs']}, fake consoles "
                        f"{row['ms_per_call']['fakes']}, database {row['ms_per_call']['database']}",
                        flush=True,
                    )
    return {"mode": "accounts", "spec": spec, "rate_limit": args.rate_limit, "results": results}


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_sync"]:
        _sync_child()
        return
    if argv[:1] == ["_fetch"]:
        _fetch_child()
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
        sp.add_argument(
            "--lifecycle-share",
            type=float,
            default=0.2,
            help="fine-tuning jobs, evaluation tasks and custom services: each this share of "
            "the model sets (default 0.2); the fake's 2 preset services whatever the size",
        )
        sp.add_argument("--tasks-per-job", type=int, default=2, help="fine-tuning tasks per job")
        sp.add_argument("--workers", type=int, default=8, help="the sync's --workers")

    def floats(text: str) -> list[float]:
        return [float(x) for x in text.split(",")]

    def names(choices: tuple[str, ...]) -> Callable[[str], list[str]]:
        def parse(text: str) -> list[str]:
            found = text.split(",")
            wrong = set(found) - set(choices)
            if wrong:
                raise argparse.ArgumentTypeError(f"{sorted(wrong)}: choose from {choices}")
            return found

        return parse

    a = sub.add_parser("api", help="full sync, no-change re-sync, 1%% re-sync against the fake")
    common(a)
    catalog_args(a)
    a.add_argument("--comp-tasks", type=int, default=20000)
    a.add_argument("--latency", type=float, default=0.030, help="seconds per call, server side")
    a.add_argument(
        "--rate-limit", type=floats, default=[50.0], help="server calls/s, comma list (0: none)"
    )
    a.add_argument(
        "--limit-shape",
        type=names(("bucket", "fixed", "fixed-bare", "sliding")),
        default=["bucket"],
        help="the server's limiter, comma list: bucket (one-second burst), fixed or sliding "
        "one-second windows, fixed-bare (fixed windows refusing with no Retry-After)",
    )
    a.add_argument(
        "--qps", type=float, default=None, help="the sync's --qps (default: the first rate limit)"
    )
    a.add_argument("--steps", type=names(STEPS), default=list(STEPS), help="comma list")
    a.add_argument("--change-share", type=float, default=0.01)

    n = sub.add_parser("noop", help="no-op re-sync next to a fetch-only walk of the same pages")
    common(n)
    catalog_args(n)
    n.set_defaults(model_sets=1, versions_per_set=1, db="sqlite")
    # --tasks as the README writes it: without the alias argparse took it for an abbreviation
    # of --tasks-per-job, and the figure was right only because 100,000 is the default.
    n.add_argument("--comp-tasks", "--tasks", dest="comp_tasks", type=int, default=100_000)
    n.add_argument("--repeat", type=int, default=1, help="pairs measured per database")

    r = sub.add_parser("rss", help="peak RSS of a full sync at several compression-task counts")
    common(r)
    catalog_args(r)
    r.set_defaults(model_sets=20, versions_per_set=5)
    r.add_argument(
        "--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[10_000, 100_000]
    )

    m = sub.add_parser(
        "accounts", help="N accounts' syncs side by side into one database, each at its limit"
    )
    common(m)
    catalog_args(m)
    m.set_defaults(model_sets=100, versions_per_set=5, db="postgresql", eval_exports=3)
    m.add_argument("--comp-tasks", type=int, default=2000)
    m.add_argument("--latency", type=float, default=0.030, help="seconds per call, server side")
    m.add_argument("--rate-limit", type=float, default=50.0,
                   help="each account's server calls/s, and its sync's --qps")
    m.add_argument(
        "--accounts", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4, 8]
    )

    d = sub.add_parser("db", help="database only: Store.write_batch rows/s with history")
    common(d)
    d.add_argument("--tasks", type=int, default=100_000)
    d.add_argument("--profile", action="store_true", help="cProfile the passes")

    e = sub.add_parser("reads", help="views and read commands on a long history; export memory")
    common(e)
    e.add_argument("--tasks", type=int, default=100_000)
    e.add_argument("--runs", type=int, default=100, help="daily runs after the first")
    e.add_argument("--change-share", type=float, default=0.01, help="tasks changed per run")

    args = p.parse_args(argv)
    if args.mode == "api" and args.qps is None:
        args.qps = args.rate_limit[0]
    if args.mode in ("rss", "noop"):
        args.qps = 0
    started = time.strftime("%Y%m%d-%H%M%S")
    compile_package()
    print(f"machine: {machine()}; load {os.getloadavg()}", flush=True)
    modes = {"api": api_mode, "rss": rss_mode, "db": db_mode, "noop": noop_mode,
             "accounts": accounts_mode, "reads": reads_mode}
    result = modes[args.mode](args)
    result["machine"] = machine()
    result["command"] = " ".join(["python3", "bench/run.py", *argv])
    out = Path(args.out) if args.out else RESULTS / f"{args.mode}-{started}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
