"""The registry of entity kinds: one module per kind, listed here once, parents first.

Everything that handles kinds (the schema, the walk, the writer, the delete rules, progress,
reports, the fake server) iterates this registry; adding a kind is adding its module here, a
migration for its tables, and fake data.
"""

from __future__ import annotations

from collections.abc import Collection

from catalog.kinds import (
    compression_tasks,
    eval_result_export_tasks,
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
        eval_result_export_tasks.KIND,
        services.KIND,
    )
}
KINDS: tuple[str, ...] = tuple(REGISTRY)
#: What a sync reads unless ``--kinds`` says otherwise: every kind but the opt-in ones
#: (``Kind.opt_in``).
DEFAULT_KINDS: tuple[str, ...] = tuple(k for k in KINDS if REGISTRY[k].opt_in is None)


def ref_reader(ref: str, enabled: Collection[str]) -> Kind | None:
    """The one kind of ``enabled`` that reads the tracked evaluation export ref ``ref``: one
    that can, unless another that can reads it instead (``RefReader.instead_of``: the V2 call
    for an ``amemt-`` id when its kind is on). One reader, so no ref is asked twice a run and
    none is asked by a call that may not know it while another that can is on."""
    able = [
        kind for kind in REGISTRY.values()
        if kind.reads_refs is not None and kind.name in enabled and kind.reads_refs.takes(ref)
    ]
    replaced = {kind.reads_refs.instead_of for kind in able if kind.reads_refs is not None}
    return next((kind for kind in able if kind.name not in replaced), None)


__all__ = ["DEFAULT_KINDS", "KINDS", "REGISTRY", "DeleteView", "Kind", "Walk", "ref_reader"]
