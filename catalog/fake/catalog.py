"""The fake console's data: a deterministic, mutable catalog of API-shaped objects.

Every object is stored with the vendor's camelCase field names, its several time formats and its
absent-vs-empty fields, so the sync code is exercised against the same irregularities the real
service has. What is stored is the union of what the calls serving that object return; each call
then serves its own documented subset (:meth:`FakeCatalog.view`, field lists below, taken from
``/work/shared/api/REFERENCE.md``): a preset set's listing item has ``description`` but no
``createTime``, a compression task's listing item has no ``failedReason``. ``modelCount`` and
``modelNames`` are derived from the stored versions whenever a set is served, so they cannot drift
from ``modelIds``. A model export's ``downloadUrl`` is stored without its query: the server appends
a freshly signed one on every call, as the real service does with its pre-signed object-store links.

Tests change the catalog between syncs through the mutation API (``add`` / ``change`` / ``remove``
/ ``restore``), and make served answers drift from the documents with :meth:`FakeCatalog.patch`.
Every method takes :attr:`FakeCatalog.lock`, the same lock the server reads under, so a sync never
sees a half-applied mutation.

Beside the model catalog it holds the life around it (REFERENCE §6-§9), in
:data:`LIFECYCLE_KINDS`: fine-tuning jobs and their tasks, evaluation tasks with their reports and
result-export tasks, custom and preset services. They are linked as the lineage questions need: a
``Train`` version's ``sourceInfo.trainTaskId`` names a real fine-tuning task, a report's units name
real versions, an export task's ``evalId`` a real evaluation task, a custom service a real custom
version. They are drawn from their own random stream after the model catalog, so a seed's sets,
versions, compression tasks and exports keep their ids, names and times; only a ``Train``
version's ``trainTaskId`` changes, to name its task.
"""

from __future__ import annotations

import base64
import copy
import json
import random
import threading
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal, overload
from urllib.parse import quote

#: The model catalog's kinds, generated first, from the seed's main random stream (the
#: lifecycle kinds come after, from one of their own). Not every kind a sync reads: a loop over
#: these covers the model catalog only; :data:`ALL_KINDS` is every kind.
KINDS: tuple[str, ...] = (
    "model_set",
    "model_version",
    "compression_task",
    "model_export",
    "eval_result_export",
)
#: Fine-tuning, evaluation and services. Keys: ``fine_tuning_job`` -> ``jobId``;
#: ``fine_tuning_task`` -> ``taskId``; ``eval_task`` -> ``taskId``; ``eval_task_report`` -> the
#: evaluation task's ``taskId`` (one stored report per task, its units a list);
#: ``eval_result_export_task`` -> ``taskId`` (``amemt-``, the V2 call; the V1 ``eval_result_export``
#: is a separate kind); ``service`` (custom) and ``preset_service`` -> ``serviceId``.
LIFECYCLE_KINDS: tuple[str, ...] = (
    "fine_tuning_job",
    "fine_tuning_task",
    "eval_task",
    "eval_task_report",
    "eval_result_export_task",
    "service",
    "preset_service",
)
#: Every kind the catalog stores and the mutation API takes, in the fake's names: preset
#: services are a kind of their own here, rows of the sync's ``service`` kind there.
ALL_KINDS: tuple[str, ...] = KINDS + LIFECYCLE_KINDS

#: Go's zero ``time.Time``: the service's way of saying "no value".
ZERO_TIME = "0001-01-01T00:00:00Z"

CST = timezone(timedelta(hours=8))

_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"

MODEL_VERSION_STATUSES = ("Ready", "Creating", "Fail")
COMP_TASK_STATUSES = ("creating", "running", "succeeded", "failed", "stopping", "stopped")
#: Statuses of a compression task that has ended; only these carry a real ``finishTime``.
COMP_TASK_FINISHED = ("succeeded", "failed", "stopped")
EXPORT_STATES = ("Doing", "Done")  # "Fail" exists but the API does not return failed exports
EVAL_EXPORT_STATES = ("Pending", "Uploading", "Fail", "Done")
SOURCE_TYPES = ("Train", "Acceleration", "Import")
QUANT_WEIGHTS = ("W8A8C4", "W8A8C8", "W8A8C16", "W8A16C16", "W4A16C16")
QUANT_CONFS = ("wint8", "wint4", "W8A16C16", "W4A16C16")
SAMPLING_STRATEGIES = ("multinomialSampling", "beamSearch", "greedySearch")
CAPABILITIES = ("reasoning", "function_call", "web_search")  # REFERENCE §3
# The provider values are not documented (only the field): these are plausible strings.
_PROVIDERS = ("百度", "Meta", "智谱AI", "阿里云", "BAAI")
# Failure reasons are not documented (only the field): realistic-looking text in both languages.
_FAILED_REASONS = (
    "压缩任务运行失败：GPU资源不足，请稍后重试",
    "源模型版本不支持该压缩策略",
    "internal error: task container exited with code 137 (out of memory)",
    "quantization calibration failed: dataset is empty",
    "模型文件校验失败，请检查源模型版本",
)

#: The eval-export status route; its "action" in a call log or recording is this path.
EVAL_ROUTE = "/wenxinworkshop/modelrepo/eval/result/export/info"

# What each call serves of a stored object, in the documents' order (REFERENCE §1-§4). ``None``
# serves the stored object as it is (DescribeModelSet: seed 003; DescribeModel: seed 004;
# DescribeModelExportTask: seed 000; the eval route: seed 001), extra fields included.
CUSTOM_SET_ITEM_FIELDS = (
    "modelSetId",
    "modelSetName",
    "modelType",
    "labels",
    "createTime",
    "modifyTime",
    "modelCount",
    "modelIds",
    "modelNames",
)
SYSTEM_SET_ITEM_FIELDS = (
    "modelSetId",
    "modelSetName",
    "modelType",
    "description",
    "modifyTime",  # the WW page calls it ``time``; QA and the custom page say ``modifyTime``
    "modelCount",
    "modelIds",
    "modelNames",
)
SYSTEM_SET_FIELDS = (
    "modelSetId",
    "modelSetName",
    "modelType",
    "createTime",
    "modifyTime",
    "description",
    "modelIds",
    "modelNames",
)
SYSTEM_MODEL_FIELDS = (
    "modelSetId",
    "modelId",
    "modelName",
    "status",
    "description",
    "createTime",
    "modifyTime",
    "modelApplicationType",
    "tokenLimitations",
    "isSupportDeploy",
    "isSupportModelComp",
    "isSupportEvaluation",
    "capabilities",
    "modelProviders",
)
# Seed 002's item table names the listing's source/output model and create/finish time keys.
# INVENTED: ``config`` in the listing item (what the fake served before the documents were
# checked; it may be the invisible 9th field). ``failedReason`` is documented for the detail.
COMP_TASK_ITEM_FIELDS = (
    "id",
    "name",
    "description",
    "status",
    "sourceModelId",
    "modelId",
    "config",
    "createTime",
    "finishTime",
)
# INVENTED: ``finishTime`` as the detail's invisible 10th field. ``modelId`` is served only
# when the task succeeded (documented); ``failedReason`` is "" unless the task failed (INVENTED:
# the documents do not say what a task that did not fail carries).
COMP_TASK_FIELDS = (
    "id",
    "name",
    "description",
    "status",
    "failedReason",
    "sourceModelId",
    "modelId",
    "config",
    "createTime",
    "finishTime",
)
# ---- fine-tuning (REFERENCE §9)
FT_RUN_STATUSES = ("Running", "Done", "Stopped", "Failed", "Waiting")
#: Statuses of a fine-tuning task that has ended; only these carry a real ``finishDate``.
FT_FINISHED = ("Done", "Stopped", "Failed")
#: SDK-only: the SDK mock's ``finishDate`` of a task that has not finished.
FT_ZERO_DATE = "0000-00-00T00:00:00Z"
TRAIN_MODES = ("SFT", "PostPretrain", "DPO", "KTO")  # SDK-only (TrainMode)
PARAMETER_SCALES = ("FullFineTuning", "PromptTuning", "LoRA")  # SDK-only (TrainParameterScale)
# ---- evaluation (REFERENCE §6, §7)
EVAL_TYPES = ("manual", "auto")
EVAL_TASK_STATES = (
    "Queued",
    "Running",
    "RunningWithManualBegin",
    "RunningWithMetricsCalculating",
    "Successed",  # sic: the vendor's spelling
    "Stopping",
    "Failed",
    "Stopped",
)
EVAL_EXPORT_TASK_STATES = ("Queued", "Running", "Failed", "Succeeded")
EXPORT_CONTENTS = ("prompt", "prediction", "completion", "metrics", "system")
STORAGE_TYPES = ("BOS", "sysStorage")
# ---- services (REFERENCE §8)
SERVICE_RUN_STATUSES = ("New", "Deploying", "Serving", "Failed", "Stopped")
CHARGE_TYPES = ("ComputingUnit", "Tokens")
PAY_TYPES = ("Prepay", "Postpay", "Prepay,Postpay")
CHARGE_STATUSES = ("NotOpen", "Opened", "Free")
RESOURCE_TYPES = ("GPU-I-2", "GPU-I-4", "CPU-I-2")
#: DescribePresetServices' filter values (documented for the filters, not for the items).
PRESET_CHARGE_TYPES = ("TPM", "Tokens", "Calls", "Free")
PRESET_CHARGE_STATUSES = ("NotOpen", "Opened", "Stopped", "Free")

# QA lists six fields; the sixth's name is cut off ("creat..."). INVENTED from the SDK's mock
# (SDK-only): ``createDate``.
FT_JOB_ITEM_FIELDS = ("jobId", "name", "description", "model", "trainMode", "createDate")
# Six documented fields, then what the SDK mock adds (SDK-only): parameterScale, runStatus,
# createDate, finishDate. ``jobName`` / ``jobDescription`` are the job's, derived when served.
FT_TASK_ITEM_FIELDS = (
    "taskId",
    "jobId",
    "jobName",
    "jobDescription",
    "model",
    "trainMode",
    "parameterScale",
    "runStatus",
    "createDate",
    "finishDate",
)
# 11 of the 16 documented fields; ``createDate`` / ``finishDate`` are the SDK mock's (SDK-only);
# the other 3 are not visible and left out. ``runProgress`` only while Running (documented);
# ``metrics`` (a map of metric name -> "16.56%"-style string, SDK-only) only once Done
# (INVENTED: when the detail carries metrics is not documented).
FT_TASK_FIELDS = (
    "taskId",
    "jobId",
    "jobName",
    "jobDescription",
    "model",
    "trainMode",
    "parameterScale",
    "runStatus",
    "runProgress",
    "vdlLink",
    "metrics",
    "createDate",
    "finishDate",
)
# INVENTED, the whole item: the item fields of ``evalTaskList`` are not visible.
EVAL_TASK_ITEM_FIELDS = ("taskId", "taskName", "description", "evalType", "state", "createTime")
# The visible part of DescribeEvalTask; further fields are not visible and left out.
EVAL_TASK_FIELDS = ("taskId", "taskName", "description", "evalType", "state")
#: One unit of DescribeEvalTaskReport's list; ``taskId`` / ``taskName`` are the task's.
EVAL_REPORT_UNIT_FIELDS = (
    "taskId",
    "taskName",
    "modelId",
    "inferDatasetId",
    "evalObjectType",
    "evalMode",
    "effectMetric",
)
# ``storagePath`` is INVENTED: the documents name "a storage path" whose key is not visible.
EVAL_EXPORT_TASK_FIELDS = (
    "taskId",
    "evalId",
    "exportContent",
    "state",
    "storageType",
    "storagePath",
    "downloadUrl",
)
# INVENTED, the whole item: DescribeServices' list key and item fields are not visible.
SERVICE_ITEM_FIELDS = (
    "serviceId",
    "name",
    "modelSetId",
    "modelId",
    "serviceType",
    "runStatus",
    "createTime",
)
# Documented, but the resource object's key and sub-keys: ``resourceConfig{type, replicasCount,
# qps}`` and ``createTime`` are the SDK mock's (SDK-only); its documented region is left out.
SERVICE_FIELDS = (
    "serviceId",
    "baseModel",
    "modelSetId",
    "modelId",
    "name",
    "description",
    "url",
    "endpoint",
    "serviceType",
    "runStatus",
    "updateStatus",
    "chargeType",
    "payType",
    "chargeStatus",
    "resourceConfig",
    "createTime",
)
# Five documented fields; ``chargeType`` / ``chargeStatus`` are INVENTED item fields (they are
# documented filters, so the fake's filters have something to match).
PRESET_SERVICE_FIELDS = (
    "serviceId",
    "name",
    "url",
    "endpoint",
    "serviceType",
    "chargeType",
    "chargeStatus",
)
#: The field :meth:`FakeCatalog.change` moves when given ``status``, per kind that has one.
STATUS_FIELDS: dict[str, str] = {
    "model_version": "status",
    "compression_task": "status",
    "model_export": "state",
    "eval_result_export": "state",
    "fine_tuning_task": "runStatus",
    "eval_task": "state",
    "eval_result_export_task": "state",
    "service": "runStatus",
}
#: DescribeEvalTaskReport's answer is a list of these units, not one object.
REPORT_ACTION = "DescribeEvalTaskReport"

#: Call -> (kind it serves, its fields or ``None`` for the stored object as it is).
VIEWS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "DescribeCustomModelSets": ("model_set", CUSTOM_SET_ITEM_FIELDS),
    "DescribeSystemModelSets": ("model_set", SYSTEM_SET_ITEM_FIELDS),
    "DescribeModelSet": ("model_set", None),
    "DescribeSystemModelSet": ("model_set", SYSTEM_SET_FIELDS),
    "DescribeModel": ("model_version", None),
    "DescribeSystemModel": ("model_version", SYSTEM_MODEL_FIELDS),
    "DescribeModelCompTasks": ("compression_task", COMP_TASK_ITEM_FIELDS),
    "DescribeModelCompTask": ("compression_task", COMP_TASK_FIELDS),
    "DescribeModelExportTask": ("model_export", None),
    EVAL_ROUTE: ("eval_result_export", None),
    "DescribeFineTuningJobs": ("fine_tuning_job", FT_JOB_ITEM_FIELDS),
    "DescribeFineTuningTasks": ("fine_tuning_task", FT_TASK_ITEM_FIELDS),
    "DescribeFineTuningTask": ("fine_tuning_task", FT_TASK_FIELDS),
    "DescribeEvalTasks": ("eval_task", EVAL_TASK_ITEM_FIELDS),
    "DescribeEvalTask": ("eval_task", EVAL_TASK_FIELDS),
    REPORT_ACTION: ("eval_task_report", EVAL_REPORT_UNIT_FIELDS),  # the fields of each unit
    "DescribeEvalResultExportTask": ("eval_result_export_task", EVAL_EXPORT_TASK_FIELDS),
    "DescribeServices": ("service", SERVICE_ITEM_FIELDS),
    "DescribeService": ("service", SERVICE_FIELDS),
    "DescribePresetServices": ("preset_service", PRESET_SERVICE_FIELDS),
}

_BASE_MODELS = (
    "ERNIE-Speed-8K",
    "ERNIE-Lite-8K",
    "ERNIE-3.5-8K",
    "Llama-2-7b-chat",
    "ChatGLM3-6B-32K",
    "Qwen1.5-7B-Chat",
    "bge-reranker-large",
)
_SET_NAMES = (
    "cl_test_hf",
    "客服助手",
    "summary_bot",
    "法律问答",
    "chatglm32k_v",
    "代码补全-内部",
    "rerank_faq",
    "医疗问诊_ERNIE",
    "Café-assistant",
)
_SYSTEM_SET_NAMES = ("ERNIE-Speed", "ERNIE-Lite", "Llama-2", "ChatGLM3", "Qwen1.5", "BGE")
_TASK_NAMES = (
    "BLOOM_摘要生成_量化压缩INT8",
    "demo",
    "压缩任务",
    "sparsify-run",
    "量化 W4 测试",
    "nightly_comp",
    "Ünïcode-täsk",
    "稀疏化🚀实验",
)
_DESCRIPTIONS = ("压缩模型", "test", "", "夜间批量压缩", "for the FAQ bot", "评测用")
_JOB_NAMES = (
    "hj_pptr",
    "ebspda2",
    "客服SFT",
    "legal_lora",
    "summary-dpo",
    "代码补全_精调",
    "Ünïcode-job",
)
_EVAL_NAMES = ("faq_eval", "上线前评估", "nightly-auto-eval", "人工评估_法律", "judge🚀bench")
_SERVICE_NAMES = ("faq-prod", "客服线上", "summary_api", "内部测试服务", "legal_qa_svc")
# INVENTED: the documents give no url or endpoint form; this is the V1 inference url's.
_SERVICE_URL = "https://aip.baidubce.com/rpc/2.0/ai_custom/v1/wenxinworkshop"
# INVENTED: plausible preset services: (name, endpoint, serviceType).
_PRESET_SERVICES = (
    ("ERNIE-4.0-8K", "completions_pro", "chat"),
    ("ERNIE-Speed-8K", "ernie_speed", "chat"),
    ("Stable-Diffusion-XL", "sd_xl", "text2image"),
    ("ERNIE-Lite-8K", "ernie-lite-8k", "chat"),
    ("Fuyu-8B", "fuyu_8b", "image2text"),
    ("Qianfan-Chinese-Llama-2-7B", "qianfan_chinese_llama_2_7b", "completions"),
)
_LABELS = ("faq", "客服", "prod", "staging", "法律", "eval", "hf")


def _with_url(item: dict[str, Any], changed: dict[str, Any], url: str) -> dict[str, Any]:
    """``changed`` with ``downloadUrl`` too when the change moved the item's link."""
    if url != item["downloadUrl"]:
        item["downloadUrl"] = changed["downloadUrl"] = url
    return changed


def format_time(moment: datetime, style: str) -> str:
    """Render ``moment`` the way one of the service's back ends does.

    ``offset``: ``2024-03-22T17:13:33+08:00``; ``fraction``: Go's RFC 3339 with nanoseconds,
    trailing zeros trimmed (``...33.1234+08:00``); ``utc``: ``...Z``; ``cst``: Go's default
    ``String()``, ``2023-06-24 22:19:40 +0800 CST``.
    """
    local = moment.astimezone(CST)
    if style == "offset":
        return local.strftime("%Y-%m-%dT%H:%M:%S+08:00")
    if style == "fraction":
        nanos = f"{local.microsecond * 1000 + (local.second * 7919) % 1000:09d}".rstrip("0")
        fraction = f".{nanos}" if nanos else ""
        return local.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "+08:00"
    if style == "utc":
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if style == "cst":
        return local.strftime("%Y-%m-%d %H:%M:%S +0800 CST")
    raise ValueError(f"unknown time style {style!r}")


def time_style(text: str) -> str:
    """The style ``text`` was written in, so an update keeps an entity's back end consistent."""
    if text.endswith(" CST"):
        return "cst"
    if text.endswith("Z"):
        return "utc"
    return "fraction" if "." in text else "offset"


def _pick_style(rng: random.Random, weights: dict[str, int]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


@dataclass(frozen=True)
class _Patch:
    """A test-made drift: fields added or overwritten, fields dropped, in some calls' answers."""

    fields: Mapping[str, Any]
    drop: frozenset[str]
    actions: frozenset[str] | None  # None: every call that serves the object


def _copied(value: Any) -> Any:
    """A deep copy of JSON-shaped data (what every answer is made of), so a caller that changes
    an answer cannot change the catalog. ``copy.deepcopy``'s generality (memo, any type) costs
    much of the fake's CPU per call, and the benchmarks run it beside the syncs they measure."""
    if isinstance(value, dict):
        return {key: _copied(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copied(item) for item in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return copy.deepcopy(value)


class FakeCatalog:
    """The fake account's model catalog, keyed per kind as in ``docs/architecture.md``.

    Keys: ``model_set`` -> ``modelSetId``; ``model_version`` -> ``modelId``; ``compression_task``
    -> ``id``; ``model_export`` -> the version's ``modelId``; ``eval_result_export`` -> ``exportID``
    (int); the lifecycle kinds' keys are in :data:`LIFECYCLE_KINDS`' comment. Iteration order of
    each kind is the order the listings page through.
    """

    KINDS = KINDS
    LIFECYCLE_KINDS = LIFECYCLE_KINDS
    ALL_KINDS = ALL_KINDS

    def __init__(self, seed: int = 0) -> None:
        self.lock = threading.RLock()
        self._seed = seed
        self._items: dict[str, dict[Any, dict[str, Any]]] = {kind: {} for kind in ALL_KINDS}
        self._patches: dict[tuple[str, Any], list[_Patch]] = {}
        #: Listings built by :meth:`listing`; every mutation empties it.
        self._listings: dict[Any, tuple[list[dict[str, Any]], dict[Any, int]]] = {}
        self._used_ids: set[str] = set()
        self._rng = random.Random(seed)
        # A logical clock, so mutations get later times without depending on the wall clock.
        self._clock = datetime(2024, 6, 1, 9, 0, 0, tzinfo=CST)

    # ------------------------------------------------------------------ generation

    @classmethod
    def generate(
        cls,
        seed: int = 0,
        model_sets: int = 5,
        versions_per_set: int = 2,
        comp_tasks: int = 30,
        eval_exports: int = 3,
        system_sets: int = 2,
        export_share: float = 0.6,
        fine_tuning_jobs: int = 3,
        tasks_per_job: int = 2,
        eval_tasks: int = 4,
        eval_export_tasks: int = 2,
        services: int = 3,
        preset_services: int = 2,
    ) -> FakeCatalog:
        """A catalog that is identical for the same arguments (ids, names, times, states).

        The lifecycle kinds come last, from a random stream of their own, so adding them (or
        changing their counts) leaves the model catalog's ids, names and times as they were.
        """
        catalog = cls(seed)
        rng = catalog._rng
        start = datetime(2023, 6, 1, 8, 0, 0, tzinfo=CST)
        catalog._clock = start
        for index in range(system_sets):
            catalog._new_model_set(rng, versions_per_set, system=True, index=index)
        for index in range(model_sets):
            catalog._new_model_set(rng, versions_per_set, system=False, index=index)
        version_ids = list(catalog._items["model_version"])
        for _ in range(comp_tasks):
            source = rng.choice(version_ids) if version_ids and rng.random() < 0.9 else None
            catalog._new_comp_task(rng, source)
        exported = rng.sample(version_ids, round(len(version_ids) * export_share))
        for model_id in sorted(exported, key=version_ids.index):
            # DescribeModelExportTask serves custom versions only (see the server's LOOKUPS).
            if not catalog.is_preset_version(model_id):
                catalog._new_export(rng, model_id)
        for _ in range(eval_exports):
            catalog._new_eval_export(rng)
        catalog._generate_lifecycle(
            random.Random(f"{seed}/lifecycle"),
            fine_tuning_jobs,
            tasks_per_job,
            eval_tasks,
            eval_export_tasks,
            services,
            preset_services,
        )
        return catalog

    def _side_rng(self, key: str) -> random.Random:
        """Draws for fields added after the generator was written, seeded per object.

        Taking them from the main generator would shift every later draw, so every seed would
        produce a different catalog than it did before those fields existed.
        """
        return random.Random(f"{self._seed}/{key}")

    def _new_id(self, rng: random.Random, prefix: str) -> str:
        while True:
            candidate = prefix + "".join(rng.choices(_ID_ALPHABET, k=12))
            if candidate not in self._used_ids:
                self._used_ids.add(candidate)
                return candidate

    def _tick(self, rng: random.Random) -> datetime:
        """Advance the logical clock by a random amount; entities created later are newer."""
        self._clock += timedelta(
            minutes=rng.randint(1, 600),
            seconds=rng.randint(0, 59),
            microseconds=rng.randint(0, 999_999),
        )
        return self._clock

    def _new_model_set(self, rng: random.Random, versions: int, *, system: bool, index: int) -> str:
        created = self._tick(rng)
        style = _pick_style(rng, {"offset": 7, "utc": 3})
        set_id = self._new_id(rng, "am-")
        names = _SYSTEM_SET_NAMES if system else _SET_NAMES
        base, cycle = names[index % len(names)], index // len(names) + 1
        name = f"{base}-{cycle}" if system and cycle > 1 else base if system else f"{base}{cycle}"
        while any(s["modelSetName"] == name for s in self._items["model_set"].values()):
            name = f"{name}_{rng.randint(2, 99)}"
        item: dict[str, Any] = {
            "modelSetId": set_id,
            "modelSetName": name,
            "source": "System" if system else "UserCreate",
            # modelType values are not documented; these two are in the SDK's (creation) enum.
            "modelType": rng.choice(("Text2Text", "Text2Text", "Text2Text", "TextRepresentation")),
            "labels": sorted(rng.sample(_LABELS, rng.randint(0, 2))),
            "createTime": format_time(created, style),
            "modifyTime": ZERO_TIME
            if rng.random() < 0.3
            else format_time(created + timedelta(hours=rng.randint(1, 200)), style),
            "modelIds": [],
        }
        if system:
            item["description"] = f"{name} 平台预置模型"
        elif rng.random() < 0.5:
            item["description"] = ""  # the vendor's own example shows an empty description
        self._items["model_set"][set_id] = item
        for _ in range(versions):
            self._new_version(rng, set_id)
        return set_id

    def _new_version(self, rng: random.Random, set_id: str) -> str:
        model_set = self._items["model_set"][set_id]
        created = self._tick(rng)
        style = _pick_style(rng, {"offset": 5, "fraction": 3, "utc": 2})
        model_id = self._new_id(rng, "amv-")
        system = model_set["source"] == "System"
        app_type = (
            "reranker"
            if model_set["modelType"] == "TextRepresentation"
            else rng.choice(("chat", "chat", "completion"))
        )
        item: dict[str, Any] = {
            "modelSetId": set_id,
            "modelSetName": model_set["modelSetName"],
            "modelId": model_id,
            "modelName": f"V{len(model_set['modelIds']) + 1}",
            "model": "bge-reranker-large"
            if app_type == "reranker"
            else rng.choice(_BASE_MODELS[:-1]),
        }
        if rng.random() < 0.7:
            item["description"] = rng.choice(("clc_test_publish", "上线版本", "nightly", "α测试"))
        item["status"] = "Ready" if system else rng.choice(("Ready", "Ready", "Creating", "Fail"))
        item["sourceInfo"] = self._source_info(rng, system)
        item["modelApplicationType"] = app_type
        item["tokenLimitations"] = self._token_limits(rng, app_type)
        item["isSupportDeploy"] = rng.random() < 0.8
        item["isSupportModelComp"] = rng.random() < 0.5
        item["isSupportEvaluation"] = rng.random() < 0.7
        if rng.random() < 0.4:
            item["advancedSettings"] = self._advanced_settings(rng)
        item["modelCompConfigs"] = self._comp_configs(rng)
        item["createTime"] = format_time(created, style)
        item["modifyTime"] = (
            ZERO_TIME
            if rng.random() < 0.15
            else format_time(created + timedelta(minutes=rng.randint(1, 9000)), style)
        )
        if system:
            # DescribeSystemModel documents these (REFERENCE §3), and a description that is not
            # said to be omitted when empty.
            side = self._side_rng(model_id)
            item.setdefault("description", f"{model_set['modelSetName']} {item['modelName']}")
            item["capabilities"] = sorted(side.sample(CAPABILITIES, side.randint(0, 3)))
            item["modelProviders"] = [side.choice(_PROVIDERS)]
        self._items["model_version"][model_id] = item
        model_set["modelIds"].append(model_id)
        if item["sourceInfo"]["sourceType"] == "Train":
            # A no-op while generating (no task yet); a stream of its own, so the caller's
            # generator draws what it always drew.
            self._link_train_source(model_id, self._side_rng(model_id))
        return model_id

    def _source_info(self, rng: random.Random, system: bool) -> dict[str, Any]:
        if system:
            return {"sourceType": "PlatformPreset"}
        source_type = rng.choice(SOURCE_TYPES)
        if source_type == "Train":
            return {"sourceType": "Train", "trainTaskId": str(rng.randint(100, 99999))}
        if source_type == "Acceleration":
            return {"sourceType": "Acceleration", "accelerationTaskId": self._new_id(rng, "amva-")}
        bucket_path = "".join(rng.choices(_ID_ALPHABET, k=8))
        return {
            "sourceType": "Import",
            "importModelVersionBosUrl": f"bos:/qianfan-import/{bucket_path}/model/",
        }

    @staticmethod
    def _token_limits(rng: random.Random, app_type: str) -> dict[str, Any]:
        if app_type == "reranker":
            return {
                "reranker": {
                    "queryTokens": rng.choice((512, 1024)),
                    "queryCharacterLimit": rng.choice((1600, 3200)),
                    "documentTokens": rng.choice((512, 2048)),
                    "documentCharacterLimit": rng.choice((4096, 8192)),
                }
            }
        inputs = rng.choice((2048, 4096, 7168, 11200))
        return {
            "trivial": {
                "inputTokens": inputs,
                "outputTokens": rng.choice((1024, 2048, 4096)),
                "characterLimit": inputs * 4,
            }
        }

    @staticmethod
    def _advanced_settings(rng: random.Random) -> dict[str, Any]:
        settings: dict[str, Any] = {"samplingStrategy": rng.choice(SAMPLING_STRATEGIES)}
        if settings["samplingStrategy"] == "beamSearch":
            settings["numBeams"] = rng.randint(2, 15)
        settings["topLogprobs"] = rng.randint(1, 20)
        return settings

    @staticmethod
    def _comp_configs(rng: random.Random) -> list[dict[str, Any]]:
        configs: list[dict[str, Any]] = [
            {"strategy": "Quantization", "weight": weight}
            for weight in rng.sample(QUANT_WEIGHTS, rng.randint(0, 2))
        ]
        if rng.random() < 0.4:
            configs.append({"strategy": "Sparsity", "sparsityRatio": rng.choice((0.3, 0.5, 0.7))})
        return configs

    def _comp_times(
        self, rng: random.Random, status: str, created: datetime, style: str
    ) -> dict[str, str]:
        """``finishTime`` only for tasks that ended; a live task has none or the zero time."""
        if status in COMP_TASK_FINISHED:
            finished = created + timedelta(minutes=rng.randint(5, 300), seconds=rng.randint(0, 59))
            return {"finishTime": format_time(finished, style)}
        return {"finishTime": ZERO_TIME} if rng.random() < 0.5 else {}

    def _new_comp_task(self, rng: random.Random, source_model_id: str | None) -> str:
        created = self._tick(rng)
        style = _pick_style(rng, {"offset": 6, "cst": 4})
        task_id = self._new_id(rng, "amva-")
        status = rng.choice(COMP_TASK_STATUSES)
        if rng.random() < 0.5:
            config: dict[str, Any] = {
                "strategy": "Quantization",
                "quantConf": rng.choice(QUANT_CONFS),
            }
        else:
            config = {"strategy": "Sparsity", "sparsityRatio": rng.choice((0.3, 0.5, 0.7))}
        item: dict[str, Any] = {
            "id": task_id,
            "name": rng.choice(_TASK_NAMES),
            "description": rng.choice(_DESCRIPTIONS),
            "status": status,
            "failedReason": self._side_rng(task_id).choice(_FAILED_REASONS)
            if status == "failed"
            else "",
            "sourceModelId": source_model_id or self._new_id(rng, "amv-"),
            "modelId": self._new_id(rng, "amv-") if status == "succeeded" else "",
            "config": config,
            "createTime": format_time(created, style),
        }
        item.update(self._comp_times(rng, status, created, style))
        self._items["compression_task"][task_id] = item
        return task_id

    def _export_done_fields(
        self, rng: random.Random, model_id: str, export_id: str
    ) -> dict[str, Any]:
        md5 = "".join(rng.choices("0123456789abcdef", k=32))
        version = self._items["model_version"].get(model_id, {})
        # The set's name as it is, unicode included (the documents' example is ``xxx_model_<md5>``);
        # only a path separator is replaced. The URL carries it percent-encoded.
        stem = str(version.get("modelSetName") or "model").replace("/", "_")
        file_name = f"{stem}_model_{md5}.tar"
        return {
            "fileName": file_name,
            "fileType": "Model",
            "md5": md5,
            # Model archives are often far over 2 GiB: sizes must survive as 64-bit integers.
            "fileSize": rng.choice(
                (rng.randint(10_000_000, 2_000_000_000), rng.randint(2**31, 300_000_000_000))
            ),
            "downloadUrl": "https://qianfan-export.bj.bcebos.com/v1/export/"
            f"{export_id}/{quote(file_name)}",
        }

    def _new_export(self, rng: random.Random, model_id: str) -> str:
        export_id = self._new_id(rng, "amve-")
        state = rng.choice(EXPORT_STATES)
        item: dict[str, Any] = {"exportId": export_id, "hasRecord": True, "state": state}
        if state == "Done":
            item.update(self._export_done_fields(rng, model_id, export_id))
        self._items["model_export"][model_id] = item
        return model_id

    def _eval_download(self, item: dict[str, Any]) -> str:
        if item["exportType"] == "local" and item["state"] == "Done":
            return f"https://aipe-dragonboat.bj.bcebos.com/{item['exportPath']}"
        return ""

    def _new_eval_export(self, rng: random.Random) -> int:
        existing = self._items["eval_result_export"]
        export_num = max(existing, default=95) + 1
        row_id = max((e["id"] for e in existing.values()), default=300) + rng.randint(1, 9)
        export_type = rng.choice(("local", "storage"))
        stamp = int(self._tick(rng).timestamp() * 1000)
        suffix = "zip" if export_type == "local" else "csv"
        root = "qianfan_modelrepo" if export_type == "local" else "qianfan_modelrepo_offline"
        item: dict[str, Any] = {
            "id": row_id,
            "idStr": self._new_id(rng, "ame-"),
            "exportID": export_num,
            "exportIDStr": self._new_id(rng, "amemt-"),
            "state": rng.choice(EVAL_EXPORT_STATES),
            "exportType": export_type,
        }
        if export_type == "storage":
            item["volumeId"] = rng.choice(("modelrepo-test", "my-eval-bucket"))
        item["exportPath"] = (
            f"{root}/workspace/model_eval_result_export/eval_{row_id}_{stamp}.{suffix}"
        )
        item["downloadUrl"] = self._eval_download(item)
        existing[export_num] = item
        return export_num

    # ------------------------------------------------------------------ lifecycle generation

    def _generate_lifecycle(
        self,
        rng: random.Random,
        jobs: int,
        tasks_per_job: int,
        eval_tasks: int,
        eval_export_tasks: int,
        services: int,
        preset_services: int,
    ) -> None:
        """Fine-tuning, evaluation and services, linked to the model catalog just generated.

        Job ``i`` trains the base model of the ``i``-th ``Train`` version, and its first task
        (Done) is the one that version names; further ``Train`` versions name a Done task of the
        same base model where there is one. The mutation clock is put back afterwards, so later
        mutations of the model catalog get the times they always had.
        """
        saved = self._clock
        # Training happened before the catalog's versions were published (from 2023-06-01 on).
        self._clock = datetime(2023, 5, 1, 8, 0, 0, tzinfo=CST)
        versions = self._items["model_version"]
        train = [m for m, v in versions.items() if v["sourceInfo"]["sourceType"] == "Train"]
        for index in range(jobs):
            model = versions[train[index]]["model"] if index < len(train) else None
            job_id = self._new_ft_job(rng, model)
            for number in range(tasks_per_job):
                linked = number == 0 and index < len(train)
                task_id = self._new_ft_task(rng, job_id, "Done" if linked else None)
                if linked:
                    versions[train[index]]["sourceInfo"]["trainTaskId"] = task_id
        named = Counter(v["sourceInfo"].get("trainTaskId") for v in versions.values())
        for model_id in train[jobs:]:
            self._link_train_source(model_id, rng, named)
        self._clock = saved
        for index in range(eval_tasks):
            # The first one has a report, so even the smallest catalog serves one.
            self._new_eval_task(rng, "Successed" if index == 0 else None)
        for _ in range(eval_export_tasks if self._items["eval_task"] else 0):
            self._new_eval_export_task(rng)
        for _ in range(services if self._service_candidates() else 0):
            self._new_service(rng)
        for index in range(preset_services):
            self._new_preset_service(rng, index)
        self._clock = saved

    def _link_train_source(
        self, model_id: str, rng: random.Random, named: Counter[str] | None = None
    ) -> None:
        """Make a ``Train`` version name a real fine-tuning task (a Done one of its base model
        where there is one, the least named first); without any task its number stays.

        ``named``: how many versions name each task, kept by a caller linking many versions.

        INVENTED: that ``sourceInfo.trainTaskId`` holds the V2 fine-tuning ``taskId``
        (``task-...``) is not documented; the documents' example is the number 423.
        """
        tasks = list(self._items["fine_tuning_task"].values())
        if not tasks:
            return
        versions = self._items["model_version"]
        if named is None:
            named = Counter(v["sourceInfo"].get("trainTaskId") for v in versions.values())
        version = versions[model_id]
        done = [t for t in tasks if t["runStatus"] == "Done"] or tasks
        same = [t for t in done if t["model"] == version["model"]] or done
        fewest = min(named[t["taskId"]] for t in same)
        task_id = rng.choice([t for t in same if named[t["taskId"]] == fewest])["taskId"]
        named[version["sourceInfo"].get("trainTaskId")] -= 1
        named[task_id] += 1
        version["sourceInfo"]["trainTaskId"] = task_id

    def _new_ft_job(self, rng: random.Random, model: str | None = None) -> str:
        created = self._tick(rng)
        job_id = self._new_id(rng, "job-")
        self._items["fine_tuning_job"][job_id] = {
            "jobId": job_id,
            "name": f"{rng.choice(_JOB_NAMES)}_{len(self._items['fine_tuning_job']) + 1}",
            "description": rng.choice(_DESCRIPTIONS),
            "model": model or rng.choice(_BASE_MODELS[:-1]),
            "trainMode": rng.choice(TRAIN_MODES),
            # SDK-only form: the SDK mock's dates are UTC with a Z.
            "createDate": format_time(created, "utc"),
        }
        return job_id

    def _new_ft_task(self, rng: random.Random, job_id: str, status: str | None = None) -> str:
        """A task of ``job_id``; its model and train mode are the job's (stored, as served)."""
        job = self._items["fine_tuning_job"][job_id]
        created = self._tick(rng)
        task_id = self._new_id(rng, "task-")
        run = "".join(rng.choices(_ID_ALPHABET, k=14))
        # SDK-only form: the SDK mock's link carries a base64 {"runId": ...} display token.
        token = base64.b64encode(json.dumps({"runId": f"run-{run}"}).encode()).decode()
        item: dict[str, Any] = {
            "taskId": task_id,
            "jobId": job_id,
            "model": job["model"],
            "trainMode": job["trainMode"],
            "parameterScale": rng.choice(PARAMETER_SCALES),
            "runStatus": "Waiting",
            "vdlLink": f"https://console.bce.baidu.com/qianfan/visualdl/index?displayToken={token}",
            "createDate": format_time(created, "utc"),
            "finishDate": FT_ZERO_DATE,
        }
        self._set_ft_status(item, rng, status or rng.choice(FT_RUN_STATUSES))
        self._items["fine_tuning_task"][task_id] = item
        return task_id

    def _set_ft_status(
        self, item: dict[str, Any], rng: random.Random, status: str
    ) -> dict[str, Any]:
        """Move a fine-tuning task to ``status`` with what goes with it; returns what changed.

        ``runProgress`` only while Running (documented), as "37%" (SDK-only: the SDK parses
        ``int(runProgress[:-1])``); ``finishDate`` is the SDK mock's zero date until the task
        ends; ``metrics`` once Done (INVENTED: when the detail carries them is not documented).
        """
        tracked = ("runStatus", "runProgress", "finishDate", "metrics")
        before = {name: copy.deepcopy(item.get(name)) for name in tracked}
        item["runStatus"] = status
        item.pop("metrics", None)
        progress = item.pop("runProgress", None)
        if status == "Running":
            done = int(progress[:-1]) if before["runStatus"] == "Running" and progress else 0
            item["runProgress"] = f"{rng.randint(min(done + 1, 99), 99)}%"
        if status in FT_FINISHED:
            self._clock += timedelta(minutes=rng.randint(5, 240), seconds=rng.randint(0, 59))
            item["finishDate"] = format_time(self._clock, "utc")
        else:
            item["finishDate"] = FT_ZERO_DATE
        if status == "Done":
            item["metrics"] = {
                name: f"{rng.uniform(5, 60):.2f}%"
                for name in ("BLEU-4", "ROUGE-1", "ROUGE-2", "ROUGE-L")
            }
        return {name: item.get(name) for name in tracked if item.get(name) != before[name]}

    def _new_eval_task(
        self, rng: random.Random, state: str | None = None, model_id: str | None = None
    ) -> str:
        created = self._tick(rng)
        task_id = self._new_id(rng, "ame-")
        self._items["eval_task"][task_id] = {
            "taskId": task_id,
            "taskName": f"{rng.choice(_EVAL_NAMES)}_{len(self._items['eval_task']) + 1}",
            "description": rng.choice(_DESCRIPTIONS),
            "evalType": rng.choice(EVAL_TYPES),
            "state": state or rng.choice(EVAL_TASK_STATES),
            # INVENTED: served only in the (invented) listing item.
            "createTime": format_time(created, "offset"),
        }
        if self._items["eval_task"][task_id]["state"] == "Successed":
            self._new_report(rng, task_id, model_id)
        return task_id

    def _new_report(self, rng: random.Random, task_id: str, model_id: str | None = None) -> None:
        """The report of a task that reached ``Successed``: 1-3 versions, sometimes a result set.

        INVENTED: which states have a report (here: Successed only), a model unit's empty
        ``inferDatasetId`` and a result-set unit's empty ``modelId``, the ``ds-`` ids.
        """
        versions = self._items["model_version"]
        pool = [m for m, v in versions.items() if v.get("isSupportEvaluation")] or list(versions)
        picks = rng.sample(pool, min(len(pool), rng.randint(1, 3)))
        if model_id is not None and model_id not in picks:
            picks = [model_id, *picks[:-1]] if picks else [model_id]
        task = self._items["eval_task"][task_id]
        mode = (
            "manual"
            if task["evalType"] == "manual"
            else rng.choice(("rule", "model", "rule,model"))
        )
        units = [self._report_unit(rng, "model", m, mode) for m in picks]
        if not units or rng.random() < 0.2:
            dataset = "ds-" + "".join(rng.choices(_ID_ALPHABET, k=12))
            units.append(self._report_unit(rng, "inferDataset", dataset, mode))
        self._items["eval_task_report"][task_id] = {"taskId": task_id, "units": units}

    @staticmethod
    def _report_unit(
        rng: random.Random, object_type: str, target: str, mode: str
    ) -> dict[str, Any]:
        """One evaluated unit; ``taskId`` / ``taskName`` are its task's, added when served.

        INVENTED: ``effectMetric``'s key names (the documents list the scores, not their keys).
        """
        metrics: dict[str, float] = {}
        if "rule" in mode.split(","):
            metrics["ruleAccuracy"] = round(rng.uniform(0.3, 0.95), 4)
            metrics["BLEU-4"] = round(rng.uniform(0.05, 0.6), 4)
            metrics["ROUGE-L"] = round(rng.uniform(0.1, 0.7), 4)
            metrics["editDistance"] = round(rng.uniform(2, 60), 2)
            metrics["embeddingDistance"] = round(rng.uniform(0.05, 0.6), 4)
        if "model" in mode.split(","):
            metrics["judgeModelMean"] = round(rng.uniform(1, 5), 2)
        if mode == "manual":
            metrics["manualMean"] = round(rng.uniform(1, 5), 2)
        return {
            "modelId": target if object_type == "model" else "",
            "inferDatasetId": target if object_type == "inferDataset" else "",
            "evalObjectType": object_type,
            "evalMode": mode,
            "effectMetric": metrics,
        }

    @staticmethod
    def _export_task_download(item: dict[str, Any]) -> str:
        """The link's base (the server signs a fresh query per call), for finished system-storage
        exports only. INVENTED: "" otherwise (the V1 page: a link only for system storage)."""
        if item["storageType"] == "sysStorage" and item["state"] == "Succeeded":
            return f"https://aipe-dragonboat.bj.bcebos.com/{item['storagePath']}"
        return ""

    def _new_eval_export_task(self, rng: random.Random, eval_id: str | None = None) -> str:
        """A V2 export task of an evaluation task (``evalId``).

        INVENTED: that V2 tasks and the V1 exports are separate objects (a V1 ``exportIDStr``
        is unknown to the V2 call and a V2 ``taskId`` to the V1 route; the documents do not say
        whether the two ``amemt-`` ids name the same export); that a task exports a
        ``Successed`` evaluation when there is one; the storage path's form (a bucket-first
        path for BOS, V1's ``exportPath`` form for system storage).
        """
        tasks = self._items["eval_task"]
        if eval_id is None:
            finished = [t for t, v in tasks.items() if v["state"] == "Successed"] or list(tasks)
            if not finished:
                raise ValueError("there is no evaluation task to export the results of")
            eval_id = rng.choice(finished)
        elif eval_id not in tasks:
            raise KeyError(eval_id)
        task_id = self._new_id(rng, "amemt-")
        storage = rng.choice(STORAGE_TYPES)
        if storage == "BOS":
            bucket = rng.choice(("my-eval-bucket", "modelrepo-test"))
            path = f"{bucket}/eval_export/{eval_id}/{task_id}.jsonl"
        else:
            path = f"qianfan_modelrepo/workspace/model_eval_result_export/{eval_id}_{task_id}.zip"
        item: dict[str, Any] = {
            "taskId": task_id,
            "evalId": eval_id,
            "exportContent": [c for c in EXPORT_CONTENTS if rng.random() < 0.7] or ["prediction"],
            "state": rng.choice(EVAL_EXPORT_TASK_STATES),
            "storageType": storage,
            "storagePath": path,
        }
        item["downloadUrl"] = self._export_task_download(item)
        self._items["eval_result_export_task"][task_id] = item
        return task_id

    def _service_candidates(self) -> list[str]:
        """Custom chat or completion versions a service can run, Ready ones if there are any."""
        versions = self._items["model_version"]
        custom = [
            m
            for m, v in versions.items()
            if not self.is_preset_version(m) and v["modelApplicationType"] in ("chat", "completion")
        ]
        return [m for m in custom if versions[m]["status"] == "Ready"] or custom

    def _new_service(self, rng: random.Random, model_id: str | None = None) -> str:
        """A custom service running ``model_id``. INVENTED: the url and endpoint forms."""
        if model_id is None:
            candidates = self._service_candidates()
            if not candidates:
                raise ValueError("there is no custom chat or completion version to serve")
            model_id = rng.choice(candidates)
        version = self._items["model_version"][model_id]
        if self.is_preset_version(model_id):
            raise ValueError(f"{model_id} is a preset version: custom services run custom ones")
        created = self._tick(rng)
        service_id = self._new_id(rng, "svco-")
        service_type = "completions" if version["modelApplicationType"] == "completion" else "chat"
        endpoint = "".join(rng.choices(_ID_ALPHABET, k=8))
        self._items["service"][service_id] = {
            "serviceId": service_id,
            "baseModel": version["model"],
            "modelSetId": version["modelSetId"],
            "modelId": model_id,
            "name": f"{rng.choice(_SERVICE_NAMES)}_{len(self._items['service']) + 1}",
            "description": rng.choice(_DESCRIPTIONS),
            "url": f"{_SERVICE_URL}/{service_type}/{endpoint}",
            "endpoint": endpoint,
            "serviceType": service_type,
            "runStatus": rng.choices(SERVICE_RUN_STATUSES, weights=(1, 1, 6, 1, 1))[0],
            "updateStatus": "None",
            "chargeType": rng.choice(CHARGE_TYPES),
            "payType": rng.choice(PAY_TYPES),
            "chargeStatus": rng.choice(CHARGE_STATUSES),
            "resourceConfig": {
                "type": rng.choice(RESOURCE_TYPES),
                "replicasCount": rng.randint(1, 4),
                "qps": rng.choice((1, 5, 10, 20)),
            },
            "createTime": format_time(created, "utc"),
        }
        return service_id

    def _new_preset_service(self, rng: random.Random, index: int) -> str:
        """A platform service. INVENTED: the url form, the charge fields' values per service."""
        name, endpoint, service_type = _PRESET_SERVICES[index % len(_PRESET_SERVICES)]
        cycle = index // len(_PRESET_SERVICES) + 1
        if cycle > 1:
            name, endpoint = f"{name}-{cycle}", f"{endpoint}_{cycle}"
        service_id = self._new_id(rng, "svcp-")
        self._items["preset_service"][service_id] = {
            "serviceId": service_id,
            "name": name,
            "url": f"{_SERVICE_URL}/{service_type}/{endpoint}",
            "endpoint": endpoint,
            "serviceType": service_type,
            "chargeType": rng.choice(PRESET_CHARGE_TYPES),
            "chargeStatus": rng.choice(PRESET_CHARGE_STATUSES),
        }
        return service_id

    # ------------------------------------------------------------------ reading

    def keys(self, kind: str) -> list[Any]:
        with self.lock:
            return list(self._store(kind))

    def get(self, kind: str, key: Any) -> dict[str, Any]:
        """A deep copy of one object as stored; ``KeyError`` if there is none."""
        with self.lock:
            return copy.deepcopy(self._store(kind)[key])

    def find(self, kind: str, key: Any) -> dict[str, Any] | None:
        """The live stored object (not a copy) or ``None``; callers must hold :attr:`lock`."""
        return self._store(kind).get(key)

    def items(self, kind: str) -> list[dict[str, Any]]:
        """Live stored objects in listing order; callers must hold :attr:`lock` and not mutate."""
        return list(self._store(kind).values())

    def listing(
        self,
        cache_key: Any,
        kind: str,
        include: Callable[[dict[str, Any]], bool],
        id_field: str,
        reverse: bool = False,
    ) -> tuple[list[dict[str, Any]], dict[Any, int]]:
        """The live objects of ``kind`` that ``include`` accepts, in order, and each id's place.

        Built once per ``cache_key`` until the next mutation: a server paging through 100,000
        compression tasks rebuilt the whole list for every page it served. Callers must hold
        :attr:`lock` and not mutate the result.
        """
        cached = self._listings.get((cache_key, reverse))
        if cached is not None:
            return cached
        ordered = [item for item in self._store(kind).values() if include(item)]
        if reverse:
            ordered.reverse()
        positions: dict[Any, int] = {}
        for index, item in enumerate(ordered):
            positions.setdefault(item[id_field], index)
        self._listings[(cache_key, reverse)] = (ordered, positions)
        return ordered, positions

    def snapshot(self) -> dict[str, dict[Any, dict[str, Any]]]:
        """Every stored object (patches not applied); what the calls serve is :meth:`served`."""
        with self.lock:
            return copy.deepcopy(self._items)

    def is_preset_set(self, set_id: str) -> bool:
        found = self._store("model_set").get(set_id)
        return found is not None and found.get("source") == "System"

    def is_preset_version(self, model_id: str) -> bool:
        """Whether a version is in a preset set (the System* calls serve it, the others do not)."""
        found = self._store("model_version").get(model_id)
        return found is not None and self.is_preset_set(found["modelSetId"])

    @overload
    def view(
        self, action: Literal["DescribeEvalTaskReport"], key: Any, item: Mapping[str, Any]
    ) -> list[dict[str, Any]]: ...

    @overload
    def view(self, action: str, key: Any, item: Mapping[str, Any]) -> dict[str, Any]: ...

    def view(
        self, action: str, key: Any, item: Mapping[str, Any]
    ) -> dict[str, Any] | list[dict[str, Any]]:
        """What ``action`` serves of the stored object ``item`` (whose key is ``key``): a new dict.

        Callers must hold :attr:`lock`. Fields are those of :data:`VIEWS`, derived ones filled in,
        then the test-made patches for this object and call applied. The report call serves a
        list, one dict per unit, each patched alike.
        """
        kind, fields = VIEWS[action]
        if kind == "eval_task_report":
            task = self._store("eval_task").get(key, {})
            return [
                self._shape(
                    action,
                    kind,
                    key,
                    {"taskId": key, "taskName": task.get("taskName", ""), **unit},
                    fields,
                )
                for unit in item["units"]
            ]
        source = dict(item)
        if kind == "model_set":
            versions = self._store("model_version")
            source["modelCount"] = len(item["modelIds"])
            source["modelNames"] = [versions[m]["modelName"] for m in item["modelIds"]]
        if kind == "fine_tuning_task":
            job = self._store("fine_tuning_job").get(item["jobId"])
            if job is not None:
                source["jobName"], source["jobDescription"] = job["name"], job["description"]
            if item.get("runStatus") != "Running":
                source.pop("runProgress", None)  # documented: only when Running
        if action == "DescribeModelCompTask" and item.get("status") != "succeeded":
            source.pop("modelId", None)  # documented: only when status=succeeded
        return self._shape(action, kind, key, dict(item) if fields is None else source, fields)

    def _shape(
        self,
        action: str,
        kind: str,
        key: Any,
        source: Mapping[str, Any],
        fields: tuple[str, ...] | None,
    ) -> dict[str, Any]:
        """``fields`` of ``source`` (all of it for ``None``), then this object's patches."""
        served: dict[str, Any]
        if fields is None:
            served = {name: _copied(value) for name, value in source.items()}
        else:
            served = {name: _copied(source[name]) for name in fields if name in source}
        for patch in self._patches.get((kind, key), ()):
            if patch.actions is None or action in patch.actions:
                for name in patch.drop:
                    served.pop(name, None)
                served.update({name: _copied(value) for name, value in patch.fields.items()})
        return served

    @overload
    def served(
        self, action: Literal["DescribeEvalTaskReport"], key: Any
    ) -> list[dict[str, Any]]: ...

    @overload
    def served(self, action: str, key: Any) -> dict[str, Any]: ...

    def served(self, action: str, key: Any) -> dict[str, Any] | list[dict[str, Any]]:
        """What ``action`` answers for the object ``key`` now (``KeyError`` if there is none).

        For tests that compare the database with what the fake serves rather than with what it
        stores; a ``downloadUrl`` (model export, V2 evaluation-result export) is without the query
        the server signs per call. The report call answers a list of units.
        """
        with self.lock:
            return self.view(action, key, self._store(VIEWS[action][0])[key])

    def patch(
        self,
        kind: str,
        key: Any,
        *,
        fields: Mapping[str, Any] | None = None,
        drop: Collection[str] = (),
        actions: Collection[str] | None = None,
    ) -> None:
        """Make the answers about one object differ from the documents, for drift tests.

        ``fields`` are added (an undocumented field) or overwritten, ``drop`` names fields left out
        (a documented one going missing), in the answers of ``actions`` (default: every call that
        serves ``kind``); for ``eval_task_report``, in each unit of the report. The stored object
        is not touched, so :meth:`snapshot` does not show it. Patches add up; :meth:`unpatch`
        removes them.
        """
        with self.lock:
            self._store(kind)
            if isinstance(drop, str) or (actions is not None and isinstance(actions, str)):
                raise TypeError("drop and actions take collections of names, not one string")
            chosen = frozenset(actions) if actions is not None else None
            unknown = (chosen or frozenset()) - {a for a, (k, _) in VIEWS.items() if k == kind}
            if unknown:
                raise ValueError(f"no call serves {kind} as {sorted(unknown)}")
            self._listings.clear()
            self._patches.setdefault((kind, key), []).append(
                _Patch(dict(fields or {}), frozenset(drop), chosen)
            )

    def unpatch(self, kind: str, key: Any) -> None:
        with self.lock:
            self._listings.clear()
            self._patches.pop((kind, key), None)

    def _store(self, kind: str) -> dict[Any, dict[str, Any]]:
        try:
            return self._items[kind]
        except KeyError:
            raise ValueError(f"unknown kind {kind!r}; expected one of {ALL_KINDS}") from None

    # ------------------------------------------------------------------ mutations

    def add(self, kind: str, rng: random.Random, parent: str | None = None) -> Any:
        """Create one new object of ``kind`` and return its key.

        ``parent``: the model set of a new version, the source version of a new compression
        task, the version of a new export (a custom version without one: presets have no export
        call), the job of a new fine-tuning task, the version a new evaluation task evaluated (it
        is then Successed, its report naming that version), the evaluation task whose report
        appears (``eval_task_report``: the task becomes Successed; the key is the task's) or
        whose results a new export task exports, the custom version a new service runs. Picked
        with ``rng`` when ``None``. A new fine-tuning job comes with one task; a new ``Train``
        version names a real fine-tuning task when there is one.
        """
        with self.lock:
            self._store(kind)
            self._listings.clear()
            if kind == "model_set":
                index = len(self._items["model_set"]) + rng.randint(0, 1000)
                return self._new_model_set(rng, 1, system=False, index=index)
            if kind == "model_version":
                set_id = parent or rng.choice(sorted(self._items["model_set"]))
                if set_id not in self._items["model_set"]:
                    raise KeyError(set_id)
                model_id = self._new_version(rng, set_id)
                self._touch(self._items["model_set"][set_id])
                return model_id
            if kind == "compression_task":
                versions = list(self._items["model_version"])
                source = parent or (rng.choice(versions) if versions else None)
                return self._new_comp_task(rng, source)
            if kind == "model_export":
                candidates = [
                    m
                    for m in self._items["model_version"]
                    if m not in self._items["model_export"] and not self.is_preset_version(m)
                ]
                if parent is None:
                    if not candidates:
                        raise ValueError("every model version already has an export")
                    parent = rng.choice(candidates)
                elif parent not in candidates:
                    raise ValueError(f"{parent} is not a custom version without an export")
                return self._new_export(rng, parent)
            if kind == "eval_result_export":
                return self._new_eval_export(rng)
            return self._add_lifecycle(kind, rng, parent)

    def _add_lifecycle(self, kind: str, rng: random.Random, parent: str | None) -> str:
        if kind == "fine_tuning_job":
            job_id = self._new_ft_job(rng)
            self._new_ft_task(rng, job_id)
            return job_id
        if kind == "fine_tuning_task":
            jobs = sorted(self._items["fine_tuning_job"])
            if parent is None and not jobs:
                raise ValueError("there is no fine-tuning job to add a task to")
            job_id = parent or rng.choice(jobs)
            if job_id not in self._items["fine_tuning_job"]:
                raise KeyError(job_id)
            return self._new_ft_task(rng, job_id)
        if kind == "eval_task":
            if parent is not None and parent not in self._items["model_version"]:
                raise KeyError(parent)
            return self._new_eval_task(rng, "Successed" if parent else None, parent)
        if kind == "eval_task_report":
            without = [t for t in self._items["eval_task"] if t not in self._items[kind]]
            if parent is None:
                if not without:
                    raise ValueError("every evaluation task already has a report")
                parent = rng.choice(without)
            elif parent not in without:
                raise ValueError(f"{parent} is not an evaluation task without a report")
            self._change_eval_task_state(self._items["eval_task"][parent], rng, "Successed")
            return parent
        if kind == "eval_result_export_task":
            return self._new_eval_export_task(rng, parent)
        if kind == "service":
            return self._new_service(rng, parent)
        index = len(self._items["preset_service"]) + rng.randint(0, 1000)
        return self._new_preset_service(rng, index)

    def _touch(self, item: dict[str, Any]) -> None:
        """Move ``modifyTime`` forward, in the style of the entity's ``createTime``."""
        self._clock += timedelta(minutes=7)
        item["modifyTime"] = format_time(self._clock, time_style(item["createTime"]))

    def change(
        self, kind: str, key: Any, rng: random.Random, *, status: str | None = None
    ) -> dict[str, Any]:
        """Change 1-3 documented fields of one object to new values.

        Returns ``{apiField: newValue}`` for the meaningful fields changed (``None`` for a field
        that is now absent). ``modifyTime`` moves forward too where the entity has one; it is not
        in the returned dict because it is bookkeeping, not the change itself.

        ``status`` changes only the status (the field :data:`STATUS_FIELDS` names) to that value,
        with what goes with it (a failed task's ``failedReason``, a succeeded one's output
        ``modelId``, a Running fine-tuning task's ``runProgress``, a Successed evaluation task's
        report...), so a test can reach a given state without drawing until it comes up.
        """
        with self.lock:
            item = self._store(kind)[key]
            changers = self._CHANGERS[kind]
            if status is not None:
                if kind not in self._STATUS_CHANGERS:
                    raise ValueError(f"{kind} has no status")
                if status not in self._STATUS_CHANGERS[kind][1]:
                    raise ValueError(f"{status!r} is not a {kind} status")
                if item[STATUS_FIELDS[kind]] == status:
                    raise ValueError(f"{kind} {key} is already {status}")
            self._listings.clear()
            changed: dict[str, Any] = {}
            if status is not None:
                changed.update(self._STATUS_CHANGERS[kind][0](self, item, rng, status))
            else:
                picks = rng.sample(changers, rng.randint(1, min(3, len(changers))))
                for changer in picks:
                    changed.update(changer(self, item, rng))
            if "modifyTime" in item:
                self._touch(item)
            return copy.deepcopy(changed)

    # Each changer returns the fields it changed; it always picks a value different from the old.

    @staticmethod
    def _other(rng: random.Random, choices: tuple[Any, ...], old: Any, to: Any = None) -> Any:
        return to if to is not None else rng.choice([c for c in choices if c != old])

    def _change_labels(self, item: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        old = item.get("labels", [])
        new = old
        while new == old:
            new = sorted(rng.sample(_LABELS, rng.randint(1, 3)))
        item["labels"] = new
        return {"labels": new}

    def _change_description(self, item: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        new = f"{rng.choice(('更新于', 'updated', '修订'))} #{rng.randint(1, 10**6)}"
        item["description"] = new
        return {"description": new}

    def _change_version_status(
        self, item: dict[str, Any], rng: random.Random, to: str | None = None
    ) -> dict[str, Any]:
        item["status"] = self._other(rng, MODEL_VERSION_STATUSES, item["status"], to)
        return {"status": item["status"]}

    def _change_support_flag(self, item: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        flag = rng.choice(("isSupportDeploy", "isSupportModelComp", "isSupportEvaluation"))
        item[flag] = not item[flag]
        return {flag: item[flag]}

    def _change_token_limits(self, item: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        limits = item["tokenLimitations"]
        inner = next(iter(limits.values()))
        field = rng.choice(sorted(inner))
        inner[field] = inner[field] + rng.randint(1, 64) * 64
        return {"tokenLimitations": limits}

    def _change_comp_configs(self, item: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        old = item["modelCompConfigs"]
        new = old
        while new == old:
            new = self._comp_configs(rng)
        item["modelCompConfigs"] = new
        return {"modelCompConfigs": new}

    def _change_task_status(
        self, item: dict[str, Any], rng: random.Random, to: str | None = None
    ) -> dict[str, Any]:
        status = self._other(rng, COMP_TASK_STATUSES, item["status"], to)
        item["status"] = status
        changed: dict[str, Any] = {"status": status}
        model_id = self._new_id(rng, "amv-") if status == "succeeded" else ""
        if model_id != item["modelId"]:
            item["modelId"] = model_id
            changed["modelId"] = model_id
        reason = rng.choice(_FAILED_REASONS) if status == "failed" else ""
        if reason != item.get("failedReason"):
            item["failedReason"] = reason
            changed["failedReason"] = reason
        self._clock += timedelta(minutes=rng.randint(1, 90))
        old_finish = item.get("finishTime")
        if status in COMP_TASK_FINISHED:
            item["finishTime"] = format_time(self._clock, time_style(item["createTime"]))
        elif old_finish not in (None, ZERO_TIME):
            item.pop("finishTime")  # back to live: no finish time (a live one keeps its form)
        if item.get("finishTime") != old_finish:
            changed["finishTime"] = item.get("finishTime")
        return changed

    def _change_task_name(self, item: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        item["name"] = f"{rng.choice(_TASK_NAMES)}-{rng.randint(2, 10**6)}"
        return {"name": item["name"]}

    def _change_export_state(
        self, item: dict[str, Any], rng: random.Random, to: str | None = None
    ) -> dict[str, Any]:
        """Doing -> Done gains the file fields; Done -> Doing is a re-export with a new id."""
        model_id = next(k for k, v in self._items["model_export"].items() if v is item)
        if item["state"] == "Doing":
            fields = self._export_done_fields(rng, model_id, item["exportId"])
            item["state"] = "Done"
            item.update(fields)
            return {"state": "Done", **fields}
        removed = {f: None for f in ("fileName", "fileType", "md5", "fileSize", "downloadUrl")}
        for field in removed:
            item.pop(field, None)
        item["exportId"] = self._new_id(rng, "amve-")
        item["state"] = "Doing"
        return {"exportId": item["exportId"], "state": "Doing", **removed}

    def _change_eval_state(
        self, item: dict[str, Any], rng: random.Random, to: str | None = None
    ) -> dict[str, Any]:
        item["state"] = self._other(rng, EVAL_EXPORT_STATES, item["state"], to)
        return _with_url(item, {"state": item["state"]}, self._eval_download(item))

    def _change_eval_path(self, item: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        stem, _, suffix = item["exportPath"].rpartition(".")
        item["exportPath"] = f"{stem}_{rng.randint(1, 10**6)}.{suffix}"
        return _with_url(item, {"exportPath": item["exportPath"]}, self._eval_download(item))

    def _change_job_name(self, item: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        item["name"] = f"{rng.choice(_JOB_NAMES)}-{rng.randint(2, 10**6)}"
        return {"name": item["name"]}

    def _change_ft_status(
        self, item: dict[str, Any], rng: random.Random, to: str | None = None
    ) -> dict[str, Any]:
        return self._set_ft_status(
            item, rng, self._other(rng, FT_RUN_STATUSES, item["runStatus"], to)
        )

    def _change_ft_run(self, item: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        """A Running task gets further or moves on; another one changes status.

        Getting further, a task changes nothing but ``runProgress``: what a re-sync of a task
        that is still running must pick up. (One changer, so two cannot undo each other.)
        """
        if item["runStatus"] == "Running" and item["runProgress"] != "99%" and rng.random() < 0.5:
            return self._set_ft_status(item, rng, "Running")
        return self._change_ft_status(item, rng)

    def _change_eval_task_state(
        self, item: dict[str, Any], rng: random.Random, to: str | None = None
    ) -> dict[str, Any]:
        """Reaching Successed makes the report; leaving it takes the report away (INVENTED)."""
        item["state"] = self._other(rng, EVAL_TASK_STATES, item["state"], to)
        reports = self._items["eval_task_report"]
        if item["state"] == "Successed":
            if item["taskId"] not in reports:
                self._new_report(rng, item["taskId"])
        else:
            reports.pop(item["taskId"], None)
        return {"state": item["state"]}

    def _change_eval_task_name(self, item: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        item["taskName"] = f"{rng.choice(_EVAL_NAMES)}-{rng.randint(2, 10**6)}"
        return {"taskName": item["taskName"]}

    def _change_report_metric(self, item: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        """A re-scored unit: one metric of one unit moves."""
        metrics = rng.choice(item["units"])["effectMetric"]
        name = rng.choice(sorted(metrics))
        metrics[name] = round(metrics[name] + rng.choice((-1, 1)) * rng.uniform(0.01, 0.05), 4)
        return {"units": item["units"]}

    def _change_export_task_state(
        self, item: dict[str, Any], rng: random.Random, to: str | None = None
    ) -> dict[str, Any]:
        item["state"] = self._other(rng, EVAL_EXPORT_TASK_STATES, item["state"], to)
        return _with_url(item, {"state": item["state"]}, self._export_task_download(item))

    def _change_service_status(
        self, item: dict[str, Any], rng: random.Random, to: str | None = None
    ) -> dict[str, Any]:
        item["runStatus"] = self._other(rng, SERVICE_RUN_STATUSES, item["runStatus"], to)
        return {"runStatus": item["runStatus"]}

    def _change_replicas(self, item: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        config = item["resourceConfig"]
        config["replicasCount"] = self._other(rng, (1, 2, 3, 4, 6, 8), config["replicasCount"])
        return {"resourceConfig": config}

    def _change_charge_status(self, item: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        item["chargeStatus"] = self._other(rng, PRESET_CHARGE_STATUSES, item["chargeStatus"])
        return {"chargeStatus": item["chargeStatus"]}

    _CHANGERS: dict[
        str, list[Callable[[FakeCatalog, dict[str, Any], random.Random], dict[str, Any]]]
    ] = {
        "model_set": [_change_labels, _change_description],
        "model_version": [
            _change_version_status,
            _change_description,
            _change_support_flag,
            _change_token_limits,
            _change_comp_configs,
        ],
        "compression_task": [_change_task_status, _change_task_name, _change_description],
        "model_export": [_change_export_state],
        "eval_result_export": [_change_eval_state, _change_eval_path],
        "fine_tuning_job": [_change_job_name, _change_description],
        "fine_tuning_task": [_change_ft_run],
        "eval_task": [_change_eval_task_state, _change_eval_task_name, _change_description],
        "eval_task_report": [_change_report_metric],
        "eval_result_export_task": [_change_export_task_state],
        "service": [_change_service_status, _change_description, _change_replicas],
        "preset_service": [_change_charge_status],
    }
    #: The changer that moves an object to a given status, and the statuses it may move to.
    _STATUS_CHANGERS: dict[
        str,
        tuple[
            Callable[[FakeCatalog, dict[str, Any], random.Random, str], dict[str, Any]],
            tuple[str, ...],
        ],
    ] = {
        "model_version": (_change_version_status, MODEL_VERSION_STATUSES),
        "compression_task": (_change_task_status, COMP_TASK_STATUSES),
        "model_export": (_change_export_state, EXPORT_STATES),
        "eval_result_export": (_change_eval_state, EVAL_EXPORT_STATES),
        "fine_tuning_task": (_change_ft_status, FT_RUN_STATUSES),
        "eval_task": (_change_eval_task_state, EVAL_TASK_STATES),
        "eval_result_export_task": (_change_export_task_state, EVAL_EXPORT_TASK_STATES),
        "service": (_change_service_status, SERVICE_RUN_STATUSES),
    }

    def remove(self, kind: str, key: Any) -> dict[str, Any]:
        """Delete one object (and what cannot exist without it); the result feeds :meth:`restore`.

        A model set takes its versions and their exports with it; a version leaves its set's
        ``modelIds`` and takes its export. Compression tasks stay: the service keeps task history
        after the source version is gone. Likewise (INVENTED) fine-tuning tasks, reports,
        services and export tasks naming a removed version or evaluation task stay. A
        fine-tuning job takes its tasks; an evaluation task its report.
        """
        with self.lock:
            store = self._store(kind)
            self._listings.clear()
            removed: dict[str, Any] = {
                "kind": kind,
                "key": key,
                "position": list(store).index(key),
                "item": store.pop(key),
                "children": [],
            }
            if kind == "model_set":
                for model_id in removed["item"]["modelIds"]:
                    removed["children"].append(self.remove("model_version", model_id))
            elif kind == "model_version":
                set_id = removed["item"]["modelSetId"]
                model_set = self._items["model_set"].get(set_id)
                if model_set is not None and key in model_set["modelIds"]:
                    removed["set_position"] = model_set["modelIds"].index(key)
                    model_set["modelIds"].remove(key)
                if key in self._items["model_export"]:
                    removed["children"].append(self.remove("model_export", key))
            elif kind == "fine_tuning_job":
                for task_id, task in list(self._items["fine_tuning_task"].items()):
                    if task["jobId"] == key:
                        removed["children"].append(self.remove("fine_tuning_task", task_id))
            elif kind == "eval_task" and key in self._items["eval_task_report"]:
                removed["children"].append(self.remove("eval_task_report", key))
            return removed

    def restore(self, kind: str, removed: dict[str, Any]) -> None:
        """Undo :meth:`remove`: the object and its children come back at their old positions."""
        with self.lock:
            if removed["kind"] != kind:
                raise ValueError(f"{removed['kind']} removal given to restore({kind!r})")
            self._listings.clear()
            store = self._store(kind)
            entries = list(store.items())
            entries.insert(removed["position"], (removed["key"], removed["item"]))
            store.clear()
            store.update(entries)
            if kind == "model_version" and "set_position" in removed:
                model_set = self._items["model_set"].get(removed["item"]["modelSetId"])
                if model_set is not None and removed["key"] not in model_set["modelIds"]:
                    model_set["modelIds"].insert(removed["set_position"], removed["key"])
            # Last removed, first restored: each child's position was taken after the earlier
            # ones had left, so restoring in removal order would put them back out of order.
            for child in reversed(removed["children"]):
                self.restore(child["kind"], child)
