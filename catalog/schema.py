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
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from catalog.types import BigId, JsonValue, UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


@dataclass(frozen=True)
class KindSpec:
    """What the store needs to know about one entity kind."""

    kind: str
    table: Table
    history: Table
    key: str
    tracked: tuple[str, ...]
    #: Tracked fields only a detail call answers: a row from the listing alone lacks them, and
    #: the stored value is kept instead of being erased.
    carried: tuple[str, ...] = ()

    @property
    def key_column(self) -> Column[Any]:
        return self.table.c[self.key]


def _entity_tables(name: str, key: Column[Any], columns: list[Column[Any]]) -> tuple[Table, Table]:
    """An entity table and its history table, sharing the tracked columns."""

    def copies() -> list[Column[Any]]:
        return [Column(c.name, c.type, nullable=True, comment=c.comment) for c in columns]

    table = Table(
        name,
        metadata,
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
        Column(key.name, key.type, nullable=False),
        *copies(),
        Column("valid_from", UTCDateTime, nullable=False),
        Column("valid_to", UTCDateTime, nullable=True),
        Column("valid_from_run_id", Integer, ForeignKey("sync_runs.run_id"), nullable=False),
        Column("valid_to_run_id", Integer, ForeignKey("sync_runs.run_id"), nullable=True),
    )
    Index(f"ix_{name}_history_key_valid_to", history.c[key.name], history.c.valid_to)
    Index(f"ix_{name}_history_valid_from", history.c.valid_from)
    return table, history


KINDS = ("model_set", "model_version", "compression_task", "model_export", "eval_result_export")

sync_runs = Table(
    "sync_runs",
    metadata,
    Column("run_id", Integer, primary_key=True, autoincrement=True),
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
        for what in ("seen", "inserted", "updated", "deleted")
    ],
)
Index("ix_sync_runs_started_at", sync_runs.c.started_at)

sync_errors = Table(
    "sync_errors",
    metadata,
    Column("error_id", BigId, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("sync_runs.run_id"), nullable=False, index=True),
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
        String(64),
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
    Column("changed_at", UTCDateTime, nullable=False, comment="the run's timestamp"),
    Column("kind", String(32), nullable=False),
    Column("entity_id", Text, nullable=False),
    Column("operation", String(8), nullable=False, comment="insert, update, delete, restore"),
    Column("field", String(64), nullable=True, comment="NULL for insert, delete and restore"),
    Column("old_value", Text, nullable=True, comment="JSON text"),
    Column("new_value", Text, nullable=True, comment="JSON text"),
)
Index("ix_changes_kind_entity_id", changes.c.kind, changes.c.entity_id)

Time = UTCDateTime

model_sets, model_sets_history = _entity_tables(
    "model_sets",
    Column("model_set_id", String(64), primary_key=True),
    [
        Column("model_set_name", Text),
        Column("source", String(32), comment="UserCreate or System"),
        Column("model_type", String(64)),
        Column("is_system", Boolean, comment="listed by DescribeSystemModelSets"),
        Column("labels", JsonValue),
        Column("description", Text),
        Column("model_ids", JsonValue, comment="its versions' ids"),
        Column("create_time", Time),
        Column("modify_time", Time),
    ],
)

model_versions, model_versions_history = _entity_tables(
    "model_versions",
    Column("model_id", String(64), primary_key=True),
    [
        Column("model_set_id", String(64), index=True),
        Column("model_set_name", Text),
        Column("model_name", Text),
        Column("model", Text, comment="base model version name"),
        Column("status", String(32), comment="Ready, Creating, Fail"),
        Column("description", Text),
        Column("source_type", String(32), comment="Train, Acceleration, Import, PlatformPreset"),
        Column("train_task_id", Text),
        Column("acceleration_task_id", Text),
        Column("import_model_version_bos_url", Text),
        Column("model_application_type", String(32)),
        Column("input_tokens", BigInteger),
        Column("output_tokens", BigInteger),
        Column("character_limit", BigInteger),
        Column("query_tokens", BigInteger),
        Column("query_character_limit", BigInteger),
        Column("document_tokens", BigInteger),
        Column("document_character_limit", BigInteger),
        Column("is_support_deploy", Boolean),
        Column("is_support_model_comp", Boolean),
        Column("is_support_evaluation", Boolean),
        Column("sampling_strategy", String(64)),
        Column("num_beams", Integer),
        Column("top_logprobs", Integer),
        Column("model_comp_configs", JsonValue),
        Column("create_time", Time),
        Column("modify_time", Time),
    ],
)

compression_tasks, compression_tasks_history = _entity_tables(
    "compression_tasks",
    Column("task_id", String(64), primary_key=True),
    [
        Column("name", Text),
        Column("description", Text),
        Column("status", String(32), comment="creating running succeeded failed stopping stopped"),
        Column("source_model_id", String(64), index=True),
        Column("model_id", String(64), comment="the compressed version; NULL when failed"),
        Column("strategy", String(32), comment="config.strategy: Quantization or Sparsity"),
        Column("quant_conf", String(64)),
        Column("sparsity_ratio", Float),
        Column("config", JsonValue),
        Column(
            "failed_reason",
            Text,
            comment="DescribeModelCompTask's failedReason; fetched once per failed task",
        ),
        Column("create_time", Time),
        Column("finish_time", Time),
    ],
)

model_exports, model_exports_history = _entity_tables(
    "model_exports",
    Column("model_id", String(64), primary_key=True, comment="the exported version"),
    [
        Column("export_id", String(64)),
        Column("state", String(16), comment="Doing, Done (failed exports are not returned)"),
        Column("file_name", Text),
        Column("file_type", String(32)),
        Column("md5", String(64)),
        Column("file_size", BigInteger),
        Column("download_url", Text, comment="without its rotating query string"),
    ],
)

eval_result_exports, eval_result_exports_history = _entity_tables(
    "eval_result_exports",
    Column("export_id", BigInteger, primary_key=True, autoincrement=False),
    [
        Column("export_id_str", String(64), index=True),
        Column("record_id", BigInteger, comment="result.id"),
        Column("record_id_str", String(64), comment="result.idStr"),
        Column("state", String(16), comment="Pending, Uploading, Fail, Done"),
        Column("export_type", String(16), comment="local or storage"),
        Column("volume_id", Text),
        Column("export_path", Text),
        Column("download_url", Text, comment="without its rotating query string"),
    ],
)


def _spec(kind: str, table: Table, history: Table, carried: tuple[str, ...] = ()) -> KindSpec:
    key = next(c.name for c in table.primary_key.columns)
    bookkeeping = {
        "raw",
        "raw_hash",
        "first_seen_run_id",
        "last_seen_run_id",
        "deleted_at",
        "deleted_run_id",
    }
    tracked = tuple(c.name for c in table.columns if c.name != key and c.name not in bookkeeping)
    return KindSpec(kind, table, history, key, tracked, carried)


SPECS: dict[str, KindSpec] = {
    spec.kind: spec
    for spec in (
        _spec("model_set", model_sets, model_sets_history),
        _spec("model_version", model_versions, model_versions_history),
        _spec(
            "compression_task",
            compression_tasks,
            compression_tasks_history,
            carried=("failed_reason",),
        ),
        _spec("model_export", model_exports, model_exports_history),
        _spec("eval_result_export", eval_result_exports, eval_result_exports_history),
    )
}
