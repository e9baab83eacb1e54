"""The database schema: what Alembic's autogenerate compares the migrations with.

Entity tables hold the current state (one row per API id, deleted rows kept and marked), history
tables hold one row per version of an entity, and ``changes`` one row per changed field. The
column names are a contract with SQL and BI users: change them only with a migration and a note in
docs/schema.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

from catalog.kinds import KINDS, REGISTRY
from catalog.types import BigId, JsonValue, UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

#: The account a row belongs to when a database holds one account's catalog (and the name every
#: row written before accounts existed was given by migration 0007).
DEFAULT_ACCOUNT = "default"
#: The longest account name the ``account`` columns hold.
ACCOUNT_CHARS = 64


def account_column(*, primary_key: bool = False, index: bool = False) -> Column[str]:
    """The account a row belongs to: ``--account``, part of every entity's key.

    The server default names the rows written before accounts existed; the sync always gives
    the account explicitly.
    """
    return Column(
        "account",
        String(ACCOUNT_CHARS),
        primary_key=primary_key,
        nullable=False,
        index=index,
        server_default=text(f"'{DEFAULT_ACCOUNT}'"),
        comment="the account (--account) the row belongs to",
    )


@dataclass(frozen=True)
class KindSpec:
    """What the store needs to know about one entity kind."""

    kind: str
    table: Table
    history: Table
    key: str
    tracked: tuple[str, ...]
    #: Tracked fields some answers lack (a listing item, where a detail or describe call has
    #: them): a row without them keeps the stored value instead of erasing it.
    carried: tuple[str, ...] = ()

    @property
    def key_column(self) -> Column[Any]:
        return self.table.c[self.key]

    def of(self, account: str) -> ColumnElement[bool]:
        """'This row is the account's': the filter every read and write of a run carries."""
        return self.table.c.account == account


def _entity_tables(name: str, key: Column[Any], columns: list[Column[Any]]) -> tuple[Table, Table]:
    """An entity table and its history table, sharing the tracked columns (a column's index is
    the entity table's only: every change writes to history)."""

    def copies() -> list[Column[Any]]:
        return [Column(c.name, c.type, nullable=True, comment=c.comment) for c in columns]

    table = Table(
        name,
        metadata,
        account_column(primary_key=True),
        key,
        *columns,
        Column("raw", JsonValue, nullable=False, comment="the API object as last stored"),
        Column(
            "raw_hash",
            String(32),
            nullable=True,
            comment="hash of the answer last stored: equal means unchanged, nothing to parse or "
            "compare",
        ),
        Column("first_seen_run_id", Integer, ForeignKey("sync_runs.run_id"), nullable=False),
        Column(
            "last_seen_run_id",
            Integer,
            ForeignKey("sync_runs.run_id"),
            nullable=False,
            comment="the last run that found this entity new, changed or back",
        ),
        Column("deleted_at", UTCDateTime, nullable=True),
        Column("deleted_run_id", Integer, ForeignKey("sync_runs.run_id"), nullable=True),
    )
    history = Table(
        f"{name}_history",
        metadata,
        Column("history_id", BigId, primary_key=True, autoincrement=True),
        account_column(),
        Column(key.name, key.type, nullable=False),
        *copies(),
        Column("valid_from", UTCDateTime, nullable=False),
        Column("valid_to", UTCDateTime, nullable=True),
        Column("valid_from_run_id", Integer, ForeignKey("sync_runs.run_id"), nullable=False),
        Column("valid_to_run_id", Integer, ForeignKey("sync_runs.run_id"), nullable=True),
    )
    Index(
        f"ix_{name}_history_key_valid_to",
        history.c.account,
        history.c[key.name],
        history.c.valid_to,
    )
    Index(f"ix_{name}_history_valid_from", history.c.valid_from)
    return table, history


#: What ``sync_runs`` counts per kind (``<kind>_<what>``): seen, new or back, changed, deleted.
RUN_COUNTS = ("seen", "inserted", "updated", "deleted")

sync_runs = Table(
    "sync_runs",
    metadata,
    Column("run_id", Integer, primary_key=True, autoincrement=True),
    account_column(),
    Column(
        "started_at", UTCDateTime, nullable=False, comment="the run's timestamp: history bounds"
    ),
    Column("finished_at", UTCDateTime, nullable=True),
    Column(
        "status",
        String(16),
        nullable=False,
        comment="running, success, partial, failed, aborted, interrupted",
    ),
    Column(
        "scope", JsonValue, nullable=True, comment="model sets and options the run was limited to"
    ),
    Column("api_calls", Integer, nullable=False, default=0),
    Column("api_retries", Integer, nullable=False, default=0),
    Column("errors", Integer, nullable=False, default=0),
    Column("error", Text, nullable=True, comment="why the run failed, one line"),
    Column(
        "qps_settled",
        Float,
        nullable=True,
        comment="calls per second the client settled on (adaptive pacing under --qps)",
    ),
    Column("pid", Integer, nullable=True),
    Column("hostname", String(255), nullable=True),
    *[
        Column(f"{kind}_{what}", Integer, nullable=False, default=0)
        for kind in KINDS
        for what in RUN_COUNTS
    ],
)
Index("ix_sync_runs_started_at", sync_runs.c.started_at)
Index("ix_sync_runs_account_status", sync_runs.c.account, sync_runs.c.status)

sync_errors = Table(
    "sync_errors",
    metadata,
    Column("error_id", BigId, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("sync_runs.run_id"), nullable=False, index=True),
    account_column(),
    Column("kind", String(32), nullable=True),
    Column("call", String(128), nullable=False),
    Column("entity_id", Text, nullable=True),
    Column("code", String(64), nullable=True),
    Column("message", Text, nullable=False),
    Column("occurred_at", UTCDateTime, nullable=False),
)

tracked_eval_exports = Table(
    "tracked_eval_exports",
    metadata,
    account_column(primary_key=True),
    Column("export_ref", String(64), primary_key=True, comment="as given: 96 or amemt-..."),
    Column("added_at", UTCDateTime, nullable=False),
)

api_drift = Table(
    "api_drift",
    metadata,
    Column("drift_id", BigId, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("sync_runs.run_id"), nullable=False, index=True),
    Column("kind", String(32), nullable=False),
    Column("call", String(128), nullable=False, comment="the action whose answers drifted"),
    Column("field", String(255), nullable=False, comment="dotted path inside the answer object"),
    Column(
        "drift",
        String(8),
        nullable=False,
        comment="unknown: answers carried it, the documents do not list it; "
        "missing: documented, answers lacked it",
    ),
    Column("example_id", Text, nullable=True, comment="one entity whose answer showed it"),
    Column("count", Integer, nullable=False, comment="answers of this run that showed it"),
)
Index("ix_api_drift_kind_field", api_drift.c.kind, api_drift.c.call, api_drift.c.field)

catalog_source = Table(
    "catalog_source",
    metadata,
    Column(
        "account",
        String(ACCOUNT_CHARS),
        primary_key=True,
        comment="the catalog's name; 'default' until several accounts share a database",
    ),
    Column("base_url", Text, nullable=False),
    Column(
        "key_fingerprint",
        String(64),
        nullable=False,
        comment="a salted hash of the access key id: tells keys apart, never shows one",
    ),
    Column("bound_at", UTCDateTime, nullable=False),
)

changes = Table(
    "changes",
    metadata,
    Column("change_id", BigId, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("sync_runs.run_id"), nullable=False, index=True),
    account_column(),
    Column("changed_at", UTCDateTime, nullable=False, comment="the run's timestamp"),
    Column("kind", String(32), nullable=False),
    Column("entity_id", Text, nullable=False),
    Column("operation", String(8), nullable=False, comment="insert, update, delete, restore"),
    Column("field", String(64), nullable=True, comment="NULL for insert, delete and restore"),
    Column("old_value", Text, nullable=True, comment="JSON text"),
    Column("new_value", Text, nullable=True, comment="JSON text"),
)
Index("ix_changes_kind_entity_id", changes.c.account, changes.c.kind, changes.c.entity_id)
#: ``changes --since``/``--until`` and BI's "changes in the last week", per account.
Index("ix_changes_account_changed_at", changes.c.account, changes.c.changed_at)


def _spec(kind: str, table: Table, history: Table, carried: tuple[str, ...] = ()) -> KindSpec:
    key = next(c.name for c in table.primary_key.columns if c.name != "account")
    bookkeeping = {
        "account",
        "raw",
        "raw_hash",
        "first_seen_run_id",
        "last_seen_run_id",
        "deleted_at",
        "deleted_run_id",
    }
    tracked = tuple(c.name for c in table.columns if c.name != key and c.name not in bookkeeping)
    return KindSpec(kind, table, history, key, tracked, carried)


#: Per kind, its table, history table and tracked columns, in the registry's order.
SPECS: dict[str, KindSpec] = {}
for _kind in REGISTRY.values():
    _table, _history = _entity_tables(_kind.table, _kind.key, list(_kind.columns))
    SPECS[_kind.name] = _spec(_kind.name, _table, _history, _kind.carried)

#: The tables this code names most; every kind's are in SPECS.
model_sets = SPECS["model_set"].table
model_versions = SPECS["model_version"].table
compression_tasks = SPECS["compression_task"].table
compression_tasks_history = SPECS["compression_task"].history
eval_result_exports = SPECS["eval_result_export"].table
