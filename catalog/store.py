"""Writing batches of entity rows: current state, history and changes, in the caller's transaction.

Per batch the store reads the stored versions of just that batch's keys (one keyed SELECT, so
memory is bounded by the batch, not the catalog), decides per row whether it is new, changed, back
from deletion or unchanged, and writes only what changed, in bulk: one upsert (guarded by
``IS DISTINCT FROM`` so the database itself never rewrites an unchanged row), one history close,
one history insert, one change insert. Unchanged rows cost a read and nothing else.

Which entities a run saw is kept in a connection-local temporary table, so deletion is decided in
SQL at the end of a walk without writing anything to the catalog's own tables for unchanged rows.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Insert,
    MetaData,
    String,
    Table,
    and_,
    bindparam,
    cast,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from catalog.schema import SPECS, KindSpec, changes

_temp = MetaData()
#: Keys this run saw, per kind. TEMPORARY: private to the writer's connection, gone after it.
seen = Table(
    "catalog_run_seen",
    _temp,
    Column("kind", String(32), nullable=False),
    Column("entity_key", String, nullable=False),
    prefixes=["TEMPORARY"],
)
#: Scopes whose walk completed in this run, per kind (e.g. model sets whose versions all answered).
scopes = Table(
    "catalog_run_scope",
    _temp,
    Column("kind", String(32), nullable=False),
    Column("scope_key", String, nullable=False),
    prefixes=["TEMPORARY"],
)


def to_json(value: Any) -> str:
    """Stable JSON text for change rows: sorted keys, times in ISO 8601 UTC."""

    def default(obj: Any) -> Any:
        if isinstance(obj, dt.datetime):
            return obj.astimezone(dt.UTC).isoformat()
        raise TypeError(f"not JSON serialisable: {type(obj).__name__}")

    return json.dumps(value, default=default, ensure_ascii=False, sort_keys=True)


@dataclass
class BatchResult:
    inserted: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    unchanged: int = 0

    @property
    def written(self) -> int:
        return len(self.inserted) + len(self.updated) + len(self.restored)


def _upsert_statement(spec: KindSpec, dialect: str) -> Insert:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(spec.table)
    excluded = stmt.excluded
    t = spec.table
    set_: dict[str, Any] = {
        name: excluded[name] for name in (*spec.tracked, "raw", "last_seen_run_id")
    }
    set_["deleted_at"] = None
    set_["deleted_run_id"] = None
    changed = or_(
        *[t.c[name].is_distinct_from(excluded[name]) for name in spec.tracked],
        t.c.deleted_at.is_not(None),
    )
    return stmt.on_conflict_do_update(index_elements=[spec.key], set_=set_, where=changed)


class Store:
    """Writes for one run on one connection. Never commits: the caller owns the transaction."""

    def __init__(self, conn: Connection, run_id: int, run_ts: dt.datetime) -> None:
        self.conn = conn
        self.run_id = run_id
        self.run_ts = run_ts
        self.dialect = conn.dialect.name
        _temp.create_all(conn, checkfirst=True)
        # A pooled connection may have served an earlier run: its "seen" keys must not count.
        conn.execute(seen.delete())
        conn.execute(scopes.delete())
        self._upserts = {
            kind: _upsert_statement(spec, self.dialect) for kind, spec in SPECS.items()
        }

    # -- batches ------------------------------------------------------------

    def write_batch(self, kind: str, rows: Sequence[dict[str, Any]]) -> BatchResult:
        """Upsert rows of one kind; history and change rows for what changed; mark them seen."""
        spec = SPECS[kind]
        result = BatchResult()
        if not rows:
            return result
        latest: dict[Any, dict[str, Any]] = {}
        for row in rows:  # an id repeated within a batch: the last answer wins
            latest[row[spec.key]] = row
        stored = self._stored(spec, list(latest))
        to_write: list[dict[str, Any]] = []
        change_rows: list[dict[str, Any]] = []
        close_keys: list[Any] = []
        for key, row in latest.items():
            old = stored.get(key)
            if old is None:
                result.inserted.append(str(key))
                change_rows.append(
                    self._change(kind, key, "insert", None, None, self._tracked(spec, row))
                )
            elif old["deleted_at"] is not None:
                result.restored.append(str(key))
                change_rows.append(
                    self._change(kind, key, "restore", None, None, self._tracked(spec, row))
                )
            else:
                diff = [name for name in spec.tracked if old[name] != row.get(name)]
                if not diff:
                    result.unchanged += 1
                    continue
                result.updated.append(str(key))
                close_keys.append(key)
                change_rows.extend(
                    self._change(kind, key, "update", name, old[name], row.get(name))
                    for name in diff
                )
            to_write.append(row)
        if to_write:
            self._write(spec, to_write, close_keys, change_rows)
        self.conn.execute(seen.insert(), [{"kind": kind, "entity_key": str(key)} for key in latest])
        return result

    def _stored(self, spec: KindSpec, keys: list[Any]) -> dict[Any, dict[str, Any]]:
        cols = [
            spec.table.c[spec.key],
            *(spec.table.c[n] for n in spec.tracked),
            spec.table.c.deleted_at,
        ]
        found = self.conn.execute(select(*cols).where(spec.key_column.in_(keys))).mappings()
        return {row[spec.key]: dict(row) for row in found}

    @staticmethod
    def _tracked(spec: KindSpec, row: dict[str, Any]) -> dict[str, Any]:
        return {name: row.get(name) for name in spec.tracked}

    def _change(
        self, kind: str, key: Any, op: str, name: str | None, old: Any, new: Any
    ) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "changed_at": self.run_ts,
            "kind": kind,
            "entity_id": str(key),
            "operation": op,
            "field": name,
            "old_value": None if old is None else to_json(old),
            "new_value": None if new is None else to_json(new),
        }

    def _write(
        self,
        spec: KindSpec,
        rows: list[dict[str, Any]],
        close_keys: list[Any],
        change_rows: list[dict[str, Any]],
    ) -> None:
        entity_rows = [
            {
                spec.key: row[spec.key],
                **self._tracked(spec, row),
                "raw": row.get("raw", {}),
                "first_seen_run_id": self.run_id,
                "last_seen_run_id": self.run_id,
                "deleted_at": None,
                "deleted_run_id": None,
            }
            for row in rows
        ]
        self.conn.execute(self._upserts[spec.kind], entity_rows)
        if close_keys:
            self._close_history(spec, close_keys)
        self.conn.execute(
            spec.history.insert(),
            [
                {
                    spec.key: row[spec.key],
                    **self._tracked(spec, row),
                    "valid_from": self.run_ts,
                    "valid_from_run_id": self.run_id,
                }
                for row in rows
            ],
        )
        self.conn.execute(changes.insert(), change_rows)

    def _close_history(self, spec: KindSpec, keys: Iterable[Any]) -> None:
        h = spec.history
        stmt = (
            update(h)
            .where(h.c[spec.key] == bindparam("k"), h.c.valid_to.is_(None))
            .values(valid_to=self.run_ts, valid_to_run_id=self.run_id)
        )
        self.conn.execute(stmt, [{"k": key} for key in keys])

    # -- scopes and deletes ------------------------------------------------------------

    def add_scopes(self, kind: str, keys: Iterable[str]) -> None:
        rows = [{"kind": kind, "scope_key": key} for key in keys]
        if rows:
            self.conn.execute(scopes.insert(), rows)

    def scope_keys(self, kind: str) -> Any:
        """A subquery of the scope keys recorded for ``kind`` in this run."""
        return select(scopes.c.scope_key).where(scopes.c.kind == kind)

    def unseen_in(self, spec: KindSpec, scope: ColumnElement[bool]) -> ColumnElement[bool]:
        seen_keys = select(seen.c.entity_key).where(seen.c.kind == spec.kind)
        return and_(
            spec.table.c.deleted_at.is_(None),
            cast(spec.key_column, String).not_in(seen_keys),
            scope,
        )

    def unseen(self, kind: str, scope: ColumnElement[bool]) -> ColumnElement[bool]:
        """'Alive, in ``scope``, and not seen by this run': what a delete would mark."""
        return self.unseen_in(SPECS[kind], scope)

    def count_unseen(self, kind: str, scope: ColumnElement[bool]) -> tuple[int, int]:
        """(entities this run would delete in ``scope``, entities of the kind not deleted)."""
        spec = SPECS[kind]
        t = spec.table
        doomed = self.conn.execute(
            select(func.count()).select_from(t).where(self.unseen_in(spec, scope))
        )
        alive = self.conn.execute(
            select(func.count()).select_from(t).where(t.c.deleted_at.is_(None))
        )
        return int(doomed.scalar_one()), int(alive.scalar_one())

    def delete_unseen(self, kind: str, scope: ColumnElement[bool], chunk: int = 1000) -> int:
        """Mark deleted what this run did not see in ``scope``; close history; record changes."""
        spec = SPECS[kind]
        t = spec.table
        cols = [t.c[spec.key], *(t.c[n] for n in spec.tracked)]
        doomed = [
            dict(r)
            for r in self.conn.execute(select(*cols).where(self.unseen_in(spec, scope))).mappings()
        ]
        for start in range(0, len(doomed), chunk):
            part = doomed[start : start + chunk]
            keys = [row[spec.key] for row in part]
            self.conn.execute(
                update(t)
                .where(spec.key_column.in_(keys))
                .values(deleted_at=self.run_ts, deleted_run_id=self.run_id)
            )
            self._close_history(spec, keys)
            self.conn.execute(
                changes.insert(),
                [
                    self._change(
                        kind, row[spec.key], "delete", None, self._tracked(spec, row), None
                    )
                    for row in part
                ],
            )
        return len(doomed)

    def seen_count(self, kind: str) -> int:
        stmt = select(func.count(func.distinct(seen.c.entity_key))).where(seen.c.kind == kind)
        return int(self.conn.execute(stmt).scalar_one())
