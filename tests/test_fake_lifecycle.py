"""The fake's fine-tuning, evaluation and service calls (issue 14), against the reference sheet.

Field sets are written out from /work/shared/api/REFERENCE.md §6-§9 and the lead's brief (the
invented ones too, as the fake's contract with its own tests), not imported from the fake: a test
reading the fake's tables would agree with any mistake in them. They talk HTTP with ``requests``
and the real signer only, except where a test needs the catalog's own view of a link.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from catalog.api.auth import BceAuth
from catalog.fake import ALL_KINDS, KINDS, LIFECYCLE_KINDS, FakeCatalog, FakeServer, FaultPlan

AK, SK = "fake-ak", "fake-sk"
FT, EVAL, SVC, MODEL = "/v2/finetuning", "/v2/eval", "/v2/service", "/v2/model"

FT_JOB_ITEM = {"jobId", "name", "description", "model", "trainMode", "createDate"}
FT_TASK_ITEM = {
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
}
#: The detail's always-present fields; runProgress (Running) and metrics (Done) come and go.
FT_TASK = FT_TASK_ITEM | {"vdlLink"}
FT_STATUSES = {"Running", "Done", "Stopped", "Failed", "Waiting"}
FT_ZERO = "0000-00-00T00:00:00Z"
EVAL_TASK_ITEM = {"taskId", "taskName", "description", "evalType", "state", "createTime"}
EVAL_TASK = {"taskId", "taskName", "description", "evalType", "state"}
EVAL_STATES = {
    "Queued",
    "Running",
    "RunningWithManualBegin",
    "RunningWithMetricsCalculating",
    "Successed",
    "Stopping",
    "Failed",
    "Stopped",
}
REPORT_UNIT = {
    "taskId",
    "taskName",
    "modelId",
    "inferDatasetId",
    "evalObjectType",
    "evalMode",
    "effectMetric",
}
EXPORT_TASK = {
    "taskId",
    "evalId",
    "exportContent",
    "state",
    "storageType",
    "storagePath",
    "downloadUrl",
}
SERVICE_ITEM = {
    "serviceId",
    "name",
    "modelSetId",
    "modelId",
    "serviceType",
    "runStatus",
    "createTime",
}
SERVICE = {
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
}
PRESET = {"serviceId", "name", "url", "endpoint", "serviceType", "chargeType", "chargeStatus"}
SERVICE_STATUSES = {"New", "Deploying", "Serving", "Failed", "Stopped"}


def _id(prefix: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(prefix)}[a-z0-9]{{12}}$")


class Console:
    """A signed session against one fake server, on any route."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.session = requests.Session()
        self.session.auth = BceAuth(AK, SK)

    def post(self, route: str, action: str, body: Any = None) -> requests.Response:
        return self.session.post(
            f"{self.server.url}{route}",
            params={"Action": action},
            json={} if body is None else body,
            timeout=10,
        )

    def result(self, route: str, action: str, body: Any = None) -> Any:
        response = self.post(route, action, body)
        assert response.status_code == 200, response.text
        payload = response.json()
        assert set(payload) == {"requestId", "result"}
        return payload["result"]

    def error(self, route: str, action: str, body: Any = None) -> tuple[int, str]:
        response = self.post(route, action, body)
        return response.status_code, response.json().get("code", "")

    def walk(self, route: str, action: str, max_keys: int, **body: Any) -> list[dict[str, Any]]:
        """Every item of a listing, following nextMarker, with the page invariants checked."""
        items: list[dict[str, Any]] = []
        marker = ""
        for _ in range(1000):
            result = self.result(route, action, {"marker": marker, "maxKeys": max_keys, **body})
            info = result["pageInfo"]
            assert info["marker"] == marker and info["maxKeys"] == max_keys
            (list_key,) = [k for k in result if k != "pageInfo"]
            assert len(result[list_key]) <= max_keys
            items += result[list_key]
            if not info["isTruncated"]:
                assert "nextMarker" not in info
                return items
            marker = info["nextMarker"]
        raise AssertionError("listing did not end")


def _big() -> FakeCatalog:
    return FakeCatalog.generate(
        seed=31,
        model_sets=8,
        versions_per_set=3,
        comp_tasks=10,
        fine_tuning_jobs=7,
        tasks_per_job=3,
        eval_tasks=30,
        eval_export_tasks=12,
        services=12,
        preset_services=4,
    )


@pytest.fixture
def catalog() -> FakeCatalog:
    return _big()


@pytest.fixture
def server(catalog: FakeCatalog) -> Iterator[FakeServer]:
    with FakeServer(catalog, AK, SK) as running:
        yield running


@pytest.fixture
def api(server: FakeServer) -> Console:
    return Console(server)


# ---------------------------------------------------------------------- the old kinds stay


# Taken with the generator as it was before the lifecycle kinds existed (commit 5674b69), seed 5:
# ids, names and times of the model catalog, and of mutations made right after generation.
BEFORE_SETS = [
    ("am-707bq7x6eqit", "ERNIE-Speed", "2023-06-01T04:22:47Z"),
    ("am-dmv7m7tllgcf", "ERNIE-Lite", "2023-06-01T15:21:21Z"),
    ("am-8mg4r1ljksym", "cl_test_hf1", "2023-06-02T13:57:39Z"),
    ("am-4fv0kja8l7fa", "客服助手1", "2023-06-03T17:05:43+08:00"),
    ("am-dc7lpcoreew3", "summary_bot1", "2023-06-04T10:18:42+08:00"),
    ("am-mne3x2p4svu0", "法律问答1", "2023-06-05T03:16:39+08:00"),
    ("am-r2b4qx58hzxg", "chatglm32k_v1", "2023-06-05T15:46:30+08:00"),
]
BEFORE_VERSIONS = [  # every third version
    ("amv-o1cwqe9a18ff", "V1", "2023-06-01T09:09:59Z", "2023-06-05T05:26:59Z"),
    (
        "amv-ljq6e3tg75gr",
        "V2",
        "2023-06-02T17:24:50.10090395+08:00",
        "2023-06-08T06:02:50.10090395+08:00",
    ),
    (
        "amv-j72ijf9kvrxv",
        "V1",
        "2023-06-03T23:47:44.035058436+08:00",
        "2023-06-05T05:10:44.035058436+08:00",
    ),
    ("amv-n0gzxdydevi5", "V2", "2023-06-04T22:19:17+08:00", "2023-06-07T14:30:17+08:00"),
    ("amv-hatrunw06lq3", "V1", "2023-06-05T10:33:08Z", "2023-06-11T01:05:08Z"),
]
BEFORE_TASKS = [  # every seventh compression task
    ("amva-nlav30dtgzq7", "稀疏化🚀实验", "2023-06-05T23:06:26+08:00"),
    ("amva-z4rdgfdfwd10", "demo", "2023-06-07T09:43:13+08:00"),
    ("amva-0erza1psv2cs", "BLOOM_摘要生成_量化压缩INT8", "2023-06-08T18:01:14+08:00"),
    ("amva-kg726sdoiauk", "nightly_comp", "2023-06-09T21:55:23+08:00"),
    ("amva-z4wa59hcmdnd", "Ünïcode-täsk", "2023-06-11 22:05:07 +0800 CST"),
]
BEFORE_EXPORTS = [
    ("amv-98stf47ryz0g", "amve-jy1gt4ndvnfk", "Doing"),
    ("amv-chznm845yt8t", "amve-tz80zq3605rn", "Doing"),
    ("amv-3vy8x44ryz6q", "amve-0n5ju5l8oou9", "Doing"),
    ("amv-wbdnccu05epl", "amve-ik3cthxvd0ol", "Doing"),
    ("amv-n0gzxdydevi5", "amve-lyescx6wbsqp", "Doing"),
    ("amv-2lqi9bzuxw6z", "amve-pwu8s53vcnof", "Done"),
    ("amv-hatrunw06lq3", "amve-q0bd16ccwkxb", "Done"),
]
BEFORE_EVAL_EXPORTS = [
    (96, "amemt-7brjsbi92hqb", "Pending"),
    (97, "amemt-zrak44006unu", "Fail"),
    (98, "amemt-w42kfaviakih", "Uploading"),
]
# sha256 of the old kinds' snapshot as canonical JSON, trainTaskId left out (it now names a
# fine-tuning task), per generate() arguments the other test files use.
BEFORE_DIGESTS = {
    (("seed", 0),): "b7e9830d8f8d9ad390863f77c49415e936599ba54d87c612ad2a8e8b8935be5b",
    (("seed", 3),): "ac178f67b1b589e69efe4fead6263b54dbbf42e6be2095f192253f476c6877dd",
    (
        ("seed", 7),
        ("model_sets", 6),
        ("versions_per_set", 3),
        ("comp_tasks", 40),
    ): "0bfed9fa8789efe552174e82a2fc2c6788a5a807a1a8293856d61f32abd1e51e",
    (
        ("seed", 21),
        ("model_sets", 6),
        ("versions_per_set", 3),
        ("comp_tasks", 60),
    ): "e688d94e4322a85cfeab8bcdd685b742de7888c86a578ea8e2d13814b2351d55",
}


def test_the_old_kinds_keep_their_ids_names_and_times_for_a_seed() -> None:
    cat = FakeCatalog.generate(seed=5)
    snap = cat.snapshot()
    assert [(k, v["modelSetName"], v["createTime"]) for k, v in snap["model_set"].items()] == (
        BEFORE_SETS
    )
    versions = list(snap["model_version"].items())[::3]
    assert [(k, v["modelName"], v["createTime"], v["modifyTime"]) for k, v in versions] == (
        BEFORE_VERSIONS
    )
    tasks = list(snap["compression_task"].items())[::7]
    assert [(k, v["name"], v["createTime"]) for k, v in tasks] == BEFORE_TASKS
    exports = snap["model_export"].items()
    assert [(k, v["exportId"], v["state"]) for k, v in exports] == BEFORE_EXPORTS
    evals = snap["eval_result_export"].items()
    assert [(k, v["exportIDStr"], v["state"]) for k, v in evals] == BEFORE_EVAL_EXPORTS
    # Mutations right after generation draw and date as they did: the lifecycle kinds neither
    # used the main generator nor left the mutation clock elsewhere.
    rng = random.Random(99)
    set_id = cat.add("model_set", rng)
    added = cat.get("model_set", set_id)
    assert (set_id, added["modelSetName"], added["createTime"], added["modelIds"]) == (
        "am-i1jnyt7rpwh6",
        "rerank_faq47",
        "2023-06-12T19:52:18+08:00",
        ["amv-8t1qojah9tq6"],
    )
    changed = cat.change("model_version", "amv-98stf47ryz0g", rng)
    assert changed == {
        "tokenLimitations": {
            "trivial": {"inputTokens": 4096, "outputTokens": 4864, "characterLimit": 16384}
        }
    }
    assert cat.get("model_version", "amv-98stf47ryz0g")["modifyTime"] == (
        "2023-06-12T23:04:12.829385028+08:00"
    )
    task_id = cat.add("compression_task", rng)
    task = cat.get("compression_task", task_id)
    assert (task_id, task["name"], task["createTime"]) == (
        "amva-eo69xpt3e7rc",
        "压缩任务",
        "2023-06-13T04:22:51+08:00",
    )


@pytest.mark.parametrize("args", list(BEFORE_DIGESTS), ids=lambda a: ",".join(map(str, a)))
def test_the_old_kinds_snapshot_is_what_it_was(args: tuple[tuple[str, int], ...]) -> None:
    snap = FakeCatalog.generate(**dict(args)).snapshot()
    old = json.loads(json.dumps({k: snap[k] for k in KINDS}, sort_keys=True))
    for version in old["model_version"].values():
        version["sourceInfo"].pop("trainTaskId", None)
    canonical = json.dumps(old, sort_keys=True, ensure_ascii=False).encode()
    assert hashlib.sha256(canonical).hexdigest() == BEFORE_DIGESTS[args]


# ---------------------------------------------------------------------- generation


def test_default_counts_are_small_and_not_zero_and_each_is_a_parameter() -> None:
    snap = FakeCatalog.generate(seed=2).snapshot()
    counts = {kind: len(snap[kind]) for kind in LIFECYCLE_KINDS}
    assert counts["fine_tuning_job"] == 3 and counts["fine_tuning_task"] == 6
    assert counts["eval_task"] == 4 and counts["eval_task_report"] >= 1
    assert counts["eval_result_export_task"] == 2
    assert counts["service"] == 3 and counts["preset_service"] == 2
    assert set(snap) == set(ALL_KINDS) and set(LIFECYCLE_KINDS).isdisjoint(KINDS)
    none = FakeCatalog.generate(
        seed=2,
        fine_tuning_jobs=0,
        eval_tasks=0,
        eval_export_tasks=5,  # nothing to export without an evaluation task
        services=0,
        preset_services=0,
    ).snapshot()
    assert all(not none[kind] for kind in LIFECYCLE_KINDS)
    assert FakeCatalog.generate(seed=2).snapshot() == snap


def test_generated_lifecycle_objects_are_linked_to_real_ones(catalog: FakeCatalog) -> None:
    snap = catalog.snapshot()
    versions, tasks = snap["model_version"], snap["fine_tuning_task"]
    train = [v for v in versions.values() if v["sourceInfo"]["sourceType"] == "Train"]
    assert train and all(v["sourceInfo"]["trainTaskId"] in tasks for v in train)
    assert all(tasks[v["sourceInfo"]["trainTaskId"]]["runStatus"] == "Done" for v in train)
    assert all(t["jobId"] in snap["fine_tuning_job"] for t in tasks.values())
    for service in snap["service"].values():
        version = versions[service["modelId"]]
        assert not catalog.is_preset_version(service["modelId"])
        assert service["modelSetId"] == version["modelSetId"]
        assert service["baseModel"] == version["model"]
    for task_id, report in snap["eval_task_report"].items():
        assert snap["eval_task"][task_id]["state"] == "Successed"
        assert all(u["modelId"] in versions for u in report["units"] if u["modelId"])
    assert {t for t, v in snap["eval_task"].items() if v["state"] == "Successed"} == set(
        snap["eval_task_report"]
    )
    assert all(e["evalId"] in snap["eval_task"] for e in snap["eval_result_export_task"].values())


# ---------------------------------------------------------------------- fine-tuning


def test_fine_tuning_jobs_page_with_the_documented_fields(
    api: Console, catalog: FakeCatalog
) -> None:
    jobs = api.walk(FT, "DescribeFineTuningJobs", 2)
    assert [j["jobId"] for j in jobs] == catalog.keys("fine_tuning_job")
    for job in jobs:
        assert set(job) == FT_JOB_ITEM and _id("job-").match(job["jobId"])
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", job["createDate"])
    default = api.result(FT, "DescribeFineTuningJobs")
    assert default["pageInfo"]["maxKeys"] == 10 and len(default["jobList"]) == 7
    reverse = api.result(FT, "DescribeFineTuningJobs", {"pageReverse": True, "maxKeys": 100})
    assert [j["jobId"] for j in reverse["jobList"]] == [j["jobId"] for j in jobs][::-1]
    mode = jobs[0]["trainMode"]
    filtered = api.walk(FT, "DescribeFineTuningJobs", 100, trainMode=mode)
    assert filtered == [j for j in jobs if j["trainMode"] == mode]
    model = jobs[0]["model"]
    assert api.walk(FT, "DescribeFineTuningJobs", 100, model=model) == [
        j for j in jobs if j["model"] == model
    ]


def test_fine_tuning_tasks_need_a_job_and_page_per_job(api: Console, catalog: FakeCatalog) -> None:
    assert api.error(FT, "DescribeFineTuningTasks", {}) == (400, "InvalidRequest")
    assert api.error(FT, "DescribeFineTuningTasks", {"jobId": ""}) == (400, "InvalidRequest")
    assert api.error(FT, "DescribeFineTuningTasks", {"jobId": "job-nosuchjob000"})[0] == 404
    jobs = {j["jobId"]: j for j in api.walk(FT, "DescribeFineTuningJobs", 100)}
    seen: list[str] = []
    for job_id, job in jobs.items():
        tasks = api.walk(FT, "DescribeFineTuningTasks", 2, jobId=job_id)
        assert len(tasks) == 3
        for task in tasks:
            assert set(task) == FT_TASK_ITEM and _id("task-").match(task["taskId"])
            assert task["jobId"] == job_id
            assert (task["jobName"], task["jobDescription"]) == (job["name"], job["description"])
            assert (task["model"], task["trainMode"]) == (job["model"], job["trainMode"])
            assert task["runStatus"] in FT_STATUSES
        seen += [t["taskId"] for t in tasks]
    assert sorted(seen) == sorted(catalog.keys("fine_tuning_task"))


def test_fine_tuning_task_detail_progress_only_while_running(
    api: Console, catalog: FakeCatalog
) -> None:
    assert api.error(FT, "DescribeFineTuningTask", {}) == (400, "InvalidRequest")
    assert api.error(FT, "DescribeFineTuningTask", {"taskId": "task-nosuchtask00"})[0] == 404
    statuses = set()
    for task_id in catalog.keys("fine_tuning_task"):
        task = api.result(FT, "DescribeFineTuningTask", {"taskId": task_id})
        status = task["runStatus"]
        statuses.add(status)
        extra = {"runProgress"} if status == "Running" else set()
        extra |= {"metrics"} if status == "Done" else set()
        assert set(task) == FT_TASK | extra, status
        if status == "Running":
            assert re.match(r"^\d{1,2}%$", task["runProgress"])
        if status == "Done":
            assert all(re.match(r"^\d+\.\d\d%$", v) for v in task["metrics"].values())
            assert "BLEU-4" in task["metrics"]
        assert (task["finishDate"] == FT_ZERO) == (status in ("Running", "Waiting"))
        assert task["vdlLink"].startswith("https://console.bce.baidu.com/qianfan/visualdl/")
    assert statuses == FT_STATUSES


# ---------------------------------------------------------------------- evaluation


@pytest.mark.parametrize("body", [{}, {"evalType": ""}, {"evalType": "Auto"}, {"evalType": 1}])
def test_eval_tasks_refuse_a_missing_or_other_eval_type(api: Console, body: dict[str, Any]) -> None:
    assert api.error(EVAL, "DescribeEvalTasks", body) == (400, "InvalidRequest")


def test_eval_tasks_split_by_eval_type_and_page(api: Console, catalog: FakeCatalog) -> None:
    manual = api.walk(EVAL, "DescribeEvalTasks", 3, evalType="manual")
    auto = api.walk(EVAL, "DescribeEvalTasks", 3, evalType="auto")
    assert manual and auto
    assert {t["evalType"] for t in manual} == {"manual"}
    assert {t["evalType"] for t in auto} == {"auto"}
    assert sorted(t["taskId"] for t in manual + auto) == sorted(catalog.keys("eval_task"))
    for task in manual + auto:
        assert set(task) == EVAL_TASK_ITEM and _id("ame-").match(task["taskId"])
        assert task["state"] in EVAL_STATES


def test_eval_tasks_key_filter_by_name_id_or_version(api: Console, catalog: FakeCatalog) -> None:
    tasks = api.walk(EVAL, "DescribeEvalTasks", 100, evalType="auto")
    task = tasks[0]
    by_name = api.walk(
        EVAL, "DescribeEvalTasks", 100, evalType="auto", keyFilter=task["taskName"][:4]
    )
    assert task in by_name and all(task["taskName"][:4] in t["taskName"] for t in by_name)
    by_id = api.walk(EVAL, "DescribeEvalTasks", 100, evalType="auto", keyFilter=task["taskId"])
    assert by_id == [task]
    reported = next(t for t in tasks if t["state"] == "Successed")
    model_id = next(
        u["modelId"] for u in catalog.served("DescribeEvalTaskReport", reported["taskId"])
    )
    by_version = api.walk(EVAL, "DescribeEvalTasks", 100, evalType="auto", keyFilter=model_id)
    assert reported in by_version
    # Exact on a version id: a part of it matches nothing.
    assert api.walk(EVAL, "DescribeEvalTasks", 100, evalType="auto", keyFilter=model_id[:-1]) == []


def test_eval_task_detail_keeps_the_vendor_spelling(api: Console, catalog: FakeCatalog) -> None:
    assert api.error(EVAL, "DescribeEvalTask", {}) == (400, "InvalidRequest")
    assert api.error(EVAL, "DescribeEvalTask", {"taskId": "ame-nosuchtask00"})[0] == 404
    states = set()
    for task_id in catalog.keys("eval_task"):
        task = api.result(EVAL, "DescribeEvalTask", {"taskId": task_id})
        assert set(task) == EVAL_TASK and task["taskId"] == task_id
        states.add(task["state"])
    assert "Successed" in states and "Succeeded" not in states
    assert states <= EVAL_STATES


def test_the_report_is_a_list_of_units_naming_real_versions(
    api: Console, catalog: FakeCatalog
) -> None:
    assert api.error(EVAL, "DescribeEvalTaskReport", {}) == (400, "InvalidRequest")
    assert api.error(EVAL, "DescribeEvalTaskReport", {"taskId": "ame-nosuchtask00"})[0] == 404
    versions = set(catalog.keys("model_version"))
    units_seen = 0
    for task_id in catalog.keys("eval_task"):
        task = api.result(EVAL, "DescribeEvalTask", {"taskId": task_id})
        report = api.result(EVAL, "DescribeEvalTaskReport", {"taskId": task_id})
        assert isinstance(report, list)
        if task["state"] != "Successed":
            assert report == []
            continue
        assert report
        for unit in report:
            units_seen += 1
            assert set(unit) == REPORT_UNIT
            assert (unit["taskId"], unit["taskName"]) == (task_id, task["taskName"])
            assert unit["evalObjectType"] in ("model", "inferDataset")
            assert unit["evalMode"] in ("rule", "model", "manual", "rule,model")
            if unit["evalObjectType"] == "model":
                assert unit["modelId"] in versions
            metrics = unit["effectMetric"]
            assert metrics and all(isinstance(v, int | float) for v in metrics.values())
        assert report == catalog.served("DescribeEvalTaskReport", task_id)
    assert units_seen


def test_eval_result_export_tasks_sign_a_fresh_link(api: Console, catalog: FakeCatalog) -> None:
    assert api.error(EVAL, "DescribeEvalResultExportTask", {}) == (400, "InvalidRequest")
    assert api.error(EVAL, "DescribeEvalResultExportTask", {"taskId": "amemt-nosuchtask0"})[0] == (
        404
    )
    # The V1 export ids are another kind: the V2 call does not know them (INVENTED).
    v1 = catalog.get("eval_result_export", catalog.keys("eval_result_export")[0])["exportIDStr"]
    assert api.error(EVAL, "DescribeEvalResultExportTask", {"taskId": v1})[0] == 404
    evals = set(catalog.keys("eval_task"))
    linked = 0
    for key in catalog.keys("eval_result_export_task"):
        first = api.result(EVAL, "DescribeEvalResultExportTask", {"taskId": key})
        assert set(first) == EXPORT_TASK and _id("amemt-").match(first["taskId"])
        assert first["evalId"] in evals
        assert first["state"] in ("Queued", "Running", "Failed", "Succeeded")
        assert first["storageType"] in ("BOS", "sysStorage")
        assert first["exportContent"] and set(first["exportContent"]) <= {
            "prompt",
            "prediction",
            "completion",
            "metrics",
            "system",
        }
        if first["downloadUrl"]:
            linked += 1
            second = api.result(EVAL, "DescribeEvalResultExportTask", {"taskId": key})
            one, two = urlsplit(first["downloadUrl"]), urlsplit(second["downloadUrl"])
            assert one.path == two.path and one.query and one.query != two.query
            stored = catalog.served("DescribeEvalResultExportTask", key)["downloadUrl"]
            assert first["downloadUrl"].split("?")[0] == stored
    assert linked


# ---------------------------------------------------------------------- services


def test_services_page_with_the_invented_item(api: Console, catalog: FakeCatalog) -> None:
    services = api.walk(SVC, "DescribeServices", 5)
    assert [s["serviceId"] for s in services] == catalog.keys("service")
    result = api.result(SVC, "DescribeServices")
    assert set(result) == {"serviceList", "pageInfo"} and result["pageInfo"]["maxKeys"] == 10
    versions = catalog.snapshot()["model_version"]
    for service in services:
        assert set(service) == SERVICE_ITEM and _id("svco-").match(service["serviceId"])
        assert service["runStatus"] in SERVICE_STATUSES
        assert service["modelId"] in versions
        assert versions[service["modelId"]]["modelSetId"] == service["modelSetId"]


def test_services_filters(api: Console, catalog: FakeCatalog) -> None:
    services = api.walk(SVC, "DescribeServices", 100)

    def listed(**body: Any) -> list[str]:
        return [s["serviceId"] for s in api.walk(SVC, "DescribeServices", 100, **body)]

    serving = [s["serviceId"] for s in services if s["runStatus"] == "Serving"]
    assert serving and listed(runStatus=["Serving"]) == serving
    assert listed(runStatus=["Serving", "Failed"]) == [
        s["serviceId"] for s in services if s["runStatus"] in ("Serving", "Failed")
    ]
    assert listed(serviceType=["text2image"]) == []
    name = services[0]["name"]
    assert services[0]["serviceId"] in listed(name=name[1:-1].upper())
    details = {
        k: api.result(SVC, "DescribeService", {"serviceId": k}) for k in catalog.keys("service")
    }
    tokens = [k for k, d in details.items() if d["chargeType"] == "Tokens"]
    assert listed(chargeType="Tokens") == tokens
    prepay = [k for k, d in details.items() if "Prepay" in d["payType"].split(",")]
    assert listed(payType="Prepay") == prepay
    assert listed(creator=["someone-else"]) == [] and listed(protocolVersion=2) == listed()
    assert api.error(SVC, "DescribeServices", {"serviceType": "chat"}) == (400, "InvalidRequest")
    assert api.error(SVC, "DescribeServices", {"protocolVersion": 3}) == (400, "InvalidRequest")


def test_service_detail_has_the_documented_fields(api: Console, catalog: FakeCatalog) -> None:
    assert api.error(SVC, "DescribeService", {}) == (400, "InvalidRequest")
    presets = catalog.keys("preset_service")
    assert api.error(SVC, "DescribeService", {"serviceId": presets[0]})[0] == 404
    versions = catalog.snapshot()["model_version"]
    for key in catalog.keys("service"):
        service = api.result(SVC, "DescribeService", {"serviceId": key})
        assert set(service) == SERVICE
        assert set(service["resourceConfig"]) == {"type", "replicasCount", "qps"}
        assert service["resourceConfig"]["type"] in ("GPU-I-2", "GPU-I-4", "CPU-I-2")
        assert service["runStatus"] in SERVICE_STATUSES and service["updateStatus"] == "None"
        assert service["chargeType"] in ("ComputingUnit", "Tokens")
        assert service["payType"] in ("Prepay", "Postpay", "Prepay,Postpay")
        assert service["chargeStatus"] in ("NotOpen", "Opened", "Free")
        assert service["serviceType"] in ("chat", "completions")
        version = versions[service["modelId"]]
        assert (service["modelSetId"], service["baseModel"]) == (
            version["modelSetId"],
            version["model"],
        )


def test_preset_services_come_all_at_once(api: Console, catalog: FakeCatalog) -> None:
    result = api.result(SVC, "DescribePresetServices", {"maxKeys": 1})
    assert set(result) == {"serviceList"}
    presets = result["serviceList"]
    assert [p["serviceId"] for p in presets] == catalog.keys("preset_service")
    for preset in presets:
        assert set(preset) == PRESET and _id("svcp-").match(preset["serviceId"])
        assert preset["serviceType"] in ("chat", "completions", "text2image", "image2text")
        assert preset["chargeType"] in ("TPM", "Tokens", "Calls", "Free")
        assert preset["chargeStatus"] in ("NotOpen", "Opened", "Stopped", "Free")
    one = presets[1]["serviceId"]
    assert api.result(SVC, "DescribePresetServices", {"serviceIds": [one]})["serviceList"] == [
        presets[1]
    ]
    kind = presets[0]["serviceType"]
    assert api.result(SVC, "DescribePresetServices", {"serviceType": [kind]})["serviceList"] == [
        p for p in presets if p["serviceType"] == kind
    ]
    assert api.error(SVC, "DescribePresetServices", {"serviceIds": one}) == (400, "InvalidRequest")


# ---------------------------------------------------------------------- routes and IAM


@pytest.mark.parametrize(
    ("route", "action"),
    [
        (MODEL, "DescribeServices"),
        (MODEL, "DescribeFineTuningJobs"),
        (EVAL, "DescribeService"),
        (SVC, "DescribeModel"),
        (FT, "DescribeEvalTask"),
        (SVC, "DescribeNothing"),
        (FT, ""),
    ],
)
def test_each_route_takes_only_its_own_actions(api: Console, route: str, action: str) -> None:
    assert api.error(route, action, {"jobId": "x", "serviceId": "x", "modelId": "x"}) == (
        400,
        "InvalidAction",
    )


def test_an_unknown_route_is_still_invalid_uri(api: Console) -> None:
    assert api.error("/v2/dataset", "DescribeDatasets") == (400, "InvalidURI")


def test_non_json_body_on_a_new_route_is_invalid_request(api: Console) -> None:
    response = api.post(SVC, "DescribeServices", [])
    assert (response.status_code, response.json()["code"]) == (400, "InvalidRequest")


@pytest.mark.parametrize("denied", ["DescribeServices", "DescribePresetServices"])
def test_the_service_listings_can_be_denied(catalog: FakeCatalog, denied: str) -> None:
    with FakeServer(catalog, AK, SK, denied_actions={denied}) as srv:
        api = Console(srv)
        response = api.post(SVC, denied, {})
        assert response.status_code == 403
        assert response.json()["code"] == "AccessDenied"
        assert response.headers["X-Bce-Error-Code"] == "AccessDenied"
        key = catalog.keys("service")[0]
        assert api.result(SVC, "DescribeService", {"serviceId": key})["serviceId"] == key


def test_page_faults_apply_to_the_new_listings(catalog: FakeCatalog) -> None:
    plan = FaultPlan().once("DescribeFineTuningJobs", "page_loop")
    with FakeServer(catalog, AK, SK, faults=plan) as srv:
        info = Console(srv).result(FT, "DescribeFineTuningJobs", {"maxKeys": 2})["pageInfo"]
    assert info["isTruncated"] and info["nextMarker"] == catalog.keys("fine_tuning_job")[0]


# ---------------------------------------------------------------------- mutations


def _ft_detail(api: Console, task_id: str) -> dict[str, Any]:
    result: dict[str, Any] = api.result(FT, "DescribeFineTuningTask", {"taskId": task_id})
    return result


def test_a_fine_tuning_task_runs_and_finishes(api: Console, catalog: FakeCatalog) -> None:
    rng = random.Random(4)
    task_id = next(
        k
        for k in catalog.keys("fine_tuning_task")
        if catalog.get("fine_tuning_task", k)["runStatus"] == "Waiting"
    )
    assert "runProgress" not in _ft_detail(api, task_id)
    changed = catalog.change("fine_tuning_task", task_id, rng, status="Running")
    running = _ft_detail(api, task_id)
    assert running["runStatus"] == "Running" and changed["runProgress"] == running["runProgress"]
    assert running["finishDate"] == FT_ZERO and "metrics" not in running
    catalog.change("fine_tuning_task", task_id, rng, status="Done")
    done = _ft_detail(api, task_id)
    assert done["runStatus"] == "Done" and "runProgress" not in done
    assert done["finishDate"] != FT_ZERO and done["metrics"]
    listed = api.walk(FT, "DescribeFineTuningTasks", 100, jobId=done["jobId"])
    assert next(t for t in listed if t["taskId"] == task_id)["runStatus"] == "Done"
    with pytest.raises(ValueError, match="already"):
        catalog.change("fine_tuning_task", task_id, rng, status="Done")
    with pytest.raises(ValueError):
        catalog.change("fine_tuning_task", task_id, rng, status="Succeeded")


def test_a_running_task_changed_while_running_gets_further(catalog: FakeCatalog) -> None:
    """What a re-sync of a still-running task must pick up: the same status, more progress."""
    task_id = catalog.keys("fine_tuning_task")[0]
    further = 0
    for seed in range(30):
        rng = random.Random(seed)
        if catalog.get("fine_tuning_task", task_id)["runStatus"] != "Running":
            catalog.change("fine_tuning_task", task_id, rng, status="Running")
        before = int(catalog.get("fine_tuning_task", task_id)["runProgress"][:-1])
        changed = catalog.change("fine_tuning_task", task_id, rng)
        after = catalog.get("fine_tuning_task", task_id)
        if after["runStatus"] == "Running":
            assert int(after["runProgress"][:-1]) > before or before == 99
            assert set(changed) <= {"runProgress"}
            further += 1
        else:
            assert "runProgress" not in after and changed["runStatus"] == after["runStatus"]
    assert further


def test_renaming_a_job_renames_its_tasks(api: Console, catalog: FakeCatalog) -> None:
    job_id = catalog.keys("fine_tuning_job")[2]
    changed = catalog.change("fine_tuning_job", job_id, random.Random(1))
    tasks = api.walk(FT, "DescribeFineTuningTasks", 100, jobId=job_id)
    job = catalog.get("fine_tuning_job", job_id)
    assert changed and all(
        (t["jobName"], t["jobDescription"]) == (job["name"], job["description"]) for t in tasks
    )


def test_an_eval_task_succeeding_makes_its_report(api: Console, catalog: FakeCatalog) -> None:
    rng = random.Random(8)
    task_id = next(
        k for k in catalog.keys("eval_task") if catalog.get("eval_task", k)["state"] == "Running"
    )
    assert api.result(EVAL, "DescribeEvalTaskReport", {"taskId": task_id}) == []
    assert catalog.change("eval_task", task_id, rng, status="Successed") == {"state": "Successed"}
    assert api.result(EVAL, "DescribeEvalTask", {"taskId": task_id})["state"] == "Successed"
    report = api.result(EVAL, "DescribeEvalTaskReport", {"taskId": task_id})
    assert report and task_id in catalog.keys("eval_task_report")
    changed = catalog.change("eval_task_report", task_id, rng)
    rescored = api.result(EVAL, "DescribeEvalTaskReport", {"taskId": task_id})
    assert rescored != report and rescored == catalog.served("DescribeEvalTaskReport", task_id)
    assert [u["effectMetric"] for u in changed["units"]] == [u["effectMetric"] for u in rescored]
    catalog.change("eval_task", task_id, rng, status="Stopped")
    assert api.result(EVAL, "DescribeEvalTaskReport", {"taskId": task_id}) == []
    assert task_id not in catalog.keys("eval_task_report")


def test_a_service_status_change_is_served(api: Console, catalog: FakeCatalog) -> None:
    key = catalog.keys("service")[0]
    old = catalog.get("service", key)["runStatus"]
    new = next(s for s in sorted(SERVICE_STATUSES) if s != old)
    assert catalog.change("service", key, random.Random(2), status=new) == {"runStatus": new}
    assert api.result(SVC, "DescribeService", {"serviceId": key})["runStatus"] == new
    listed = api.walk(SVC, "DescribeServices", 100, runStatus=[new])
    assert key in [s["serviceId"] for s in listed]


@pytest.mark.parametrize("kind", LIFECYCLE_KINDS)
def test_change_really_changes_every_lifecycle_kind(catalog: FakeCatalog, kind: str) -> None:
    rng = random.Random(kind)
    for key in catalog.keys(kind)[:5]:
        before = catalog.get(kind, key)
        changed = catalog.change(kind, key, rng)
        after = catalog.get(kind, key)
        assert changed and after != before
        for name, value in changed.items():
            assert after.get(name) == value and before.get(name) != value, name


def test_removing_a_job_takes_its_tasks_and_restore_brings_them_back_in_order(
    api: Console, catalog: FakeCatalog
) -> None:
    before = catalog.snapshot()
    listed = [
        t["taskId"]
        for t in api.walk(
            FT, "DescribeFineTuningTasks", 100, jobId=catalog.keys("fine_tuning_job")[1]
        )
    ]
    job_id = catalog.keys("fine_tuning_job")[1]
    removed = catalog.remove("fine_tuning_job", job_id)
    assert job_id not in [j["jobId"] for j in api.walk(FT, "DescribeFineTuningJobs", 100)]
    assert api.error(FT, "DescribeFineTuningTasks", {"jobId": job_id})[0] == 404
    assert all(api.error(FT, "DescribeFineTuningTask", {"taskId": t})[0] == 404 for t in listed)
    assert not set(listed) & set(catalog.keys("fine_tuning_task"))
    catalog.restore("fine_tuning_job", removed)
    assert catalog.snapshot() == before
    assert catalog.keys("fine_tuning_task") == list(before["fine_tuning_task"])
    assert [
        t["taskId"] for t in api.walk(FT, "DescribeFineTuningTasks", 100, jobId=job_id)
    ] == listed


def test_removing_an_eval_task_takes_its_report(api: Console, catalog: FakeCatalog) -> None:
    before = catalog.snapshot()
    task_id = next(iter(before["eval_task_report"]))
    removed = catalog.remove("eval_task", task_id)
    assert task_id not in catalog.keys("eval_task_report")
    assert api.error(EVAL, "DescribeEvalTaskReport", {"taskId": task_id})[0] == 404
    catalog.restore("eval_task", removed)
    assert catalog.snapshot() == before


@pytest.mark.parametrize("kind", ["eval_result_export_task", "service", "preset_service"])
def test_remove_and_restore_lifecycle_leaves(api: Console, catalog: FakeCatalog, kind: str) -> None:
    before = catalog.snapshot()
    key = catalog.keys(kind)[1]
    removed = catalog.remove(kind, key)
    if kind == "service":
        assert key not in [s["serviceId"] for s in api.walk(SVC, "DescribeServices", 100)]
    elif kind == "preset_service":
        presets = api.result(SVC, "DescribePresetServices")["serviceList"]
        assert key not in [p["serviceId"] for p in presets]
    else:
        assert api.error(EVAL, "DescribeEvalResultExportTask", {"taskId": key})[0] == 404
    catalog.restore(kind, removed)
    assert catalog.snapshot() == before
    assert catalog.keys(kind) == list(before[kind])


def test_added_lifecycle_objects_are_served_and_linked(api: Console, catalog: FakeCatalog) -> None:
    rng = random.Random(12)
    job_id = catalog.add("fine_tuning_job", rng)
    assert job_id in [j["jobId"] for j in api.walk(FT, "DescribeFineTuningJobs", 100)]
    assert len(api.walk(FT, "DescribeFineTuningTasks", 100, jobId=job_id)) == 1
    task_id = catalog.add("fine_tuning_task", rng, parent=job_id)
    assert _ft_detail(api, task_id)["jobId"] == job_id
    with pytest.raises(KeyError):
        catalog.add("fine_tuning_task", rng, parent="job-nosuchjob000")
    custom = next(k for k in catalog.keys("model_version") if not catalog.is_preset_version(k))
    eval_id = catalog.add("eval_task", rng, parent=custom)
    report = api.result(EVAL, "DescribeEvalTaskReport", {"taskId": eval_id})
    assert custom in [u["modelId"] for u in report]
    export_id = catalog.add("eval_result_export_task", rng, parent=eval_id)
    assert api.result(EVAL, "DescribeEvalResultExportTask", {"taskId": export_id})["evalId"] == (
        eval_id
    )
    service_id = catalog.add("service", rng, parent=custom)
    assert api.result(SVC, "DescribeService", {"serviceId": service_id})["modelId"] == custom
    preset = next(k for k in catalog.keys("model_version") if catalog.is_preset_version(k))
    with pytest.raises(ValueError, match="preset"):
        catalog.add("service", rng, parent=preset)
    preset_id = catalog.add("preset_service", rng)
    presets = api.result(SVC, "DescribePresetServices")["serviceList"]
    assert preset_id == presets[-1]["serviceId"]
    without = next(
        k for k in catalog.keys("eval_task") if k not in catalog.keys("eval_task_report")
    )
    assert catalog.add("eval_task_report", rng, parent=without) == without
    assert api.result(EVAL, "DescribeEvalTask", {"taskId": without})["state"] == "Successed"
    with pytest.raises(ValueError):
        catalog.add("eval_task_report", rng, parent=without)


def test_an_added_train_version_names_a_real_fine_tuning_task(catalog: FakeCatalog) -> None:
    rng = random.Random(5)
    custom_set = next(k for k in catalog.keys("model_set") if not catalog.is_preset_set(k))
    train = []
    for _ in range(40):
        model_id = catalog.add("model_version", rng, parent=custom_set)
        source = catalog.get("model_version", model_id)["sourceInfo"]
        if source["sourceType"] == "Train":
            train.append(source["trainTaskId"])
    assert train and set(train) <= set(catalog.keys("fine_tuning_task"))


def test_patches_drift_the_new_answers(api: Console, catalog: FakeCatalog) -> None:
    key = catalog.keys("service")[0]
    catalog.patch(
        "service", key, drop={"createTime"}, fields={"region": "bj"}, actions={"DescribeServices"}
    )
    listed = next(s for s in api.walk(SVC, "DescribeServices", 100) if s["serviceId"] == key)
    assert "createTime" not in listed and listed["region"] == "bj"
    assert "createTime" in api.result(SVC, "DescribeService", {"serviceId": key})
    task_id = next(iter(catalog.keys("eval_task_report")))
    catalog.patch("eval_task_report", task_id, drop={"evalMode"}, fields={"unitId": 1})
    report = api.result(EVAL, "DescribeEvalTaskReport", {"taskId": task_id})
    assert report and all("evalMode" not in u and u["unitId"] == 1 for u in report)
    with pytest.raises(ValueError):
        catalog.patch("service", key, fields={"x": 1}, actions={"DescribePresetServices"})
