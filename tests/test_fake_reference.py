"""The fake answers as /work/shared/api/REFERENCE.md documents, per call.

The expected field lists are written out here, from the reference sheet, rather than imported from
the fake: a test that read the fake's own tables would agree with any mistake in them.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from catalog.api.auth import BceAuth
from catalog.fake import EVAL_ROUTE, FakeCatalog, FakeServer, serve
from tests.test_fake_server import AK, SK, Api

CUSTOM_SET_ITEM = {
    "modelSetId",
    "modelSetName",
    "modelType",
    "labels",
    "createTime",
    "modifyTime",
    "modelCount",
    "modelIds",
    "modelNames",
}
SYSTEM_SET_ITEM = {
    "modelSetId",
    "modelSetName",
    "modelType",
    "description",
    "modifyTime",
    "modelCount",
    "modelIds",
    "modelNames",
}
SYSTEM_SET = {
    "modelSetId",
    "modelSetName",
    "modelType",
    "createTime",
    "modifyTime",
    "description",
    "modelIds",
    "modelNames",
}
SYSTEM_MODEL = {
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
}
COMP_TASK = {
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
}
#: The listing item: what the fake served before the documents were checked, minus failedReason.
COMP_TASK_ITEM = COMP_TASK - {"failedReason"}


@pytest.fixture
def catalog() -> FakeCatalog:
    return FakeCatalog.generate(seed=21, model_sets=6, versions_per_set=3, comp_tasks=60)


@pytest.fixture
def server(catalog: FakeCatalog) -> Iterator[FakeServer]:
    with FakeServer(catalog, AK, SK) as running:
        yield running


@pytest.fixture
def api(server: FakeServer) -> Api:
    return Api(server)


def _items(api: Api, action: str, list_key: str) -> list[dict[str, Any]]:
    return [item for page in api.walk(action, 2) for item in page[list_key]]


def _custom_sets(api: Api) -> list[dict[str, Any]]:
    return _items(api, "DescribeCustomModelSets", "customModelSetList")


def _system_sets(api: Api) -> list[dict[str, Any]]:
    return _items(api, "DescribeSystemModelSets", "systemModelSetList")


def _version_name(api: Api, catalog: FakeCatalog, model_id: str) -> str:
    action = "DescribeSystemModel" if catalog.is_preset_version(model_id) else "DescribeModel"
    return str(api.result(action, {"modelId": model_id})["modelName"])


# ---------------------------------------------------------------------- model-set listings


def test_listing_items_carry_exactly_the_documented_fields(api: Api, catalog: FakeCatalog) -> None:
    custom, system = _custom_sets(api), _system_sets(api)
    assert custom and system
    assert all(set(item) == CUSTOM_SET_ITEM for item in custom)
    assert all(set(item) == SYSTEM_SET_ITEM for item in system)
    for item in custom + system:
        stored = catalog.get("model_set", item["modelSetId"])
        assert item["modelIds"] == stored["modelIds"] and item["modelIds"]
        assert item["modelCount"] == len(item["modelIds"])
        names = [_version_name(api, catalog, m) for m in item["modelIds"]]
        assert item["modelNames"] == names


@pytest.mark.parametrize("preset", [False, True])
def test_listing_counts_follow_version_mutations(
    api: Api, catalog: FakeCatalog, preset: bool
) -> None:
    def listed(set_id: str) -> dict[str, Any]:
        items = _system_sets(api) if preset else _custom_sets(api)
        return next(item for item in items if item["modelSetId"] == set_id)

    set_id = next(k for k in catalog.keys("model_set") if catalog.is_preset_set(k) == preset)
    before = listed(set_id)
    model_id = catalog.add("model_version", random.Random(3), parent=set_id)
    added = listed(set_id)
    assert added["modelIds"] == [*before["modelIds"], model_id]
    assert added["modelNames"] == [*before["modelNames"], _version_name(api, catalog, model_id)]
    assert added["modelCount"] == before["modelCount"] + 1
    gone = before["modelIds"][0]
    removed = catalog.remove("model_version", gone)
    shrunk = listed(set_id)
    assert gone not in shrunk["modelIds"]
    assert shrunk["modelCount"] == before["modelCount"] == len(shrunk["modelNames"])
    catalog.restore("model_version", removed)
    assert listed(set_id)["modelIds"] == added["modelIds"]
    assert listed(set_id)["modelNames"] == added["modelNames"]


# ---------------------------------------------------------------------- preset calls


def test_describe_system_model_set_by_id_or_name(api: Api, catalog: FakeCatalog) -> None:
    set_id = next(k for k in catalog.keys("model_set") if catalog.is_preset_set(k))
    stored = catalog.get("model_set", set_id)
    by_id = api.result("DescribeSystemModelSet", {"modelSetId": set_id})
    by_name = api.result("DescribeSystemModelSet", {"modelSetName": stored["modelSetName"]})
    assert by_id == by_name
    assert set(by_id) == SYSTEM_SET
    assert by_id["modelIds"] == stored["modelIds"]
    assert by_id["createTime"] == stored["createTime"] and by_id["description"]
    assert len(by_id["modelNames"]) == len(by_id["modelIds"])
    for body in ({}, {"modelSetId": set_id, "modelSetName": stored["modelSetName"]}):
        assert api.v2("DescribeSystemModelSet", body).status_code == 400


def test_describe_system_model_has_the_14_documented_fields(api: Api, catalog: FakeCatalog) -> None:
    presets = [m for m in catalog.keys("model_version") if catalog.is_preset_version(m)]
    assert presets
    for model_id in presets:
        served = api.result("DescribeSystemModel", {"modelId": model_id})
        assert set(served) == SYSTEM_MODEL
        assert served["modelId"] == model_id and served["status"] == "Ready"
        assert set(served["capabilities"]) <= {"reasoning", "function_call", "web_search"}
        assert served["modelProviders"] and all(served["modelProviders"])
        for flag in ("isSupportDeploy", "isSupportModelComp", "isSupportEvaluation"):
            assert isinstance(served[flag], bool)


def _custom_set(catalog: FakeCatalog) -> str:
    return next(k for k in catalog.keys("model_set") if not catalog.is_preset_set(k))


def _preset_set(catalog: FakeCatalog) -> str:
    return next(k for k in catalog.keys("model_set") if catalog.is_preset_set(k))


def _refusals(catalog: FakeCatalog) -> list[tuple[str, dict[str, Any]]]:
    custom_set, preset_set = _custom_set(catalog), _preset_set(catalog)
    custom_version = catalog.get("model_set", custom_set)["modelIds"][0]
    preset_version = catalog.get("model_set", preset_set)["modelIds"][0]
    preset_name = catalog.get("model_set", preset_set)["modelSetName"]
    custom_name = catalog.get("model_set", custom_set)["modelSetName"]
    return [
        ("DescribeModelSet", {"modelSetId": preset_set}),
        ("DescribeModelSet", {"modelSetName": preset_name}),
        ("DescribeModel", {"modelId": preset_version}),
        ("DescribeModelExportTask", {"modelId": preset_version}),
        ("DescribeSystemModelSet", {"modelSetId": custom_set}),
        ("DescribeSystemModelSet", {"modelSetName": custom_name}),
        ("DescribeSystemModel", {"modelId": custom_version}),
    ]


def test_custom_and_preset_calls_refuse_each_others_ids(api: Api, catalog: FakeCatalog) -> None:
    for action, body in _refusals(catalog):
        response = api.v2(action, body)
        assert response.status_code == 404, (action, body)
        payload = response.json()
        assert set(payload) == {"requestId", "code", "message"}
        assert payload["code"] == "ResourceNotFound"


def test_describe_model_set_keeps_seed_003_shape(api: Api, catalog: FakeCatalog) -> None:
    """The sync resolves --model-set NAME with it: source and modelIds must stay."""
    set_id = _custom_set(catalog)
    served = api.result("DescribeModelSet", {"modelSetId": set_id})
    assert served["source"] == "UserCreate" and served["modelIds"]
    assert {"modelSetId", "modelSetName", "modelType", "labels"} <= set(served)


# ---------------------------------------------------------------------- compression tasks


def test_comp_task_detail_and_listing_fields(api: Api, catalog: FakeCatalog) -> None:
    listed = _items(api, "DescribeModelCompTasks", "modelCompTaskList")
    assert [t["id"] for t in listed] == catalog.keys("compression_task")
    statuses = set()
    for item in listed:
        assert "failedReason" not in item
        assert {"id", "name", "description", "status", "sourceModelId", "modelId"} <= set(item)
        assert set(item) <= COMP_TASK_ITEM
        detail = api.result("DescribeModelCompTask", {"modelCompTaskId": item["id"]})
        statuses.add(detail["status"])
        assert set(detail) <= COMP_TASK
        assert COMP_TASK - {"modelId", "finishTime"} <= set(detail)
        assert ("modelId" in detail) == (detail["status"] == "succeeded")
        assert bool(detail["failedReason"]) == (detail["status"] == "failed")
        if detail["status"] == "failed":
            assert item["modelId"] == ""  # documented: empty output model for a failed task
        for name in ("name", "description", "status", "sourceModelId", "config", "createTime"):
            assert detail[name] == item[name]
    assert {"failed", "succeeded"} <= statuses
    assert api.v2("DescribeModelCompTask", {}).status_code == 400


def test_default_catalog_has_several_failed_tasks_with_reasons() -> None:
    tasks = FakeCatalog.generate().snapshot()["compression_task"].values()
    failed = [t for t in tasks if t["status"] == "failed"]
    assert len(failed) >= 3
    assert all(t["failedReason"].strip() and t["modelId"] == "" for t in failed)
    assert len({t["failedReason"] for t in failed}) >= 2


def test_change_moves_a_task_into_failed_with_a_reason(api: Api, catalog: FakeCatalog) -> None:
    rng = random.Random(5)
    task_id = next(
        k
        for k in catalog.keys("compression_task")
        if catalog.get("compression_task", k)["status"] == "succeeded"
    )
    changed = catalog.change("compression_task", task_id, rng, status="failed")
    assert changed["status"] == "failed" and changed["failedReason"]
    assert changed["modelId"] == ""
    detail = api.result("DescribeModelCompTask", {"modelCompTaskId": task_id})
    assert detail["failedReason"] == changed["failedReason"] and "modelId" not in detail
    assert detail["finishTime"] == changed["finishTime"]
    again = catalog.change("compression_task", task_id, rng, status="running")
    assert again["failedReason"] == ""
    assert api.result("DescribeModelCompTask", {"modelCompTaskId": task_id})["failedReason"] == ""
    with pytest.raises(ValueError):
        catalog.change("compression_task", task_id, rng, status="Running")  # wrong casing
    with pytest.raises(ValueError):
        catalog.change("compression_task", task_id, rng, status="running")  # already


def test_random_changes_reach_failed_with_a_reason(catalog: FakeCatalog) -> None:
    rng = random.Random(8)
    task_id = catalog.keys("compression_task")[0]
    for _ in range(200):
        catalog.change("compression_task", task_id, rng)
        task = catalog.get("compression_task", task_id)
        assert bool(task["failedReason"]) == (task["status"] == "failed")
        if task["status"] == "failed":
            return
    raise AssertionError("200 random changes never failed the task")


# ---------------------------------------------------------------------- status casing


def test_status_casing_per_resource(api: Api, catalog: FakeCatalog) -> None:
    rng = random.Random(2)
    for kind in ("model_version", "compression_task", "model_export", "eval_result_export"):
        for key in catalog.keys(kind)[:8]:
            catalog.change(kind, key, rng)  # changes must keep the casing too
    versions = set()
    for model_id in catalog.keys("model_version"):
        action = "DescribeSystemModel" if catalog.is_preset_version(model_id) else "DescribeModel"
        versions.add(api.result(action, {"modelId": model_id})["status"])
    tasks = {t["status"] for t in _items(api, "DescribeModelCompTasks", "modelCompTaskList")}
    exports = {
        api.result("DescribeModelExportTask", {"modelId": m})["state"]
        for m in catalog.keys("model_export")
    }
    evals = {
        api.eval({"exportID": k}).json()["result"]["state"]
        for k in catalog.keys("eval_result_export")
    }
    assert versions <= {"Ready", "Creating", "Fail"}
    assert tasks <= {"creating", "running", "succeeded", "failed", "stopping", "stopped"}
    assert exports <= {"Doing", "Done"}  # failed exports are not returned
    assert evals <= {"Pending", "Uploading", "Fail", "Done"}
    assert len(tasks) >= 4 and exports == {"Doing", "Done"}


def test_eval_log_id_is_an_int(api: Api, catalog: FakeCatalog) -> None:
    payload = api.eval({"exportID": catalog.keys("eval_result_export")[0]}).json()
    assert isinstance(payload["log_id"], int)


def test_unknown_route_is_the_bce_invalid_uri(api: Api, server: FakeServer) -> None:
    response = api.session.post(f"{server.url}/v2/nowhere", json={}, timeout=10)
    assert response.status_code == 400 and response.json()["code"] == "InvalidURI"


# ---------------------------------------------------------------------- permissions


def _assert_access_denied(response: requests.Response) -> None:
    assert response.status_code == 403
    assert set(response.json()) == {"requestId", "code", "message"}
    assert response.json()["code"] == "AccessDenied" and response.json()["message"]
    assert response.headers["X-Bce-Error-Code"] == "AccessDenied"
    assert response.headers["X-Bce-Error-Message"] == response.json()["message"]


def test_denied_actions_answer_access_denied(catalog: FakeCatalog) -> None:
    denied = {"DescribeModelExportTask", EVAL_ROUTE}
    model_id = catalog.keys("model_export")[0]
    with FakeServer(catalog, AK, SK, denied_actions=denied) as srv:
        api = Api(srv)
        _assert_access_denied(api.v2("DescribeModelExportTask", {"modelId": model_id}))
        _assert_access_denied(api.eval({"exportID": catalog.keys("eval_result_export")[0]}))
        assert api.v2("DescribeModel", {"modelId": model_id}).status_code == 200
        # The signature is checked first: a bad one is not told whether it would be allowed.
        wrong = Api(srv, AK, "wrong-sk").v2("DescribeModelExportTask", {"modelId": model_id})
        assert wrong.json()["code"] == "SignatureDoesNotMatch"
        assert [c.status for c in srv.calls] == [403, 403, 200, 403]
    with pytest.raises(TypeError):
        FakeServer(catalog, denied_actions="DescribeModel")


def test_serve_accepts_denied_actions(monkeypatch: pytest.MonkeyPatch) -> None:
    lines: list[str] = []
    statuses: list[int] = []

    def call_then_interrupt() -> None:
        url = lines[0].split(" on ")[1].split(" ")[0]
        with requests.Session() as session:
            session.auth = BceAuth("fake-ak", "fake-sk")
            for action in ("DescribeCustomModelSets", "DescribeModelCompTasks"):
                response = session.post(
                    f"{url}/v2/model", params={"Action": action}, json={}, timeout=10
                )
                statuses.append(response.status_code)
        raise KeyboardInterrupt

    monkeypatch.setattr("catalog.fake.server._until_interrupted", call_then_interrupt)
    serve(port=0, comp_tasks=3, echo=lines.append, denied_actions=["DescribeModelCompTasks"])
    assert statuses == [200, 403]


# ---------------------------------------------------------------------- drift, made on purpose


def test_patch_adds_and_drops_fields_per_call(api: Api, catalog: FakeCatalog) -> None:
    set_id = _custom_set(catalog)
    before = catalog.snapshot()

    def listed() -> dict[str, Any]:
        return next(s for s in _custom_sets(api) if s["modelSetId"] == set_id)

    catalog.patch(
        "model_set",
        set_id,
        fields={"undocumentedField": ["x"]},
        drop=["modelNames"],
        actions=["DescribeCustomModelSets"],
    )
    item = listed()
    assert item["undocumentedField"] == ["x"] and "modelNames" not in item
    detail = api.result("DescribeModelSet", {"modelSetId": set_id})
    assert "undocumentedField" not in detail  # only the listing was patched
    catalog.patch("model_set", set_id, drop=["modelType"])  # every call serving the set
    assert "modelType" not in listed()
    assert "modelType" not in api.result("DescribeModelSet", {"modelSetId": set_id})
    assert catalog.snapshot() == before  # what is stored did not change
    catalog.unpatch("model_set", set_id)
    assert set(listed()) == CUSTOM_SET_ITEM


def test_patch_reaches_every_kind(api: Api, catalog: FakeCatalog) -> None:
    task_id = catalog.keys("compression_task")[0]
    catalog.patch("compression_task", task_id, fields={"extra": 1}, drop=["failedReason"])
    detail = api.result("DescribeModelCompTask", {"modelCompTaskId": task_id})
    assert detail["extra"] == 1 and "failedReason" not in detail
    assert detail == catalog.served("DescribeModelCompTask", task_id)
    first = api.result("DescribeModelCompTasks", {"maxKeys": 1})["modelCompTaskList"][0]
    assert first["id"] == task_id and first["extra"] == 1
    model_id = catalog.keys("model_export")[0]
    catalog.patch("model_export", model_id, drop=["fileSize", "md5"], fields={"status": "Done"})
    export = api.result("DescribeModelExportTask", {"modelId": model_id})
    assert "md5" not in export and export["status"] == "Done"
    export_id = catalog.keys("eval_result_export")[0]
    catalog.patch("eval_result_export", export_id, drop=["exportIDStr"])
    assert "exportIDStr" not in api.eval({"exportID": export_id}).json()["result"]
    with pytest.raises(ValueError):
        catalog.patch("model_export", model_id, actions=["DescribeModel"])  # does not serve it
    with pytest.raises(TypeError):
        catalog.patch("model_export", model_id, drop="md5")
