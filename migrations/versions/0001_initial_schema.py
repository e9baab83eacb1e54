"""Initial schema: entity tables, their history, changes, the run ledger, current_* views.

Revision ID: 0001
Revises: 
Create Date: 2026-11-23 18:13:14.816795
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ENTITY_TABLES = (
    "model_sets",
    "model_versions",
    "compression_tasks",
    "model_exports",
    "eval_result_exports",
)


def upgrade() -> None:
    op.create_table('sync_runs',
    sa.Column('run_id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False, comment="the run's timestamp: history bounds"),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False, comment='running, success, partial, failed, aborted, interrupted'),
    sa.Column('scope', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=True, comment='model sets and options the run was limited to'),
    sa.Column('api_calls', sa.Integer(), nullable=False),
    sa.Column('api_retries', sa.Integer(), nullable=False),
    sa.Column('errors', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True, comment='why the run failed, one line'),
    sa.Column('pid', sa.Integer(), nullable=True),
    sa.Column('hostname', sa.String(length=255), nullable=True),
    sa.Column('model_set_seen', sa.Integer(), nullable=False),
    sa.Column('model_set_inserted', sa.Integer(), nullable=False),
    sa.Column('model_set_updated', sa.Integer(), nullable=False),
    sa.Column('model_set_deleted', sa.Integer(), nullable=False),
    sa.Column('model_version_seen', sa.Integer(), nullable=False),
    sa.Column('model_version_inserted', sa.Integer(), nullable=False),
    sa.Column('model_version_updated', sa.Integer(), nullable=False),
    sa.Column('model_version_deleted', sa.Integer(), nullable=False),
    sa.Column('compression_task_seen', sa.Integer(), nullable=False),
    sa.Column('compression_task_inserted', sa.Integer(), nullable=False),
    sa.Column('compression_task_updated', sa.Integer(), nullable=False),
    sa.Column('compression_task_deleted', sa.Integer(), nullable=False),
    sa.Column('model_export_seen', sa.Integer(), nullable=False),
    sa.Column('model_export_inserted', sa.Integer(), nullable=False),
    sa.Column('model_export_updated', sa.Integer(), nullable=False),
    sa.Column('model_export_deleted', sa.Integer(), nullable=False),
    sa.Column('eval_result_export_seen', sa.Integer(), nullable=False),
    sa.Column('eval_result_export_inserted', sa.Integer(), nullable=False),
    sa.Column('eval_result_export_updated', sa.Integer(), nullable=False),
    sa.Column('eval_result_export_deleted', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('run_id', name=op.f('pk_sync_runs'))
    )
    with op.batch_alter_table('sync_runs', schema=None) as batch_op:
        batch_op.create_index('ix_sync_runs_started_at', ['started_at'], unique=False)

    op.create_table('tracked_eval_exports',
    sa.Column('export_ref', sa.String(length=64), nullable=False, comment='as given: 96 or amemt-...'),
    sa.Column('added_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('export_ref', name=op.f('pk_tracked_eval_exports'))
    )
    op.create_table('changes',
    sa.Column('change_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False, comment="the run's timestamp"),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('entity_id', sa.Text(), nullable=False),
    sa.Column('operation', sa.String(length=8), nullable=False, comment='insert, update, delete, restore'),
    sa.Column('field', sa.String(length=64), nullable=True, comment='NULL for insert, delete and restore'),
    sa.Column('old_value', sa.Text(), nullable=True, comment='JSON text'),
    sa.Column('new_value', sa.Text(), nullable=True, comment='JSON text'),
    sa.ForeignKeyConstraint(['run_id'], ['sync_runs.run_id'], name=op.f('fk_changes_run_id_sync_runs')),
    sa.PrimaryKeyConstraint('change_id', name=op.f('pk_changes'))
    )
    with op.batch_alter_table('changes', schema=None) as batch_op:
        batch_op.create_index('ix_changes_kind_entity_id', ['kind', 'entity_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_changes_run_id'), ['run_id'], unique=False)

    op.create_table('compression_tasks',
    sa.Column('task_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.Text(), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('status', sa.String(length=32), nullable=True, comment='creating running succeeded failed stopping stopped'),
    sa.Column('source_model_id', sa.String(length=64), nullable=True),
    sa.Column('model_id', sa.String(length=64), nullable=True, comment='the compressed version; NULL when failed'),
    sa.Column('strategy', sa.String(length=32), nullable=True, comment='config.strategy: Quantization or Sparsity'),
    sa.Column('quant_conf', sa.String(length=64), nullable=True),
    sa.Column('sparsity_ratio', sa.Float(), nullable=True),
    sa.Column('config', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=True),
    sa.Column('create_time', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finish_time', sa.DateTime(timezone=True), nullable=True),
    sa.Column('raw', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=False, comment='the API object as last stored'),
    sa.Column('first_seen_run_id', sa.Integer(), nullable=False),
    sa.Column('last_seen_run_id', sa.Integer(), nullable=False, comment='the last run that found this entity new, changed or back'),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('deleted_run_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['deleted_run_id'], ['sync_runs.run_id'], name=op.f('fk_compression_tasks_deleted_run_id_sync_runs')),
    sa.ForeignKeyConstraint(['first_seen_run_id'], ['sync_runs.run_id'], name=op.f('fk_compression_tasks_first_seen_run_id_sync_runs')),
    sa.ForeignKeyConstraint(['last_seen_run_id'], ['sync_runs.run_id'], name=op.f('fk_compression_tasks_last_seen_run_id_sync_runs')),
    sa.PrimaryKeyConstraint('task_id', name=op.f('pk_compression_tasks'))
    )
    with op.batch_alter_table('compression_tasks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_compression_tasks_source_model_id'), ['source_model_id'], unique=False)

    op.create_table('compression_tasks_history',
    sa.Column('history_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('task_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.Text(), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('status', sa.String(length=32), nullable=True, comment='creating running succeeded failed stopping stopped'),
    sa.Column('source_model_id', sa.String(length=64), nullable=True),
    sa.Column('model_id', sa.String(length=64), nullable=True, comment='the compressed version; NULL when failed'),
    sa.Column('strategy', sa.String(length=32), nullable=True, comment='config.strategy: Quantization or Sparsity'),
    sa.Column('quant_conf', sa.String(length=64), nullable=True),
    sa.Column('sparsity_ratio', sa.Float(), nullable=True),
    sa.Column('config', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=True),
    sa.Column('create_time', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finish_time', sa.DateTime(timezone=True), nullable=True),
    sa.Column('valid_from', sa.DateTime(timezone=True), nullable=False),
    sa.Column('valid_to', sa.DateTime(timezone=True), nullable=True),
    sa.Column('valid_from_run_id', sa.Integer(), nullable=False),
    sa.Column('valid_to_run_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['valid_from_run_id'], ['sync_runs.run_id'], name=op.f('fk_compression_tasks_history_valid_from_run_id_sync_runs')),
    sa.ForeignKeyConstraint(['valid_to_run_id'], ['sync_runs.run_id'], name=op.f('fk_compression_tasks_history_valid_to_run_id_sync_runs')),
    sa.PrimaryKeyConstraint('history_id', name=op.f('pk_compression_tasks_history'))
    )
    with op.batch_alter_table('compression_tasks_history', schema=None) as batch_op:
        batch_op.create_index('ix_compression_tasks_history_key_valid_to', ['task_id', 'valid_to'], unique=False)
        batch_op.create_index('ix_compression_tasks_history_valid_from', ['valid_from'], unique=False)

    op.create_table('eval_result_exports',
    sa.Column('export_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('export_id_str', sa.String(length=64), nullable=True),
    sa.Column('record_id', sa.BigInteger(), nullable=True, comment='result.id'),
    sa.Column('record_id_str', sa.String(length=64), nullable=True, comment='result.idStr'),
    sa.Column('state', sa.String(length=16), nullable=True, comment='Pending, Uploading, Fail, Done'),
    sa.Column('export_type', sa.String(length=16), nullable=True, comment='local or storage'),
    sa.Column('volume_id', sa.Text(), nullable=True),
    sa.Column('export_path', sa.Text(), nullable=True),
    sa.Column('download_url', sa.Text(), nullable=True, comment='without its rotating query string'),
    sa.Column('raw', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=False, comment='the API object as last stored'),
    sa.Column('first_seen_run_id', sa.Integer(), nullable=False),
    sa.Column('last_seen_run_id', sa.Integer(), nullable=False, comment='the last run that found this entity new, changed or back'),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('deleted_run_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['deleted_run_id'], ['sync_runs.run_id'], name=op.f('fk_eval_result_exports_deleted_run_id_sync_runs')),
    sa.ForeignKeyConstraint(['first_seen_run_id'], ['sync_runs.run_id'], name=op.f('fk_eval_result_exports_first_seen_run_id_sync_runs')),
    sa.ForeignKeyConstraint(['last_seen_run_id'], ['sync_runs.run_id'], name=op.f('fk_eval_result_exports_last_seen_run_id_sync_runs')),
    sa.PrimaryKeyConstraint('export_id', name=op.f('pk_eval_result_exports'))
    )
    with op.batch_alter_table('eval_result_exports', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_eval_result_exports_export_id_str'), ['export_id_str'], unique=False)

    op.create_table('eval_result_exports_history',
    sa.Column('history_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('export_id', sa.BigInteger(), nullable=False),
    sa.Column('export_id_str', sa.String(length=64), nullable=True),
    sa.Column('record_id', sa.BigInteger(), nullable=True, comment='result.id'),
    sa.Column('record_id_str', sa.String(length=64), nullable=True, comment='result.idStr'),
    sa.Column('state', sa.String(length=16), nullable=True, comment='Pending, Uploading, Fail, Done'),
    sa.Column('export_type', sa.String(length=16), nullable=True, comment='local or storage'),
    sa.Column('volume_id', sa.Text(), nullable=True),
    sa.Column('export_path', sa.Text(), nullable=True),
    sa.Column('download_url', sa.Text(), nullable=True, comment='without its rotating query string'),
    sa.Column('valid_from', sa.DateTime(timezone=True), nullable=False),
    sa.Column('valid_to', sa.DateTime(timezone=True), nullable=True),
    sa.Column('valid_from_run_id', sa.Integer(), nullable=False),
    sa.Column('valid_to_run_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['valid_from_run_id'], ['sync_runs.run_id'], name=op.f('fk_eval_result_exports_history_valid_from_run_id_sync_runs')),
    sa.ForeignKeyConstraint(['valid_to_run_id'], ['sync_runs.run_id'], name=op.f('fk_eval_result_exports_history_valid_to_run_id_sync_runs')),
    sa.PrimaryKeyConstraint('history_id', name=op.f('pk_eval_result_exports_history'))
    )
    with op.batch_alter_table('eval_result_exports_history', schema=None) as batch_op:
        batch_op.create_index('ix_eval_result_exports_history_key_valid_to', ['export_id', 'valid_to'], unique=False)
        batch_op.create_index('ix_eval_result_exports_history_valid_from', ['valid_from'], unique=False)

    op.create_table('model_exports',
    sa.Column('model_id', sa.String(length=64), nullable=False, comment='the exported version'),
    sa.Column('export_id', sa.String(length=64), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=True, comment='Doing, Done (failed exports are not returned)'),
    sa.Column('file_name', sa.Text(), nullable=True),
    sa.Column('file_type', sa.String(length=32), nullable=True),
    sa.Column('md5', sa.String(length=64), nullable=True),
    sa.Column('file_size', sa.BigInteger(), nullable=True),
    sa.Column('download_url', sa.Text(), nullable=True, comment='without its rotating query string'),
    sa.Column('raw', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=False, comment='the API object as last stored'),
    sa.Column('first_seen_run_id', sa.Integer(), nullable=False),
    sa.Column('last_seen_run_id', sa.Integer(), nullable=False, comment='the last run that found this entity new, changed or back'),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('deleted_run_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['deleted_run_id'], ['sync_runs.run_id'], name=op.f('fk_model_exports_deleted_run_id_sync_runs')),
    sa.ForeignKeyConstraint(['first_seen_run_id'], ['sync_runs.run_id'], name=op.f('fk_model_exports_first_seen_run_id_sync_runs')),
    sa.ForeignKeyConstraint(['last_seen_run_id'], ['sync_runs.run_id'], name=op.f('fk_model_exports_last_seen_run_id_sync_runs')),
    sa.PrimaryKeyConstraint('model_id', name=op.f('pk_model_exports'))
    )
    op.create_table('model_exports_history',
    sa.Column('history_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('model_id', sa.String(length=64), nullable=False),
    sa.Column('export_id', sa.String(length=64), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=True, comment='Doing, Done (failed exports are not returned)'),
    sa.Column('file_name', sa.Text(), nullable=True),
    sa.Column('file_type', sa.String(length=32), nullable=True),
    sa.Column('md5', sa.String(length=64), nullable=True),
    sa.Column('file_size', sa.BigInteger(), nullable=True),
    sa.Column('download_url', sa.Text(), nullable=True, comment='without its rotating query string'),
    sa.Column('valid_from', sa.DateTime(timezone=True), nullable=False),
    sa.Column('valid_to', sa.DateTime(timezone=True), nullable=True),
    sa.Column('valid_from_run_id', sa.Integer(), nullable=False),
    sa.Column('valid_to_run_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['valid_from_run_id'], ['sync_runs.run_id'], name=op.f('fk_model_exports_history_valid_from_run_id_sync_runs')),
    sa.ForeignKeyConstraint(['valid_to_run_id'], ['sync_runs.run_id'], name=op.f('fk_model_exports_history_valid_to_run_id_sync_runs')),
    sa.PrimaryKeyConstraint('history_id', name=op.f('pk_model_exports_history'))
    )
    with op.batch_alter_table('model_exports_history', schema=None) as batch_op:
        batch_op.create_index('ix_model_exports_history_key_valid_to', ['model_id', 'valid_to'], unique=False)
        batch_op.create_index('ix_model_exports_history_valid_from', ['valid_from'], unique=False)

    op.create_table('model_sets',
    sa.Column('model_set_id', sa.String(length=64), nullable=False),
    sa.Column('model_set_name', sa.Text(), nullable=True),
    sa.Column('source', sa.String(length=32), nullable=True, comment='UserCreate or System'),
    sa.Column('model_type', sa.String(length=64), nullable=True),
    sa.Column('is_system', sa.Boolean(), nullable=True, comment='listed by DescribeSystemModelSets'),
    sa.Column('labels', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('model_ids', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=True, comment="its versions' ids"),
    sa.Column('create_time', sa.DateTime(timezone=True), nullable=True),
    sa.Column('modify_time', sa.DateTime(timezone=True), nullable=True),
    sa.Column('raw', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=False, comment='the API object as last stored'),
    sa.Column('first_seen_run_id', sa.Integer(), nullable=False),
    sa.Column('last_seen_run_id', sa.Integer(), nullable=False, comment='the last run that found this entity new, changed or back'),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('deleted_run_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['deleted_run_id'], ['sync_runs.run_id'], name=op.f('fk_model_sets_deleted_run_id_sync_runs')),
    sa.ForeignKeyConstraint(['first_seen_run_id'], ['sync_runs.run_id'], name=op.f('fk_model_sets_first_seen_run_id_sync_runs')),
    sa.ForeignKeyConstraint(['last_seen_run_id'], ['sync_runs.run_id'], name=op.f('fk_model_sets_last_seen_run_id_sync_runs')),
    sa.PrimaryKeyConstraint('model_set_id', name=op.f('pk_model_sets'))
    )
    op.create_table('model_sets_history',
    sa.Column('history_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('model_set_id', sa.String(length=64), nullable=False),
    sa.Column('model_set_name', sa.Text(), nullable=True),
    sa.Column('source', sa.String(length=32), nullable=True, comment='UserCreate or System'),
    sa.Column('model_type', sa.String(length=64), nullable=True),
    sa.Column('is_system', sa.Boolean(), nullable=True, comment='listed by DescribeSystemModelSets'),
    sa.Column('labels', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('model_ids', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=True, comment="its versions' ids"),
    sa.Column('create_time', sa.DateTime(timezone=True), nullable=True),
    sa.Column('modify_time', sa.DateTime(timezone=True), nullable=True),
    sa.Column('valid_from', sa.DateTime(timezone=True), nullable=False),
    sa.Column('valid_to', sa.DateTime(timezone=True), nullable=True),
    sa.Column('valid_from_run_id', sa.Integer(), nullable=False),
    sa.Column('valid_to_run_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['valid_from_run_id'], ['sync_runs.run_id'], name=op.f('fk_model_sets_history_valid_from_run_id_sync_runs')),
    sa.ForeignKeyConstraint(['valid_to_run_id'], ['sync_runs.run_id'], name=op.f('fk_model_sets_history_valid_to_run_id_sync_runs')),
    sa.PrimaryKeyConstraint('history_id', name=op.f('pk_model_sets_history'))
    )
    with op.batch_alter_table('model_sets_history', schema=None) as batch_op:
        batch_op.create_index('ix_model_sets_history_key_valid_to', ['model_set_id', 'valid_to'], unique=False)
        batch_op.create_index('ix_model_sets_history_valid_from', ['valid_from'], unique=False)

    op.create_table('model_versions',
    sa.Column('model_id', sa.String(length=64), nullable=False),
    sa.Column('model_set_id', sa.String(length=64), nullable=True),
    sa.Column('model_set_name', sa.Text(), nullable=True),
    sa.Column('model_name', sa.Text(), nullable=True),
    sa.Column('model', sa.Text(), nullable=True, comment='base model version name'),
    sa.Column('status', sa.String(length=32), nullable=True, comment='Ready, Creating, Fail'),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('source_type', sa.String(length=32), nullable=True, comment='Train, Acceleration, Import, PlatformPreset'),
    sa.Column('train_task_id', sa.Text(), nullable=True),
    sa.Column('acceleration_task_id', sa.Text(), nullable=True),
    sa.Column('import_model_version_bos_url', sa.Text(), nullable=True),
    sa.Column('model_application_type', sa.String(length=32), nullable=True),
    sa.Column('input_tokens', sa.BigInteger(), nullable=True),
    sa.Column('output_tokens', sa.BigInteger(), nullable=True),
    sa.Column('character_limit', sa.BigInteger(), nullable=True),
    sa.Column('query_tokens', sa.BigInteger(), nullable=True),
    sa.Column('query_character_limit', sa.BigInteger(), nullable=True),
    sa.Column('document_tokens', sa.BigInteger(), nullable=True),
    sa.Column('document_character_limit', sa.BigInteger(), nullable=True),
    sa.Column('is_support_deploy', sa.Boolean(), nullable=True),
    sa.Column('is_support_model_comp', sa.Boolean(), nullable=True),
    sa.Column('is_support_evaluation', sa.Boolean(), nullable=True),
    sa.Column('sampling_strategy', sa.String(length=64), nullable=True),
    sa.Column('num_beams', sa.Integer(), nullable=True),
    sa.Column('top_logprobs', sa.Integer(), nullable=True),
    sa.Column('model_comp_configs', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=True),
    sa.Column('create_time', sa.DateTime(timezone=True), nullable=True),
    sa.Column('modify_time', sa.DateTime(timezone=True), nullable=True),
    sa.Column('raw', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=False, comment='the API object as last stored'),
    sa.Column('first_seen_run_id', sa.Integer(), nullable=False),
    sa.Column('last_seen_run_id', sa.Integer(), nullable=False, comment='the last run that found this entity new, changed or back'),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('deleted_run_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['deleted_run_id'], ['sync_runs.run_id'], name=op.f('fk_model_versions_deleted_run_id_sync_runs')),
    sa.ForeignKeyConstraint(['first_seen_run_id'], ['sync_runs.run_id'], name=op.f('fk_model_versions_first_seen_run_id_sync_runs')),
    sa.ForeignKeyConstraint(['last_seen_run_id'], ['sync_runs.run_id'], name=op.f('fk_model_versions_last_seen_run_id_sync_runs')),
    sa.PrimaryKeyConstraint('model_id', name=op.f('pk_model_versions'))
    )
    with op.batch_alter_table('model_versions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_model_versions_model_set_id'), ['model_set_id'], unique=False)

    op.create_table('model_versions_history',
    sa.Column('history_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('model_id', sa.String(length=64), nullable=False),
    sa.Column('model_set_id', sa.String(length=64), nullable=True),
    sa.Column('model_set_name', sa.Text(), nullable=True),
    sa.Column('model_name', sa.Text(), nullable=True),
    sa.Column('model', sa.Text(), nullable=True, comment='base model version name'),
    sa.Column('status', sa.String(length=32), nullable=True, comment='Ready, Creating, Fail'),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('source_type', sa.String(length=32), nullable=True, comment='Train, Acceleration, Import, PlatformPreset'),
    sa.Column('train_task_id', sa.Text(), nullable=True),
    sa.Column('acceleration_task_id', sa.Text(), nullable=True),
    sa.Column('import_model_version_bos_url', sa.Text(), nullable=True),
    sa.Column('model_application_type', sa.String(length=32), nullable=True),
    sa.Column('input_tokens', sa.BigInteger(), nullable=True),
    sa.Column('output_tokens', sa.BigInteger(), nullable=True),
    sa.Column('character_limit', sa.BigInteger(), nullable=True),
    sa.Column('query_tokens', sa.BigInteger(), nullable=True),
    sa.Column('query_character_limit', sa.BigInteger(), nullable=True),
    sa.Column('document_tokens', sa.BigInteger(), nullable=True),
    sa.Column('document_character_limit', sa.BigInteger(), nullable=True),
    sa.Column('is_support_deploy', sa.Boolean(), nullable=True),
    sa.Column('is_support_model_comp', sa.Boolean(), nullable=True),
    sa.Column('is_support_evaluation', sa.Boolean(), nullable=True),
    sa.Column('sampling_strategy', sa.String(length=64), nullable=True),
    sa.Column('num_beams', sa.Integer(), nullable=True),
    sa.Column('top_logprobs', sa.Integer(), nullable=True),
    sa.Column('model_comp_configs', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=True),
    sa.Column('create_time', sa.DateTime(timezone=True), nullable=True),
    sa.Column('modify_time', sa.DateTime(timezone=True), nullable=True),
    sa.Column('valid_from', sa.DateTime(timezone=True), nullable=False),
    sa.Column('valid_to', sa.DateTime(timezone=True), nullable=True),
    sa.Column('valid_from_run_id', sa.Integer(), nullable=False),
    sa.Column('valid_to_run_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['valid_from_run_id'], ['sync_runs.run_id'], name=op.f('fk_model_versions_history_valid_from_run_id_sync_runs')),
    sa.ForeignKeyConstraint(['valid_to_run_id'], ['sync_runs.run_id'], name=op.f('fk_model_versions_history_valid_to_run_id_sync_runs')),
    sa.PrimaryKeyConstraint('history_id', name=op.f('pk_model_versions_history'))
    )
    with op.batch_alter_table('model_versions_history', schema=None) as batch_op:
        batch_op.create_index('ix_model_versions_history_key_valid_to', ['model_id', 'valid_to'], unique=False)
        batch_op.create_index('ix_model_versions_history_valid_from', ['valid_from'], unique=False)

    op.create_table('sync_errors',
    sa.Column('error_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=True),
    sa.Column('call', sa.String(length=128), nullable=False),
    sa.Column('entity_id', sa.Text(), nullable=True),
    sa.Column('code', sa.String(length=64), nullable=True),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['sync_runs.run_id'], name=op.f('fk_sync_errors_run_id_sync_runs')),
    sa.PrimaryKeyConstraint('error_id', name=op.f('pk_sync_errors'))
    )
    with op.batch_alter_table('sync_errors', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sync_errors_run_id'), ['run_id'], unique=False)


    for table in ENTITY_TABLES:
        # Stable names for BI: what exists now. Table names are constants, not input.
        op.execute(f"CREATE VIEW current_{table} AS SELECT * FROM {table} WHERE deleted_at IS NULL")


def downgrade() -> None:
    for table in ENTITY_TABLES:
        op.execute(f"DROP VIEW IF EXISTS current_{table}")
    with op.batch_alter_table('sync_errors', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sync_errors_run_id'))

    op.drop_table('sync_errors')
    with op.batch_alter_table('model_versions_history', schema=None) as batch_op:
        batch_op.drop_index('ix_model_versions_history_valid_from')
        batch_op.drop_index('ix_model_versions_history_key_valid_to')

    op.drop_table('model_versions_history')
    with op.batch_alter_table('model_versions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_model_versions_model_set_id'))

    op.drop_table('model_versions')
    with op.batch_alter_table('model_sets_history', schema=None) as batch_op:
        batch_op.drop_index('ix_model_sets_history_valid_from')
        batch_op.drop_index('ix_model_sets_history_key_valid_to')

    op.drop_table('model_sets_history')
    op.drop_table('model_sets')
    with op.batch_alter_table('model_exports_history', schema=None) as batch_op:
        batch_op.drop_index('ix_model_exports_history_valid_from')
        batch_op.drop_index('ix_model_exports_history_key_valid_to')

    op.drop_table('model_exports_history')
    op.drop_table('model_exports')
    with op.batch_alter_table('eval_result_exports_history', schema=None) as batch_op:
        batch_op.drop_index('ix_eval_result_exports_history_valid_from')
        batch_op.drop_index('ix_eval_result_exports_history_key_valid_to')

    op.drop_table('eval_result_exports_history')
    with op.batch_alter_table('eval_result_exports', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_eval_result_exports_export_id_str'))

    op.drop_table('eval_result_exports')
    with op.batch_alter_table('compression_tasks_history', schema=None) as batch_op:
        batch_op.drop_index('ix_compression_tasks_history_valid_from')
        batch_op.drop_index('ix_compression_tasks_history_key_valid_to')

    op.drop_table('compression_tasks_history')
    with op.batch_alter_table('compression_tasks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_compression_tasks_source_model_id'))

    op.drop_table('compression_tasks')
    with op.batch_alter_table('changes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_changes_run_id'))
        batch_op.drop_index('ix_changes_kind_entity_id')

    op.drop_table('changes')
    op.drop_table('tracked_eval_exports')
    with op.batch_alter_table('sync_runs', schema=None) as batch_op:
        batch_op.drop_index('ix_sync_runs_started_at')

    op.drop_table('sync_runs')
