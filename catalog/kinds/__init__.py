"""The registry of entity kinds: one module per kind, listed here once, parents first.

Everything that handles kinds (the schema, the walk, the writer, the delete rules, progress,
reports, the fake server) iterates this registry; adding a kind is adding its module here, a
migration for its tables, and fake data.
"""

from __future__ import annotations

from catalog.kinds import (
    compression_tasks,
    eval_result_exports,
    eval_task_reports,
    eval_tasks,
    fine_tuning_jobs,
    fine_tuning_tasks,
    model_exports,
    model_sets,
    model_versions,
    services,
)
from catalog.kinds.base import DeleteView, Kind, Walk

#: Parents before children: the walk and the delete rules rely on that order.
REGISTRY: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        model_sets.KIND,
        model_versions.KIND,
        compression_tasks.KIND,
        model_exports.KIND,
        eval_result_exports.KIND,
        fine_tuning_jobs.KIND,
        fine_tuning_tasks.KIND,
        eval_tasks.KIND,
        eval_task_reports.KIND,
        services.KIND,
    )
}
KINDS: tuple[str, ...] = tuple(REGISTRY)

__all__ = ["KINDS", "REGISTRY", "DeleteView", "Kind", "Walk"]
