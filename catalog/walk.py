"""The walk: which calls to make, in which order, and what each answer means for the catalog.

Every call is a small task handed to ``submit`` (a worker pool in a sync, a plain loop in tests),
and every outcome is an event handed to ``emit``: a record to store, a scope whose walk completed
(only inside such a scope may the run delete what it did not see), or a failure. The walker
holds no rows itself, so memory does not grow with the catalog.

Calls of a full sync: pages of model sets + model sets + 2 x versions + pages of compression
tasks + tracked evaluation exports. A scoped sync (``--model-set``) lists compression tasks per
version with ``sourceModelId`` instead of all of them.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from catalog import normalize
from catalog.api.paging import iter_pages
from catalog.errors import ApiError, ConfigError

LIST_ACTIONS = {False: "DescribeCustomModelSets", True: "DescribeSystemModelSets"}
EVAL_EXPORT_PATH = "/wenxinworkshop/modelrepo/eval/result/export/info"


class Client(Protocol):
    def call(
        self, action: str, body: dict[str, Any], route: str = "/v2/model"
    ) -> dict[str, Any]: ...

    def call_v1(self, path: str, body: dict[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Record:
    kind: str
    row: dict[str, Any]


@dataclass(frozen=True)
class ScopeDone:
    """The walk of ``key`` for ``kind`` completed: unseen entities in it may be deleted."""

    kind: str
    key: str


@dataclass(frozen=True)
class Failure:
    kind: str | None
    call: str
    entity_id: str | None
    message: str
    code: str | None = None
    fatal: bool = False


Event = Record | ScopeDone | Failure
#: Scope keys for whole listings.
ALL_COMPRESSION_TASKS = "*"
CUSTOM_SETS, SYSTEM_SETS = "custom", "system"


@dataclass
class _SetProgress:
    pending: int
    failed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


#: How deep in the walk a task is: a worker pool runs deeper tasks first (``catalog.pool``),
#: which finishes a set's versions before describing the next set and keeps the queue short.
LISTING, SET, VERSION = 0, 1, 2


class Walker:
    def __init__(
        self,
        client: Client,
        submit: Callable[[Callable[[], None], int], None],
        emit: Callable[[Event], None],
        *,
        include_system: bool = False,
        page_size: int = 100,
    ) -> None:
        self.client = client
        self.submit = submit
        self.emit = emit
        self.include_system = include_system
        self.page_size = page_size

    # -- entry points ------------------------------------------------------------

    def resolve_model_sets(self, refs: Sequence[str]) -> list[dict[str, Any]]:
        """DescribeModelSet for each ``--model-set`` (an ``am-`` id or a name), before the run.

        An unknown one is a ``ConfigError``: a typo must not start a run that then deletes nothing
        and says nothing.
        """
        found = []
        for ref in refs:
            body = {"modelSetId": ref} if ref.startswith("am-") else {"modelSetName": ref}
            try:
                found.append(self.client.call("DescribeModelSet", body))
            except ApiError as exc:
                if exc.is_not_found:
                    raise ConfigError(
                        f"unknown --model-set {ref!r}: no model set has that id or name"
                    ) from None
                raise
        return found

    def resolve_eval_exports(self, refs: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Fetch each ``--eval-export-id`` given now, before the run, so a wrong one is refused
        instead of being remembered forever; the walk reuses the answers (no second call)."""
        found = {}
        for ref in refs:
            try:
                found[ref] = self.client.call_v1(EVAL_EXPORT_PATH, normalize.eval_ref_body(ref))
            except ApiError as exc:
                if exc.is_not_found:
                    raise ConfigError(
                        f"unknown --eval-export-id {ref!r}: the API has no evaluation export "
                        "with that id"
                    ) from None
                raise
        return found

    def open_set_listing(self, system: bool) -> Iterator[list[dict[str, Any]]]:
        """The set listing with its first page already fetched, so a failure shows before a run."""
        pages = self._set_pages(system)
        first = next(pages)
        return itertools.chain([first], pages)

    def _set_pages(self, system: bool) -> Iterator[list[dict[str, Any]]]:
        return iter_pages(
            self.client, LIST_ACTIONS[system], {}, item_key="modelSetId", max_keys=self.page_size
        )

    def start(
        self,
        scoped_sets: Sequence[dict[str, Any]] | None,
        eval_refs: Sequence[str],
        first_listing: Iterator[list[dict[str, Any]]] | None = None,
        prefetched: Mapping[str, dict[str, Any]] | None = None,
    ) -> None:
        """Submit the first tasks; each submits the ones its answer makes necessary."""
        if scoped_sets is None:
            self.submit(lambda: self._list_sets(system=False, pages=first_listing), LISTING)
            if self.include_system:
                self.submit(lambda: self._list_sets(system=True), LISTING)
            self.submit(lambda: self._list_compression_tasks(None), LISTING)
        else:
            for obj in scoped_sets:
                self.submit(partial(self._scoped_set, obj), SET)
        for ref in eval_refs:
            self.submit(partial(self._eval_export, ref, (prefetched or {}).get(ref)), LISTING)

    # -- tasks ------------------------------------------------------------

    def _fail(self, kind: str | None, call: str, entity: str | None, exc: Exception) -> None:
        if isinstance(exc, ApiError):
            self.emit(Failure(kind, call, entity, str(exc), exc.code or None, fatal=exc.is_auth))
        else:
            where = f"{call} {entity}: " if entity else f"{call}: "
            self.emit(Failure(kind, call, entity, f"{where}malformed answer: {exc}", "Malformed"))

    def _list_sets(self, system: bool, pages: Iterator[list[dict[str, Any]]] | None = None) -> None:
        action = LIST_ACTIONS[system]
        # The listing's scope completes only when the listing AND every listed set's
        # DescribeModelSet succeeded: a set whose describe failed was not recorded as seen, and
        # must not be marked deleted for it. The listing itself holds one count until it ends.
        progress = _SetProgress(pending=1)
        done = ScopeDone("model_set", SYSTEM_SETS if system else CUSTOM_SETS)
        ok = True
        try:
            for page in pages if pages is not None else self._set_pages(system):
                for item in page:
                    set_id = str(item["modelSetId"])
                    with progress.lock:
                        progress.pending += 1
                    self.submit(
                        partial(self._describe_set, set_id, system, progress, done), SET
                    )
        except (ApiError, normalize.NormalizeError) as exc:
            ok = False
            self._fail("model_set", action, None, exc)
        self._settle(progress, ok, done)

    def _settle(self, progress: _SetProgress, ok: bool, done: ScopeDone) -> None:
        """Count one part of a scope finished; emit ``done`` when all finished and none failed."""
        with progress.lock:
            progress.pending -= 1
            progress.failed = progress.failed or not ok
            complete = progress.pending == 0 and not progress.failed
        if complete:
            self.emit(done)

    def _describe_set(
        self, set_id: str, system: bool, progress: _SetProgress, done: ScopeDone
    ) -> None:
        ok = True
        try:
            obj = self.client.call("DescribeModelSet", {"modelSetId": set_id})
        except ApiError as exc:
            if not exc.is_not_found:  # gone since it was listed: nothing to record
                ok = False
                self._fail("model_set", "DescribeModelSet", set_id, exc)
        else:
            ok = self._model_set(obj, scoped=False, system=system)
        self._settle(progress, ok, done)

    def _scoped_set(self, obj: dict[str, Any]) -> None:
        self._model_set(obj, scoped=True)

    def _model_set(self, obj: dict[str, Any], scoped: bool, system: bool | None = None) -> bool:
        """Record one set and submit its versions; False when its answer could not be used."""
        is_system = system if system is not None else obj.get("source") == "System"
        try:
            row = normalize.model_set_row(obj, is_system=is_system)
        except normalize.NormalizeError as exc:
            self._fail("model_set", "DescribeModelSet", str(obj.get("modelSetId")), exc)
            return False
        self.emit(Record("model_set", row))
        set_id = row["model_set_id"]
        model_ids: list[str] = row["model_ids"]
        if not model_ids:
            self.emit(ScopeDone("model_version", set_id))
            return True
        progress = _SetProgress(pending=len(model_ids))
        for model_id in model_ids:
            self.submit(partial(self._describe_version, set_id, model_id, progress), VERSION)
            self.submit(partial(self._export, model_id), VERSION)
            if scoped:
                self.submit(partial(self._list_compression_tasks, model_id), VERSION)
        return True

    def _describe_version(self, set_id: str, model_id: str, progress: _SetProgress) -> None:
        ok = True
        try:
            obj = self.client.call("DescribeModel", {"modelId": model_id})
            self.emit(Record("model_version", normalize.model_version_row(obj)))
        except ApiError as exc:
            if not exc.is_not_found:
                ok = False
                self._fail("model_version", "DescribeModel", model_id, exc)
        except normalize.NormalizeError as exc:
            ok = False
            self._fail("model_version", "DescribeModel", model_id, exc)
        with progress.lock:
            progress.pending -= 1
            progress.failed = progress.failed or not ok
            done = progress.pending == 0 and not progress.failed
        if done:
            self.emit(ScopeDone("model_version", set_id))

    def _export(self, model_id: str) -> None:
        try:
            obj = self.client.call("DescribeModelExportTask", {"modelId": model_id})
            row = normalize.model_export_row(model_id, obj)
        except ApiError as exc:
            if not exc.is_not_found:
                self._fail("model_export", "DescribeModelExportTask", model_id, exc)
                return
            row = None
        except normalize.NormalizeError as exc:
            self._fail("model_export", "DescribeModelExportTask", model_id, exc)
            return
        if row is not None:
            self.emit(Record("model_export", row))
        self.emit(ScopeDone("model_export", model_id))

    def _list_compression_tasks(self, source_model_id: str | None) -> None:
        body = {"sourceModelId": source_model_id} if source_model_id else {}
        action = "DescribeModelCompTasks"
        complete = True
        try:
            for page in iter_pages(
                self.client, action, body, item_key="id", max_keys=self.page_size
            ):
                for item in page:
                    try:
                        row = normalize.compression_task_row(item)
                    except normalize.NormalizeError as exc:  # one bad item, not the listing
                        complete = False
                        self._fail("compression_task", action, str(item.get("id")), exc)
                        continue
                    self.emit(Record("compression_task", row))
        except ApiError as exc:
            self._fail("compression_task", action, source_model_id, exc)
            return
        if complete:
            self.emit(ScopeDone("compression_task", source_model_id or ALL_COMPRESSION_TASKS))

    def _eval_export(self, ref: str, obj: dict[str, Any] | None = None) -> None:
        call = "EvalResultExportInfo"
        try:
            if obj is None:
                obj = self.client.call_v1(EVAL_EXPORT_PATH, normalize.eval_ref_body(ref))
            self.emit(Record("eval_result_export", normalize.eval_result_export_row(obj)))
        except ApiError as exc:
            if not exc.is_not_found:
                self._fail("eval_result_export", call, ref, exc)
                return
        except normalize.NormalizeError as exc:
            self._fail("eval_result_export", call, ref, exc)
            return
        self.emit(ScopeDone("eval_result_export", ref))
