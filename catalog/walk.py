"""The walk: which calls to make, in which order, and what each answer means for the catalog.

Every call is a small task handed to ``submit`` (a worker pool in a sync, a plain loop in tests),
and every outcome is an event handed to ``emit``: a record to store, a scope whose listing
completed (only inside such a scope may the run delete what the listing did not name), an id a
listing named but whose answer could not be recorded (``Keep``: it must not be deleted), or a
failure. The walker holds no rows itself, so memory does not grow with the catalog.

Only the documented calls are made (``docs/api.md``), and no error answer of any call ever means
"deleted": the documents define no "not found" code for these calls, and a permission change or
a moved route must not empty a catalog. Deletions come from complete listings alone: the set
listings for sets, a set's ``modelIds`` for its versions, the compression task listing for tasks,
``hasRecord: false`` for an export, and the tracked list for evaluation exports.

Calls of a full sync: pages of custom sets + 2 x custom versions (DescribeModel, export state) +
pages of compression tasks + one DescribeModelCompTask per failed task that is new or changed +
tracked evaluation exports; ``--include-system`` adds pages of preset sets + preset versions
(DescribeSystemModel; preset versions have no documented export call). A scoped sync
(``--model-set``) resolves each set with one describe call and lists compression tasks per
version with ``sourceModelId`` instead of all of them.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Protocol

from catalog import normalize
from catalog.api.paging import iter_pages
from catalog.bulk import answer_hash
from catalog.documented import DriftLog
from catalog.errors import ApiError, ConfigError

LIST_ACTIONS = {False: "DescribeCustomModelSets", True: "DescribeSystemModelSets"}
SET_ACTIONS = {False: "DescribeModelSet", True: "DescribeSystemModelSet"}
VERSION_ACTIONS = {False: "DescribeModel", True: "DescribeSystemModel"}
COMP_TASKS, COMP_TASK = "DescribeModelCompTasks", "DescribeModelCompTask"
EXPORT = "DescribeModelExportTask"
EVAL_EXPORT_PATH = "/wenxinworkshop/modelrepo/eval/result/export/info"
EVAL_EXPORT_CALL = "EvalResultExportInfo"

ALL_KINDS = ("model_set", "model_version", "compression_task", "model_export", "eval_result_export")
#: The IAM policies the vendor's pages name for each kind's calls (REFERENCE.md section 0), so a
#: permission failure can say which policy the key lacks.
POLICIES = {
    "model_set": "QianfanReadAccessPolicy or QianfanModelTuningReadAccessPolicy",
    "model_version": "QianfanReadAccessPolicy or QianfanModelTuningReadAccessPolicy",
    "compression_task": "QianfanReadAccessPolicy or QianfanModelTuningReadAccessPolicy",
    "model_export": "a FullControl policy (the documents give DescribeModelExportTask to no "
    "read-only policy)",
    "eval_result_export": "a policy the documents do not name for this call",
}


class Client(Protocol):
    def call(
        self, action: str, body: dict[str, Any], route: str = "/v2/model"
    ) -> dict[str, Any]: ...

    def call_v1(self, path: str, body: dict[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Record:
    """One answer for the store, keyed as stored, with the hash of the answer.

    ``build`` turns the answer into a row. The writer calls it only when the hash differs from
    the stored one: on a run where little changed, normalising every answer again was most of
    the work. Kinds whose walk needs the row (a set's version ids) build it at once.
    """

    kind: str
    key: Any
    obj: Mapping[str, Any]
    raw_hash: str
    build: Callable[[], dict[str, Any]]
    call: str
    #: The answer already went through the one detail call its kind may need (a failed task's):
    #: written as it is, never skipped for an equal hash.
    detailed: bool = False

    @classmethod
    def of(cls, kind: str, key: Any, obj: Mapping[str, Any], row: dict[str, Any],
           call: str) -> Record:
        """A record whose row is already built."""
        return cls(kind, key, obj, answer_hash(obj), lambda: row, call)


@dataclass(frozen=True)
class ScopeDone:
    """The listing of ``key`` for ``kind`` completed: what it did not name may be deleted."""

    kind: str
    key: str
    #: How many items the listing named, when the scope is a whole listing (for progress).
    count: int | None = None


@dataclass(frozen=True)
class Keep:
    """A complete listing named ``key`` but its answer could not be recorded: keep it as is."""

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
    #: The error behind it, so a fatal one can be raised from it (the CLI reads its cause).
    error: Exception | None = field(default=None, compare=False, repr=False)


Event = Record | ScopeDone | Keep | Failure
#: Scope keys for whole listings.
ALL_COMPRESSION_TASKS = "*"
CUSTOM_SETS, SYSTEM_SETS = "custom", "system"

#: How deep in the walk a task is: a worker pool runs deeper tasks first (``catalog.pool``),
#: which finishes a set's versions before the next page of sets and keeps the queue short.
LISTING, SET, VERSION = 0, 1, 2


@dataclass
class ScopedSet:
    """A ``--model-set`` as resolved before the run: its describe answer and which call gave it."""

    obj: dict[str, Any]
    system: bool


@dataclass
class _Denied:
    kinds: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str) -> bool:
        """Mark ``kind`` denied; True the first time, so the run says it once."""
        with self.lock:
            first = kind not in self.kinds
            self.kinds.add(kind)
            return first


class Walker:
    def __init__(
        self,
        client: Client,
        submit: Callable[[Callable[[], None], int], None],
        emit: Callable[[Event], None],
        *,
        include_system: bool = False,
        page_size: int = 100,
        kinds: Collection[str] = ALL_KINDS,
        drift: DriftLog | None = None,
    ) -> None:
        self.client = client
        self.submit = submit
        self.emit = emit
        self.include_system = include_system
        self.page_size = page_size
        self.kinds = frozenset(kinds)
        self.drift = drift if drift is not None else DriftLog()
        self._denied = _Denied()

    @property
    def denied(self) -> frozenset[str]:
        """Kinds the key was not allowed to read in this run (nothing of them is deleted)."""
        with self._denied.lock:
            return frozenset(self._denied.kinds)

    # -- before the run ------------------------------------------------------------

    def resolve_model_sets(self, refs: Sequence[str]) -> list[ScopedSet]:
        """Describe each ``--model-set`` (an ``am-`` id or a name) before the run.

        The custom call first, then the preset one; a ref neither answers is a ``ConfigError``,
        so a typo does not start a run that then deletes nothing and says nothing. Credentials
        refused or a network down are raised as they are.
        """
        found = []
        for ref in refs:
            body = {"modelSetId": ref} if ref.startswith("am-") else {"modelSetName": ref}
            answers = []
            for system in (False, True):
                try:
                    obj = self.client.call(SET_ACTIONS[system], body)
                except ApiError as exc:
                    if exc.is_auth or exc.retryable:
                        raise
                    answers.append(f"{SET_ACTIONS[system]}: {exc.message} [{exc.code}]")
                    continue
                found.append(ScopedSet(obj, system or obj.get("source") == "System"))
                break
            else:
                raise ConfigError(
                    f"unknown --model-set {ref!r}: no custom or preset model set has that id or "
                    f"name ({'; '.join(answers)})"
                )
        return found

    def resolve_eval_exports(self, refs: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Fetch each new ``--eval-export-id`` before the run, so a wrong one is refused
        instead of being tracked forever; the walk reuses the answers (no second call)."""
        found = {}
        for ref in refs:
            try:
                found[ref] = self.client.call_v1(EVAL_EXPORT_PATH, normalize.eval_ref_body(ref))
            except ApiError as exc:
                if exc.is_auth or exc.retryable:
                    raise
                raise ConfigError(
                    f"unknown --eval-export-id {ref!r}: the API did not answer it "
                    f"({exc.message} [{exc.code}])"
                ) from None
        return found

    def open_first_listing(self, scoped: bool) -> Iterator[list[dict[str, Any]]] | None:
        """The run's first listing with its first page fetched, so a wrong key or a dead
        network shows before anything is written. ``None`` when the run lists nothing."""
        if scoped:
            return None
        if "model_set" in self.kinds:
            pages = self._set_pages(system=False)
        elif "compression_task" in self.kinds:
            pages = self._comp_task_pages(None)
        else:
            return None
        first = next(pages, [])
        return itertools.chain([first], pages)

    # -- entry point ------------------------------------------------------------

    def start(
        self,
        scoped_sets: Sequence[ScopedSet] | None,
        eval_refs: Sequence[str],
        first_listing: Iterator[list[dict[str, Any]]] | None = None,
        prefetched: Mapping[str, dict[str, Any]] | None = None,
    ) -> None:
        """Submit the first tasks; each submits the ones its answer makes necessary."""
        if scoped_sets is None:
            if "model_set" in self.kinds:
                self.submit(partial(self._list_sets, False, first_listing), LISTING)
                first_listing = None
                if self.include_system:
                    self.submit(partial(self._list_sets, True), LISTING)
            if "compression_task" in self.kinds:
                self.submit(partial(self._list_compression_tasks, None, first_listing), LISTING)
        elif "model_set" in self.kinds:
            for scoped in scoped_sets:
                self.submit(partial(self._scoped_set, scoped), SET)
        if "eval_result_export" in self.kinds:
            for ref in eval_refs:
                self.submit(partial(self._eval_export, ref, (prefetched or {}).get(ref)), LISTING)

    def describe_failed_task(self, record: Record) -> None:
        """Fetch a failed task's reason (the listing lacks it), then record the task.

        The writer asks for this only for a failed task that is new or changed since it was last
        stored, so a task is described once, not every run.
        """
        self.submit(partial(self._failed_task, record), VERSION)

    # -- tasks ------------------------------------------------------------

    def _fail(self, kind: str, call: str, entity: str | None, exc: Exception) -> None:
        """Report one failed answer; a permission refusal turns the kind off for this run."""
        if isinstance(exc, ApiError):
            if exc.is_permission:
                if self._denied.add(kind):
                    self.emit(
                        Failure(
                            kind,
                            call,
                            None,
                            f"the access key may not call {call}, so {kind} was not read and "
                            f"nothing of it is deleted in this run; the documents name "
                            f"{POLICIES[kind]} for it (or leave it out with --kinds)",
                            exc.code,
                        )
                    )
                return
            self.emit(
                Failure(kind, call, entity, str(exc), exc.code or None, exc.is_auth, exc)
            )
        else:
            where = f"{call} {entity}: " if entity else f"{call}: "
            self.emit(Failure(kind, call, entity, f"{where}malformed answer: {exc}", "Malformed"))

    def _set_pages(self, system: bool) -> Iterator[list[dict[str, Any]]]:
        return iter_pages(
            self.client, LIST_ACTIONS[system], {}, item_key="modelSetId", max_keys=self.page_size
        )

    def _list_sets(self, system: bool, pages: Iterator[list[dict[str, Any]]] | None = None) -> None:
        """Custom or preset sets, recorded from their listing items (they carry every field a
        describe call would add but ``source``, which the listing itself implies)."""
        action = LIST_ACTIONS[system]
        count = 0
        try:
            for page in pages if pages is not None else self._set_pages(system):
                count += len(page)
                for item in page:
                    # A task per set, not its versions' calls at once: the pool runs versions
                    # first, so its queue holds sets waiting, not every version of the page.
                    self.submit(partial(self._model_set, item, action, system, False), SET)
        except (ApiError, normalize.NormalizeError) as exc:
            self._fail("model_set", action, None, exc)
            return
        self.emit(ScopeDone("model_set", SYSTEM_SETS if system else CUSTOM_SETS, count))

    def _scoped_set(self, scoped: ScopedSet) -> None:
        self._model_set(scoped.obj, SET_ACTIONS[scoped.system], scoped.system, scoped=True)

    def _model_set(self, obj: dict[str, Any], call: str, system: bool, scoped: bool) -> None:
        """Record one set, then submit its versions' calls."""
        set_id = str(obj.get("modelSetId"))
        self.drift.check("model_set", call, obj, set_id)
        try:
            row = normalize.model_set_row(obj, is_system=system)
        except normalize.NormalizeError as exc:
            self._fail("model_set", call, set_id, exc)
            if obj.get("modelSetId"):
                self.emit(Keep("model_set", set_id))
            return  # its versions are neither walked nor deleted: their scope stays open
        self.emit(Record.of("model_set", row["model_set_id"], obj, row, call))
        if "model_version" in self.kinds:
            self.emit(ScopeDone("model_version", row["model_set_id"]))
        for model_id in row["model_ids"]:
            if "model_version" in self.kinds:
                self.submit(partial(self._describe_version, model_id, system), VERSION)
            if "model_export" in self.kinds and not system:
                self.submit(partial(self._export, model_id), VERSION)
            if scoped and "compression_task" in self.kinds:
                self.submit(partial(self._list_compression_tasks, model_id), VERSION)

    def _describe_version(self, model_id: str, system: bool) -> None:
        if "model_version" in self._denied.kinds:
            return
        call = VERSION_ACTIONS[system]
        try:
            obj = self.client.call(call, {"modelId": model_id})
        except ApiError as exc:
            self._fail("model_version", call, model_id, exc)
            self.emit(Keep("model_version", model_id))
            return
        self.drift.check("model_version", call, obj, model_id)
        build = partial(normalize.model_version_row, obj)  # by the writer, if it changed
        self.emit(Record("model_version", model_id, obj, answer_hash(obj), build, call))

    def _export(self, model_id: str) -> None:
        if "model_export" in self._denied.kinds:
            return
        try:
            obj = self.client.call(EXPORT, {"modelId": model_id})
            self.drift.check("model_export", EXPORT, obj, model_id)
            row = normalize.model_export_row(model_id, obj)
        except (ApiError, normalize.NormalizeError) as exc:
            self._fail("model_export", EXPORT, model_id, exc)
            return
        if row is not None:
            self.emit(Record.of("model_export", model_id, obj, row, EXPORT))
        self.emit(ScopeDone("model_export", model_id))  # hasRecord false: none exists now

    def _comp_task_pages(self, source_model_id: str | None) -> Iterator[list[dict[str, Any]]]:
        body = {"sourceModelId": source_model_id} if source_model_id else {}
        return iter_pages(self.client, COMP_TASKS, body, item_key="id", max_keys=self.page_size)

    def _list_compression_tasks(
        self, source_model_id: str | None, pages: Iterator[list[dict[str, Any]]] | None = None
    ) -> None:
        count = 0
        try:
            for page in pages if pages is not None else self._comp_task_pages(source_model_id):
                count += len(page)
                for item in page:
                    task_id = str(item.get("id"))
                    self.drift.check("compression_task", COMP_TASKS, item, task_id)
                    if isinstance(item.get("id"), bool) or item.get("id") in (None, ""):
                        self._fail("compression_task", COMP_TASKS, task_id,
                                   normalize.NormalizeError("id: missing or not an id"))
                        continue
                    # Normalised by the writer, and only if the answer changed (see Record).
                    self.emit(
                        Record(
                            "compression_task",
                            task_id,
                            item,
                            answer_hash(item),
                            partial(normalize.compression_task_row, item),
                            COMP_TASKS,
                        )
                    )
        except ApiError as exc:
            self._fail("compression_task", COMP_TASKS, source_model_id, exc)
            return
        self.emit(ScopeDone("compression_task", source_model_id or ALL_COMPRESSION_TASKS, count))

    def _failed_task(self, listed: Record) -> None:
        task_id = listed.key
        # If the detail fails, the listing's answer is still recorded; its reason stays
        # unknown (NULL) and the next run asks again.
        build = listed.build
        if "compression_task" not in self._denied.kinds:
            try:
                obj = self.client.call(COMP_TASK, {"modelCompTaskId": task_id})
                self.drift.check("compression_task", COMP_TASK, obj, task_id)
                # The detail answers for the same task as the listing item: its fields win.
                row = normalize.compression_task_row({**listed.obj, **obj})
                build = partial(lambda built: built, row)
            except (ApiError, normalize.NormalizeError) as exc:
                self._fail("compression_task", COMP_TASK, task_id, exc)
        # The listing item's hash: the next run compares the listing's answer with it.
        self.emit(replace(listed, build=build, detailed=True))

    def _eval_export(self, ref: str, obj: dict[str, Any] | None = None) -> None:
        if "eval_result_export" in self._denied.kinds:
            return
        try:
            if obj is None:
                obj = self.client.call_v1(EVAL_EXPORT_PATH, normalize.eval_ref_body(ref))
            self.drift.check("eval_result_export", EVAL_EXPORT_CALL, obj, ref)
            row = normalize.eval_result_export_row(obj)
            self.emit(Record.of("eval_result_export", row["export_id"], obj, row,
                                EVAL_EXPORT_CALL))
        except (ApiError, normalize.NormalizeError) as exc:
            self._fail("eval_result_export", EVAL_EXPORT_CALL, ref, exc)
