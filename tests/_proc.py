"""Support for the resilience tests: real ``sync`` subprocesses, table dumps, consistency checks.

The crash, concurrency, bad-input and secret tests run the product the way cron does (a separate
``python -m catalog`` process), because signal handling, exit codes, stderr and lock release by a
dying process cannot be tested in-process.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, inspect, select, text

from catalog import db
from catalog.fake.catalog import FakeCatalog
from catalog.fake.server import FakeServer
from catalog.schema import SPECS, changes, sync_runs
from tests.helpers import AK, SK

ROOT = Path(__file__).resolve().parent.parent


def cli_env(access_key: str | None = AK, secret_key: str | None = SK) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QIANFAN_", "CATALOG_"))}
    env["PYTHONPATH"] = str(ROOT)
    if access_key is not None:
        env["QIANFAN_ACCESS_KEY"] = access_key
    if secret_key is not None:
        env["QIANFAN_SECRET_KEY"] = secret_key
    return env


def sync_argv(db_url: str, server: FakeServer | str, *extra: str, debug: bool = False) -> list[str]:
    """``python -m catalog sync`` against ``server``, with fast, test-friendly defaults."""
    base_url = server if isinstance(server, str) else server.url
    argv = [sys.executable, "-m", "catalog", "--database-url", db_url]
    if debug:
        argv.append("--debug")
    argv += ["sync", "--base-url", base_url, "--qps", "0", "--workers", "4",
             "--max-attempts", "2", "--timeout", "5", "--include-system"]
    if not isinstance(server, str):
        for key in server.catalog.keys("eval_result_export"):
            argv += ["--eval-export-id", str(key)]
    return [*argv, *extra]


def change_all(catalog: FakeCatalog, rng: random.Random) -> dict[str, set[str]]:
    """Change every entity the fake holds; returns the changed keys per kind.

    With every entity changed, every record a run writes shows in the database (an unchanged
    one only refreshes its bookkeeping), so a test can tell exactly what a killed or interrupted
    run committed.
    """
    changed: dict[str, set[str]] = {}
    for kind in catalog.KINDS:
        changed[kind] = set()
        for key in catalog.keys(kind):
            catalog.change(kind, key, rng)
            changed[kind].add(str(key))
    return changed


def run_cli(argv: Sequence[str], env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), env=env or cli_env(), capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, check=False)


def popen_cli(argv: Sequence[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(list(argv), env=env or cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)


def dump_db(db_url: str, account: str | None = None) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (sorted), to show that a command changed nothing; with
    ``account``, that account's rows of the tables that have an account."""
    engine = db.create_engine_for(db_url)
    out: dict[str, list[tuple[Any, ...]]] = {}
    try:
        with engine.connect() as conn:
            for name in sorted(inspect(conn).get_table_names()):
                sql = f'SELECT * FROM "{name}"'  # noqa: S608 - own names
                if account is not None:
                    if "account" not in {c["name"] for c in inspect(conn).get_columns(name)}:
                        continue
                    sql += " WHERE account = :account"
                rows = conn.execute(text(sql), {"account": account}).all()
                out[name] = sorted((tuple(r) for r in rows), key=repr)
    finally:
        engine.dispose()
    return out


def run_statuses(db_url: str) -> list[tuple[int, str]]:
    engine = db.create_engine_for(db_url)
    try:
        with engine.connect() as conn:
            stmt = select(sync_runs.c.run_id, sync_runs.c.status).order_by(sync_runs.c.run_id)
            return [(int(r[0]), str(r[1])) for r in conn.execute(stmt)]
    finally:
        engine.dispose()


def consistency_problems(db_url: str) -> list[str]:
    """Where current state and history disagree; empty when the database is consistent.

    Per entity: alive -> exactly one open history version, equal to the current row; deleted ->
    none open. Per key, versions do not overlap, and a gap between two versions is exactly a
    deletion (a ``delete`` change at the end of the first, an ``insert``/``restore`` at the start
    of the next). A deletion is whole or absent: ``deleted_at`` comes with ``deleted_run_id``, a
    last history version closed at that moment by that run and a ``delete`` change of that run;
    and every ``delete`` change ends a version that a deletion (or a gap) follows. A kill between
    the parts of a delete would leave one without the others.
    """
    engine = db.create_engine_for(db_url)
    try:
        with engine.connect() as conn:
            return connection_problems(conn)
    finally:
        engine.dispose()


def connection_problems(conn: Connection) -> list[str]:
    """:func:`consistency_problems` on an open connection (sees its uncommitted writes)."""
    problems: list[str] = []
    if conn.dialect.name == "sqlite":  # the writer does not check them row by row
        for row in conn.exec_driver_sql("PRAGMA foreign_key_check"):
            problems.append(f"foreign key violation: {tuple(row)}")
    problems += _cross_account(conn)
    accounts = set(conn.execute(select(sync_runs.c.account).distinct()).scalars())
    for spec in SPECS.values():
        accounts |= set(conn.execute(select(spec.table.c.account).distinct()).scalars())
    for account in sorted(accounts):
        problems += [
            problem if account == "default" else f"account {account}: {problem}"
            for problem in _account_problems(conn, account)
        ]
    return problems


def _cross_account(conn: Connection) -> list[str]:
    """Rows that name a run of another account: a run of one account wrote into another's."""
    problems: list[str] = []
    runs = {r[0]: r[1] for r in conn.execute(select(sync_runs.c.run_id, sync_runs.c.account))}
    for spec in SPECS.values():
        t, h = spec.table, spec.history
        pairs = [
            (t.name, col, conn.execute(select(t.c.account, t.c[col]).distinct()))
            for col in ("first_seen_run_id", "last_seen_run_id", "deleted_run_id")
        ] + [
            (h.name, col, conn.execute(select(h.c.account, h.c[col]).distinct()))
            for col in ("valid_from_run_id", "valid_to_run_id")
        ]
        for table, col, rows in pairs:
            for account, run_id in rows:
                if run_id is not None and runs.get(run_id) != account:
                    problems.append(f"{table}.{col}: account {account} row names run {run_id} "
                                    f"of account {runs.get(run_id)}")
    for account, run_id in conn.execute(select(changes.c.account, changes.c.run_id).distinct()):
        if runs.get(run_id) != account:
            problems.append(f"changes: account {account} row of run {run_id} "
                            f"of account {runs.get(run_id)}")
    return problems


def _account_problems(conn: Connection, account: str) -> list[str]:
    problems: list[str] = []
    for kind, spec in SPECS.items():
        t, h = spec.table, spec.history
        current = {
            r[spec.key]: r for r in conn.execute(select(t).where(t.c.account == account)).mappings()
        }
        versions: dict[Any, list[Any]] = {}
        ordered = (
            select(h).where(h.c.account == account).order_by(h.c.valid_from, h.c.history_id)
        )
        for r in conn.execute(ordered).mappings():
            versions.setdefault(r[spec.key], []).append(r)
        ops = {
            (r.entity_id, r.run_id, r.operation)
            for r in conn.execute(
                select(changes.c.entity_id, changes.c.run_id, changes.c.operation)
                .where(changes.c.kind == kind, changes.c.account == account)
            )
        }
        for key in set(versions) - set(current):
            problems.append(f"{kind} {key}: history without a current row")
        problems += _half_deletes(kind, current, versions, ops)
        for key, row in current.items():
            hist = versions.get(key, [])
            open_ = [v for v in hist if v["valid_to"] is None]
            if row["deleted_at"] is None:
                if len(open_) != 1:
                    problems.append(f"{kind} {key}: alive with {len(open_)} open versions")
                else:
                    diff = [c for c in spec.tracked if open_[0][c] != row[c]]
                    if diff:
                        problems.append(f"{kind} {key}: open version differs in {diff}")
            elif open_:
                problems.append(f"{kind} {key}: deleted but {len(open_)} open versions")
            for a, b in zip(hist, hist[1:], strict=False):
                if a["valid_to"] is None or a["valid_to"] > b["valid_from"]:
                    problems.append(f"{kind} {key}: versions overlap")
                elif a["valid_to"] < b["valid_from"]:
                    gap_ok = (str(key), a["valid_to_run_id"], "delete") in ops and (
                        (str(key), b["valid_from_run_id"], "restore") in ops
                        or (str(key), b["valid_from_run_id"], "insert") in ops
                    )
                    if not gap_ok:
                        problems.append(f"{kind} {key}: gap in history not a deletion")
            for v in hist:
                if v["valid_to"] is not None and v["valid_to"] <= v["valid_from"]:
                    problems.append(f"{kind} {key}: empty or negative validity")
    return problems


def _half_deletes(
    kind: str,
    current: dict[Any, Any],
    versions: dict[Any, list[Any]],
    ops: set[tuple[str, int, str]],
) -> list[str]:
    """Deletions missing a part: the mark, the closed history version, the ``delete`` change."""
    problems: list[str] = []
    for key, row in current.items():
        hist = versions.get(key, [])
        deleted_at, deleted_run = row["deleted_at"], row["deleted_run_id"]
        if (deleted_at is None) != (deleted_run is None):
            problems.append(f"{kind} {key}: deleted_at and deleted_run_id disagree")
            continue
        if deleted_at is None:
            continue
        last = hist[-1] if hist else None
        if last is None or last["valid_to"] != deleted_at or last["valid_to_run_id"] != deleted_run:
            problems.append(f"{kind} {key}: deleted_at without its closed history version")
        if (str(key), deleted_run, "delete") not in ops:
            problems.append(f"{kind} {key}: deleted_at without its delete change")
    as_text = {str(k): k for k in current}  # changes.entity_id is text; eval keys are ints
    for entity, run_id, operation in ops:
        if operation != "delete":
            continue
        key = as_text.get(entity)
        hist = versions.get(key, []) if key is not None else []
        ends = [i for i, v in enumerate(hist) if v["valid_to_run_id"] == run_id]
        whole = any(
            hist[i + 1]["valid_from"] > hist[i]["valid_to"]  # a gap: deleted, later back
            if i + 1 < len(hist)
            else current[key]["deleted_run_id"] == run_id  # the last version: deleted now
            for i in ends
        )
        if not whole:
            problems.append(f"{kind} {entity}: delete change of run {run_id} without a deletion")
    return problems


def assert_consistent(db_url: str) -> None:
    problems = consistency_problems(db_url)
    assert not problems, "\n".join(problems[:20])
