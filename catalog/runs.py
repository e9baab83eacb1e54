"""The run rows (``sync_runs``, ``sync_errors``, ``api_drift``) and the repair of dead runs.

A run's row is written first and committed, so a run killed at any point leaves a ``running`` row
behind; the account's next run, holding the account's lock (:mod:`catalog.locks`), knows no other
writer of that account exists and marks it ``aborted``. Runs of other accounts may be running
meanwhile: their rows are not touched.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, case, func, select, update

from catalog import redact
from catalog.documented import DriftLog
from catalog.kinds import KINDS
from catalog.locks import lock_held
from catalog.schema import (
    DEFAULT_ACCOUNT,
    RUN_COUNTS,
    SPECS,
    api_drift,
    changes,
    sync_errors,
    sync_runs,
)

FINAL_STATUSES = ("success", "partial", "failed", "aborted", "interrupted")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def repair_aborted(conn: Connection, account: str = DEFAULT_ACCOUNT) -> int:
    """Mark the account's runs left ``running`` by a dead process as ``aborted``; call only under
    the account's lock (another account's ``running`` row may be a live run).

    The dead run's batches that were committed stay (history, changes); its row is given the
    counts of what they hold, so that a report of "what each run did" adds up. Its end is not
    known: ``finished_at`` stays NULL (the time of this repair would read as hours of run under
    an hourly cron). Its API calls were never written and stay 0.
    """
    dead = list(conn.execute(
        select(sync_runs.c.run_id)
        .where(sync_runs.c.account == account, sync_runs.c.status == "running")
    ).scalars())
    for run_id in dead:
        conn.execute(
            update(sync_runs)
            .where(sync_runs.c.run_id == run_id)
            .values(
                status="aborted",
                finished_at=None,
                error=(
                    "the run ended before its end was recorded: its process was killed or "
                    "crashed, or the database failed under it (a full disk, a restarted "
                    "server: that sync's own error line says which)"
                ),
                **committed_counts(conn, run_id, account),
            )
        )
    return len(dead)


def committed_counts(conn: Connection, run_id: int, account: str) -> dict[str, int]:
    """``sync_runs``' counts of what a run that did not finish committed: its change rows, the
    entities it wrote (``last_seen_run_id``; the unchanged ones it saw are in its own temporary
    table), its entity errors. Asked before any later run of the account marks anything."""
    c = changes.c
    counts = {f"{kind}_{what}": 0 for kind in KINDS for what in RUN_COUNTS}
    operation = case(
        (c.operation.in_(("insert", "restore")), "inserted"),
        (c.operation == "delete", "deleted"),
        else_="updated",
    )
    stmt = (
        select(c.kind, operation, func.count(c.entity_id.distinct()))
        .where(c.run_id == run_id)
        .group_by(c.kind, operation)
    )
    for kind, what, n in conn.execute(stmt):
        if f"{kind}_{what}" in counts:
            counts[f"{kind}_{what}"] = int(n)
    for kind, spec in SPECS.items():
        t = spec.table
        counts[f"{kind}_seen"] = int(conn.execute(
            select(func.count()).where(t.c.account == account, t.c.last_seen_run_id == run_id)
        ).scalar_one())
    counts["errors"] = int(conn.execute(
        select(func.count()).where(sync_errors.c.run_id == run_id, sync_errors.c.kind.is_not(None))
    ).scalar_one())
    return counts


def start_run(
    conn: Connection, scope: Mapping[str, Any], account: str = DEFAULT_ACCOUNT
) -> tuple[int, dt.datetime]:
    """Insert the run's row; its timestamp is strictly later than every earlier run's of the
    account.

    History validity uses run timestamps as boundaries, so two runs of an account must never
    share one, even when the clock steps back or two runs start within a microsecond.
    """
    now = utcnow()
    last = conn.execute(
        select(func.max(sync_runs.c.started_at)).where(sync_runs.c.account == account)
    ).scalar_one_or_none()
    if last is not None and now <= last:
        now = last + dt.timedelta(microseconds=1)
    run_id = conn.execute(
        sync_runs.insert()
        .values(
            account=account,
            started_at=now,
            status="running",
            scope=dict(scope),
            pid=os.getpid(),
            hostname=socket.gethostname()[:255],
            api_calls=0,
            api_retries=0,
            errors=0,
            **{f"{k}_{w}": 0 for k in KINDS for w in RUN_COUNTS},
        )
        .returning(sync_runs.c.run_id)
    ).scalar_one()
    return int(run_id), now


def finish_run(
    conn: Connection,
    run_id: int,
    status: str,
    counts: Mapping[str, int],
    api_calls: int,
    api_retries: int,
    errors: int,
    error: str | None,
    qps_settled: float | None = None,
) -> None:
    assert status in FINAL_STATUSES
    conn.execute(
        update(sync_runs)
        .where(sync_runs.c.run_id == run_id)
        .values(
            status=status,
            finished_at=utcnow(),
            api_calls=api_calls,
            api_retries=api_retries,
            errors=errors,
            error=redact.scrub(error)[:2000] if error else None,  # what it quotes may hold one
            qps_settled=qps_settled,
            **dict(counts),
        )
    )


def record_error(
    conn: Connection,
    run_id: int,
    call: str,
    message: str,
    kind: str | None = None,
    entity_id: str | None = None,
    code: str | None = None,
    account: str = DEFAULT_ACCOUNT,
) -> None:
    conn.execute(
        sync_errors.insert().values(
            run_id=run_id,
            account=account,
            call=call[:128],
            message=redact.scrub(message)[:4000],
            kind=kind,
            entity_id=entity_id,
            code=(code or None) and code[:64],
            occurred_at=utcnow(),
        )
    )


def record_drift(conn: Connection, run_id: int, drift: DriftLog) -> list[tuple[str, str, str, str]]:
    """Store this run's drift; returns the (kind, call, field, drift) no earlier run recorded."""
    if not drift.found:
        return []
    earlier = {
        tuple(row)
        for row in conn.execute(
            select(api_drift.c.kind, api_drift.c.call, api_drift.c.field, api_drift.c.drift)
            .where(api_drift.c.run_id != run_id)
            .distinct()
        )
    }
    conn.execute(
        api_drift.insert(),
        [
            {
                "run_id": run_id,
                "kind": kind,
                "call": call,
                "field": name[:255],
                "drift": what,
                "example_id": seen.example_id,
                "count": seen.count,
            }
            for (kind, call, name, what), seen in sorted(drift.found.items())
        ],
    )
    return [key for key in sorted(drift.found) if key not in earlier]


def dead_runs(conn: Connection, account: str | None = None) -> list[tuple[int, str]]:
    """``(run_id, account)`` of the runs marked ``running`` (of one account, or all) whose
    account's writer lock nobody holds: their process ended without finishing (killed, the
    machine restarted). The account's next sync marks them ``aborted``; until then they read
    as running."""
    r = sync_runs.c
    stmt = select(r.run_id, r.account).where(r.status == "running").order_by(r.run_id)
    if account is not None:
        stmt = stmt.where(r.account == account)
    running = [(int(run_id), str(whose)) for run_id, whose in conn.execute(stmt)]
    free = {whose for whose in {w for _, w in running} if lock_held(conn, whose) is False}
    dead = [(run_id, whose) for run_id, whose in running if whose in free]
    if not dead:
        return []
    # A run that finished (and let its lock go) between the two looks is not dead: asked again.
    conn.rollback()  # a fresh snapshot (PostgreSQL, SQLite's WAL readers)
    still = set(
        conn.execute(
            select(r.run_id).where(r.status == "running", r.run_id.in_([d for d, _ in dead]))
        ).scalars()
    )
    return [(run_id, whose) for run_id, whose in dead if run_id in still]


def dead_run_notes(conn: Connection, account: str | None = None) -> list[str]:
    """A line per run ``dead_runs`` finds, saying why it still reads ``running`` and what ends
    that. SQLite's locks are seen only in this machine's PID namespace, so there it says so."""
    seen = "" if conn.dialect.name == "postgresql" else " that this machine can see"
    unless = "" if not seen else "unless a sync of it runs in another container or host, "
    return [
        f"note: run {run_id} of account {whose!r} is marked running, but no sync of that "
        f"account{seen} holds its lock: {unless}its process ended without finishing "
        "(killed, or the machine restarted); the account's next sync marks it aborted"
        for run_id, whose in dead_runs(conn, account)
    ]
