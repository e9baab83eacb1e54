"""Which evaluation-result exports a database follows.

No listing call returns evaluation exports, so the tracked list is their listing: the sync
refreshes every tracked export, and an export leaves the catalog (marked deleted by the next
sync) only when it is untracked, never because its status call failed.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, String, and_, cast, delete, or_, select

from catalog import db, normalize, source
from catalog.errors import ConfigError
from catalog.queries import whose
from catalog.runs import utcnow
from catalog.schema import DEFAULT_ACCOUNT, SPECS, eval_result_exports, tracked_eval_exports

if TYPE_CHECKING:
    from catalog.sync import SyncOptions


def check_ref(ref: str, option: str = "") -> str:
    """``ref`` as stored, or a ``ConfigError`` naming the ``option`` it was given with."""
    try:
        return normalize.eval_export_ref(ref)
    except normalize.NormalizeError as exc:
        raise ConfigError(f"{option}: {exc}" if option else str(exc)) from None


def tracked_refs(conn: Connection, account: str) -> list[str]:
    t = tracked_eval_exports
    return list(conn.execute(select(t.c.export_ref).where(t.c.account == account)).scalars())


def add(conn: Connection, ref: str, account: str, at: dt.datetime) -> None:
    """Follow ``ref`` from ``at`` on; the caller knows it is not followed yet, and commits."""
    conn.execute(tracked_eval_exports.insert().values(account=account, export_ref=ref, added_at=at))


def track(
    conn: Connection, ref: str, base_url: str, access_key: str, account: str = DEFAULT_ACCOUNT
) -> bool:
    """Track ``ref`` for ``account`` (checked against the API by the caller); False if it
    already was.

    Binds the account to the source like a sync does: a ref from another account's key must
    not join this catalog. The caller commits.
    """
    db.ensure_schema(conn, migrate=True)
    source.bind(conn, base_url, access_key, account=account)
    if ref in tracked_refs(conn, account):
        return False
    add(conn, ref, account, utcnow())
    return True


def track_checked(options: SyncOptions, ref: str) -> bool:
    """Track ``ref`` for ``options.account`` once the API answers for it; False if it already
    was. It is asked by the call a sync will read it with, so an id no sync could read is
    refused (``ConfigError``) before it is stored."""
    from catalog.sync import build_client, validate
    from catalog.walk import Walker

    validate(options)
    client = build_client(options)
    try:
        Walker(
            client, lambda task, depth: None, lambda event: None, kinds=options.kinds
        ).resolve_eval_exports([ref], what="evaluation export")
    finally:
        client.close()
    engine = db.create_engine_for(options.database_url)
    try:
        with db.connect(engine) as conn:
            added = track(conn, ref, options.base_url, options.access_key, options.account)
            conn.commit()
    finally:
        engine.dispose()
    return added


def untrack(conn: Connection, ref: str, account: str = DEFAULT_ACCOUNT) -> None:
    """Stop following ``ref``; the account's next sync marks its export deleted. The caller
    commits."""
    t = tracked_eval_exports
    gone = conn.execute(delete(t).where(t.c.account == account, t.c.export_ref == ref)).rowcount
    if not gone:
        raise ConfigError(
            f"evaluation export {ref} is not tracked for account {account!r} "
            "(see `qianfan-catalog eval list`)"
        )


def tracked_table(
    conn: Connection, account: str | None = None
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The tracked refs (of one account, or all) with what the last sync stored for each
    (nothing yet: NULLs): the V1 route's export, and ``task_state``, the V2 export task's
    (stored only by syncs with eval_result_export_task on)."""
    t, e, x = tracked_eval_exports, eval_result_exports, SPECS["eval_result_export_task"].table
    matches = and_(
        e.c.account == t.c.account,
        or_(cast(e.c.export_id, String) == t.c.export_ref, e.c.export_id_str == t.c.export_ref),
    )
    task = and_(x.c.account == t.c.account, x.c.task_id == t.c.export_ref)
    stmt = (
        select(t.c.account, t.c.export_ref, t.c.added_at, e.c.export_id, e.c.state,
               e.c.deleted_at, x.c.state)
        .select_from(t.outerjoin(e, matches).outerjoin(x, task))
        .order_by(t.c.account, t.c.added_at, t.c.export_ref)
    )
    stmt = stmt.where(*whose(t, account))
    rows = [tuple(r) for r in conn.execute(stmt)]
    columns = ["account", "export_ref", "added_at", "export_id", "state", "deleted_at"]
    return [*columns, "task_state"], rows
