"""The fake console server: its data, its API surface, its errors, its faults and its mutations.

The sync is only as well tested as the fake is faithful, so these tests pin the fake to the vendor
documents (field names, states, paging rules, time formats) and to docs/architecture.md (error
shapes and the not-found convention). They talk HTTP with ``requests`` and the real signer only.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import threading
import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import click
import pytest
import requests

from catalog.api.auth import BceAuth, authorization, bce_timestamp
from catalog.fake import (
    EVAL_ROUTE,
    KINDS,
    ZERO_TIME,
    FakeCatalog,
    FakeServer,
    FaultPlan,
    chaos_plan,
    serve,
)

AK, SK = "fake-ak", "fake-sk"
TIME_PATTERNS = {
    "offset": re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+08:00$"),
    "fraction": re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{1,9}\+08:00$"),
    "utc": re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"),
    "cst": re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+0800 CST$"),
}
TIME_FIELDS = ("createTime", "modifyTime", "finishTime")
ID_RE = {
    "am-": re.compile(r"^am-[a-z0-9]{12}$"),
    "amv-": re.compile(r"^amv-[a-z0-9]{12}$"),
    "amva-": re.compile(r"^amva-[a-z0-9]{12}$"),
    "amve-": re.compile(r"^amve-[a-z0-9]{12}$"),
    "amemt-": re.compile(r"^amemt-[a-z0-9]{12}$"),
    "ame-": re.compile(r"^ame-[a-z0-9]{12}$"),
}


class Api:
    """A signed session against one fake server, returning raw ``requests`` responses."""

    def __init__(self, server: FakeServer, access_key: str = AK, secret_key: str = SK) -> None:
        self.server = server
        self.session = requests.Session()
        self.session.auth = BceAuth(access_key, secret_key)

    def v2(self, action: str, body: Any = None, **kwargs: Any) -> requests.Response:
        return self.session.post(
            f"{self.server.url}/v2/model",
            params={"Action": action},
            json={} if body is None else body,
            timeout=10,
            **kwargs,
        )

    def result(self, action: str, body: Any = None) -> dict[str, Any]:
        response = self.v2(action, body)
        assert response.status_code == 200, response.text
        payload = response.json()
        assert set(payload) == {"requestId", "result"}
        return payload["result"]  # type: ignore[no-any-return]

    def eval(self, body: Any) -> requests.Response:
        return self.session.post(f"{self.server.url}{EVAL_ROUTE}", json=body, timeout=10)

    def walk(self, action: str, max_keys: int, **body: Any) -> list[dict[str, Any]]:
        """Every page of a listing, following nextMarker, with the per-page invariants checked."""
        pages: list[dict[str, Any]] = []
        marker = ""
        for _ in range(1000):
            result = self.result(action, {"marker": marker, "maxKeys": max_keys, **body})
            info = result["pageInfo"]
            assert info["marker"] == marker
            assert info["maxKeys"] == min(max_keys, 100)
            pages.append(result)
            if not info["isTruncated"]:
                assert "nextMarker" not in info
                return pages
            marker = info["nextMarker"]
        raise AssertionError("listing did not end")


def _custom_version(catalog: FakeCatalog) -> str:
    """A version DescribeModel serves (the first versions generated are presets)."""
    return next(m for m in catalog.keys("model_version") if not catalog.is_preset_version(m))


def list_key(result: dict[str, Any]) -> str:
    (key,) = [k for k in result if k != "pageInfo"]
    return key


@pytest.fixture
def catalog() -> FakeCatalog:
    return FakeCatalog.generate(seed=7, model_sets=6, versions_per_set=3, comp_tasks=40)


@pytest.fixture
def server(catalog: FakeCatalog) -> Iterator[FakeServer]:
    with FakeServer(catalog, AK, SK) as running:
        yield running


@pytest.fixture
def api(server: FakeServer) -> Api:
    return Api(server)


# ---------------------------------------------------------------------- generation


def test_generate_is_deterministic_for_a_seed() -> None:
    first = FakeCatalog.generate(seed=3).snapshot()
    assert first == FakeCatalog.generate(seed=3).snapshot()
    assert first != FakeCatalog.generate(seed=4).snapshot()
    assert {kind: len(items) for kind, items in first.items()}["model_version"] == 14


def test_generated_objects_have_the_documented_shapes() -> None:
    cat = FakeCatalog.generate(
        seed=11,
        model_sets=40,
        versions_per_set=2,
        comp_tasks=120,
        eval_exports=30,
        system_sets=3,
        export_share=1.0,
    )
    snap = cat.snapshot()
    sets, versions = snap["model_set"], snap["model_version"]
    assert sum(s["source"] == "System" for s in sets.values()) == 3
    assert {s["source"] for s in sets.values()} == {"System", "UserCreate"}
    for set_id, model_set in sets.items():
        assert ID_RE["am-"].match(set_id)
        assert all(versions[m]["modelSetId"] == set_id for m in model_set["modelIds"])
    id_fields = {
        "Train": "trainTaskId",
        "Acceleration": "accelerationTaskId",
        "Import": "importModelVersionBosUrl",
        "PlatformPreset": None,
    }
    for model_id, version in versions.items():
        assert ID_RE["amv-"].match(model_id) and version["modelId"] == model_id
        assert version["status"] in {"Ready", "Creating", "Fail"}
        source = version["sourceInfo"]
        expected_field = id_fields[source["sourceType"]]
        assert set(source) == {"sourceType"} | ({expected_field} if expected_field else set())
        (limit_kind,) = version["tokenLimitations"]
        assert limit_kind == (
            "reranker" if version["modelApplicationType"] == "reranker" else "trivial"
        )
        for config in version["modelCompConfigs"]:
            assert set(config) in ({"strategy", "weight"}, {"strategy", "sparsityRatio"})
    assert any("description" not in v for v in versions.values())
    assert any("advancedSettings" in v for v in versions.values())
    assert {v["sourceInfo"]["sourceType"] for v in versions.values()} == set(id_fields)
    tasks = snap["compression_task"]
    assert {t["status"] for t in tasks.values()} == {
        "creating",
        "running",
        "succeeded",
        "failed",
        "stopping",
        "stopped",
    }
    assert all(ID_RE["amva-"].match(t["id"]) for t in tasks.values())
    assert all(t["modelId"] == "" for t in tasks.values() if t["status"] == "failed")
    assert any(re.search(r"[\u4e00-\u9fff]", t["name"]) for t in tasks.values())
    assert all(bool(t["failedReason"]) == (t["status"] == "failed") for t in tasks.values())
    exports = snap["model_export"]
    custom_versions = {
        m for m, v in versions.items() if sets[v["modelSetId"]]["source"] == "UserCreate"
    }
    assert set(exports) == custom_versions  # DescribeModelExportTask serves no preset version
    assert {e["state"] for e in exports.values()} == {"Doing", "Done"}
    file_fields = {"fileName", "fileType", "md5", "fileSize", "downloadUrl"}
    for export in exports.values():
        assert ID_RE["amve-"].match(export["exportId"]) and export["hasRecord"] is True
        assert (file_fields <= set(export)) == (export["state"] == "Done")
        assert not (file_fields & set(export)) or export["state"] == "Done"
    assert any(e.get("fileSize", 0) > 2**31 for e in exports.values())
    evals = snap["eval_result_export"]
    assert {e["state"] for e in evals.values()} == {"Pending", "Uploading", "Fail", "Done"}
    for key, item in evals.items():
        assert key == item["exportID"] and isinstance(key, int)
        assert ID_RE["amemt-"].match(item["exportIDStr"]) and ID_RE["ame-"].match(item["idStr"])
        assert ("volumeId" in item) == (item["exportType"] == "storage")
        assert bool(item["downloadUrl"]) == (
            item["exportType"] == "local" and item["state"] == "Done"
        )


# ---------------------------------------------------------------------- pagination


@pytest.mark.parametrize("max_keys", [100, 250])
def test_pagination_walks_every_task_exactly_once(max_keys: int) -> None:
    cat = FakeCatalog.generate(seed=5, comp_tasks=260)
    with FakeServer(cat) as srv:
        pages = Api(srv).walk("DescribeModelCompTasks", max_keys)
    sizes = [len(p["modelCompTaskList"]) for p in pages]
    assert sizes == [100, 100, 60]  # maxKeys > 100 is treated as 100
    ids = [t["id"] for p in pages for t in p["modelCompTaskList"]]
    assert ids == cat.keys("compression_task")
    # The documented marker: the id of the first item of the page it starts.
    assert [p["pageInfo"]["marker"] for p in pages[1:]] == [ids[100], ids[200]]


def test_default_page_size_and_reverse_order(api: Api, catalog: FakeCatalog) -> None:
    first = api.result("DescribeModelCompTasks", {})
    assert len(first["modelCompTaskList"]) == 10 and first["pageInfo"]["maxKeys"] == 10
    backwards = api.walk("DescribeModelCompTasks", 7, pageReverse=True)
    ids = [t["id"] for p in backwards for t in p["modelCompTaskList"]]
    assert ids == list(reversed(catalog.keys("compression_task")))


def test_model_set_listings_split_by_source(api: Api, catalog: FakeCatalog) -> None:
    custom = [s for p in api.walk("DescribeCustomModelSets", 2) for s in p["customModelSetList"]]
    system = [s for p in api.walk("DescribeSystemModelSets", 1) for s in p["systemModelSetList"]]
    assert all(catalog.get("model_set", s["modelSetId"])["source"] == "UserCreate" for s in custom)
    assert all(catalog.get("model_set", s["modelSetId"])["source"] == "System" for s in system)
    assert sorted(s["modelSetId"] for s in custom + system) == sorted(catalog.keys("model_set"))
    assert all(s["modelIds"] for s in custom + system)  # the documents say listings carry them


def test_source_model_id_filter(api: Api, catalog: FakeCatalog) -> None:
    tasks = catalog.snapshot()["compression_task"].values()
    counts: dict[str, int] = {}
    for task in tasks:
        counts[task["sourceModelId"]] = counts.get(task["sourceModelId"], 0) + 1
    source = max(counts, key=lambda k: counts[k])
    assert counts[source] >= 2
    pages = api.walk("DescribeModelCompTasks", 1, sourceModelId=source)
    found = [t for p in pages for t in p["modelCompTaskList"]]
    assert len(found) == counts[source]
    assert {t["sourceModelId"] for t in found} == {source}


def test_a_listing_between_pages_follows_mutations(api: Api, catalog: FakeCatalog) -> None:
    """The fake caches a listing per page walk; every mutation must show on the next page."""
    rng = random.Random(1)
    first = api.result("DescribeModelCompTasks", {"maxKeys": 3})
    marker = first["pageInfo"]["nextMarker"]
    new_key = catalog.add("compression_task", rng)
    removed = catalog.remove("compression_task", marker)
    after = api.result("DescribeModelCompTasks", {"maxKeys": 100})
    listed = [t["id"] for t in after["modelCompTaskList"]]
    assert new_key in listed and marker not in listed
    assert api.v2("DescribeModelCompTasks", {"marker": marker}).status_code == 400
    catalog.restore("compression_task", removed)
    again = api.result("DescribeModelCompTasks", {"marker": marker, "maxKeys": 2})
    assert again["modelCompTaskList"][0]["id"] == marker
    changed = catalog.change("compression_task", marker, rng)
    page = api.result("DescribeModelCompTasks", {"marker": marker, "maxKeys": 1})
    shown = page["modelCompTaskList"][0]
    assert all(shown.get(field) == value for field, value in changed.items() if value is not None)


def test_unknown_marker_is_invalid_marker(api: Api) -> None:
    response = api.v2("DescribeModelCompTasks", {"marker": "amva-doesnotexist"})
    assert response.status_code == 400
    assert response.json()["code"] == "InvalidMarker"


# ---------------------------------------------------------------------- lookups and errors


def test_describe_model_set_by_id_or_name(api: Api, catalog: FakeCatalog) -> None:
    set_id = catalog.keys("model_set")[-1]
    by_id = api.result("DescribeModelSet", {"modelSetId": set_id})
    by_name = api.result("DescribeModelSet", {"modelSetName": by_id["modelSetName"]})
    assert by_id == by_name == catalog.get("model_set", set_id)
    assert by_id["modelIds"] and by_id["source"] == "UserCreate"  # seed 003's shape
    for body in ({}, {"modelSetId": set_id, "modelSetName": by_id["modelSetName"]}):
        response = api.v2("DescribeModelSet", body)
        assert response.status_code == 400 and response.json()["code"] == "InvalidRequest"


def test_describe_model_and_export(api: Api, catalog: FakeCatalog) -> None:
    model_id = _custom_version(catalog)
    assert api.result("DescribeModel", {"modelId": model_id}) == catalog.get(
        "model_version", model_id
    )
    without = next(
        m
        for m in catalog.keys("model_version")
        if m not in catalog.keys("model_export") and not catalog.is_preset_version(m)
    )
    assert api.result("DescribeModelExportTask", {"modelId": without}) == {"hasRecord": False}


@pytest.mark.parametrize(
    ("action", "body"),
    [
        ("DescribeModel", {"modelId": "amv-000000000000"}),
        ("DescribeModelSet", {"modelSetId": "am-000000000000"}),
        ("DescribeModelSet", {"modelSetName": "no such set"}),
        ("DescribeModelExportTask", {"modelId": "amv-000000000000"}),
        ("DescribeSystemModel", {"modelId": "amv-000000000000"}),
        ("DescribeSystemModelSet", {"modelSetId": "am-000000000000"}),
        ("DescribeModelCompTask", {"modelCompTaskId": "amva-000000000000"}),
    ],
)
def test_v2_not_found(api: Api, action: str, body: dict[str, Any]) -> None:
    response = api.v2(action, body)
    assert response.status_code == 404
    payload = response.json()
    assert payload["code"] == "ResourceNotFound" and payload["message"]
    assert re.fullmatch(r"[0-9a-f-]{36}", payload["requestId"])


def test_eval_export_by_int_and_by_string_and_not_found(api: Api, catalog: FakeCatalog) -> None:
    key = catalog.keys("eval_result_export")[0]
    expected = catalog.get("eval_result_export", key)
    for export_id in (key, expected["exportIDStr"]):
        payload = api.eval({"exportID": export_id}).json()
        assert payload["result"] == expected and payload["log_id"]
    for missing in (999_999, "amemt-000000000000"):
        response = api.eval({"exportID": missing})
        assert response.status_code == 200
        assert {k: v for k, v in response.json().items() if k != "log_id"} == {
            "error_code": 500002,
            "error_msg": "export task not exist",
        }


@pytest.mark.parametrize("body", [{}, {"exportID": True}, {"exportID": [1]}, "not an object"])
def test_eval_bad_params_are_500001_in_a_200(api: Api, body: Any) -> None:
    response = api.eval(body)
    assert response.status_code == 200
    payload = response.json()
    assert (payload["error_code"], payload["error_msg"]) == (500001, "param invalid")


@pytest.mark.parametrize(
    "body",
    [{"maxKeys": "ten"}, {"maxKeys": 0}, {"pageReverse": "yes"}, {"marker": 5}, [1, 2]],
)
def test_v2_bad_params_are_400_invalid_request(api: Api, body: Any) -> None:
    response = api.v2("DescribeModelCompTasks", body)
    assert response.status_code == 400
    assert response.json()["code"] == "InvalidRequest"


def test_non_json_body_and_unknown_action_and_get(api: Api, server: FakeServer) -> None:
    response = api.session.post(
        f"{server.url}/v2/model", params={"Action": "DescribeModel"}, data=b"{not json", timeout=10
    )
    assert response.status_code == 400 and response.json()["code"] == "InvalidRequest"
    assert api.v2("DescribeEverything", {}).status_code == 400
    got = api.session.get(f"{server.url}/v2/model", params={"Action": "DescribeModel"}, timeout=10)
    assert got.status_code == 405 and got.headers["Allow"] == "POST"
    assert "requestId" in got.json()


def test_every_v2_answer_has_a_fresh_request_id(api: Api) -> None:
    ids = {api.v2("DescribeModelCompTasks").json()["requestId"] for _ in range(5)}
    ids.add(api.v2("DescribeModel", {"modelId": "amv-000000000000"}).json()["requestId"])
    assert len(ids) == 6


# ---------------------------------------------------------------------- signatures


def _assert_denied(response: requests.Response, code: str) -> None:
    assert response.status_code == 403
    assert response.headers["X-Bce-Error-Code"] == code
    assert response.headers["X-Bce-Error-Message"]
    payload = response.json()
    assert payload["code"] == code and payload["requestId"]


def test_wrong_secret_is_signature_does_not_match(server: FakeServer) -> None:
    _assert_denied(
        Api(server, AK, "wrong-sk").v2("DescribeModelCompTasks"), "SignatureDoesNotMatch"
    )


def test_unknown_access_key(server: FakeServer) -> None:
    _assert_denied(
        Api(server, "someone-else", SK).v2("DescribeModelCompTasks"), "InvalidAccessKeyId"
    )


def test_unsigned_and_malformed_authorization(server: FakeServer) -> None:
    url = f"{server.url}/v2/model?Action=DescribeModelCompTasks"
    _assert_denied(requests.post(url, json={}, timeout=10), "SignatureDoesNotMatch")
    _assert_denied(
        requests.post(url, json={}, headers={"Authorization": "Bearer x"}, timeout=10),
        "SignatureDoesNotMatch",
    )
    # The eval route is behind the same gateway: a 403 in the /v2 shape, not a v1 error.
    _assert_denied(
        requests.post(f"{server.url}{EVAL_ROUTE}", json={"exportID": 1}, timeout=10),
        "SignatureDoesNotMatch",
    )


def test_signing_is_checked_over_the_query_string(server: FakeServer) -> None:
    """A signature made for one Action does not authorise another."""
    request = requests.Request(
        "POST", f"{server.url}/v2/model?Action=DescribeModel", json={}, auth=BceAuth(AK, SK)
    ).prepare()
    request.url = f"{server.url}/v2/model?Action=DescribeModelCompTasks"
    with requests.Session() as session:
        _assert_denied(session.send(request, timeout=10), "SignatureDoesNotMatch")


def _hand_signed(server: FakeServer, *, age: float, signed: tuple[str, ...]) -> requests.Response:
    timestamp = bce_timestamp(time.time() - age)
    host = urlsplit(server.url).netloc
    headers = {"Host": host, "x-bce-date": timestamp, "Content-Type": "application/json"}
    headers["Authorization"] = authorization(
        AK,
        SK,
        "POST",
        "/v2/model",
        [("Action", "DescribeModelCompTasks")],
        headers,
        timestamp,
        expiry=1800,
        signed_headers=signed,
    )
    return requests.post(
        f"{server.url}/v2/model?Action=DescribeModelCompTasks",
        data=b"{}",
        headers=headers,
        timeout=10,
    )


def test_expired_and_under_signed_requests(server: FakeServer) -> None:
    full = ("content-type", "host", "x-bce-date")
    assert _hand_signed(server, age=0, signed=full).status_code == 200  # the control case
    _assert_denied(_hand_signed(server, age=4000, signed=full), "RequestExpired")
    _assert_denied(_hand_signed(server, age=0, signed=("host",)), "SignatureDoesNotMatch")


def test_verification_can_be_turned_off(catalog: FakeCatalog) -> None:
    with FakeServer(catalog, verify_signatures=False) as srv:
        response = requests.post(
            f"{srv.url}/v2/model?Action=DescribeModelCompTasks", json={}, timeout=10
        )
    assert response.status_code == 200


# ---------------------------------------------------------------------- throttling and faults


def test_server_rate_limit(catalog: FakeCatalog) -> None:
    with FakeServer(catalog, rate_limit=2.0) as srv:
        api = Api(srv)
        statuses = [api.v2("DescribeModelCompTasks").status_code for _ in range(6)]
        v1 = [api.eval({"exportID": 96}).json() for _ in range(4)]
    assert statuses[:2] == [200, 200] and 429 in statuses
    limited = [p for p in v1 if "error_code" in p]
    assert limited and limited[0]["error_code"] == 18
    assert limited[0]["error_msg"] == "Open api qps request limit reached"


def test_rate_limited_body_shape(catalog: FakeCatalog) -> None:
    with FakeServer(catalog, rate_limit=1.0) as srv:
        api = Api(srv)
        api.v2("DescribeModelCompTasks")
        response = api.v2("DescribeModelCompTasks")
    assert response.status_code == 429
    assert set(response.json()) == {"requestId", "code", "message"}
    assert response.json()["code"] == "RequestLimitExceeded"


def test_the_command_offers_every_limiter_shape_and_no_other() -> None:
    """``fake-server --limit-shape`` lists the shapes by name, so that every command does not
    import the fake to build its options: a shape added to the fake must be added there too."""
    from catalog.cli import cli
    from catalog.fake.limiters import SHAPES

    command = cli.commands["fake-server"]
    option = next(p for p in command.params if p.name == "limit_shape")
    assert isinstance(option.type, click.Choice)
    assert sorted(option.type.choices) == sorted(SHAPES)


def _faulty(catalog: FakeCatalog, plan: FaultPlan) -> FakeServer:
    return FakeServer(catalog, faults=plan).start()


@pytest.mark.parametrize(("retry_after", "header"), [(None, None), (0, "0"), (2, "2")])
def test_fault_429_retry_after(catalog: FakeCatalog, retry_after: Any, header: Any) -> None:
    srv = _faulty(catalog, FaultPlan().once("DescribeModel", "429", retry_after=retry_after))
    try:
        response = Api(srv).v2("DescribeModel", {"modelId": _custom_version(catalog)})
    finally:
        srv.stop()
    assert response.status_code == 429 and response.json()["code"] == "RequestLimitExceeded"
    assert response.headers.get("Retry-After") == header


def test_fault_429_http_date(catalog: FakeCatalog) -> None:
    with FakeServer(catalog, faults=FaultPlan().once("*", "429", retry_after="http-date")) as srv:
        response = Api(srv).v2("DescribeModelCompTasks")
    assert response.status_code == 429
    assert parsedate_to_datetime(response.headers["Retry-After"]).timestamp() > time.time() - 5


@pytest.mark.parametrize("status", [500, 502, 503])
def test_fault_5xx_then_recovers(catalog: FakeCatalog, status: int) -> None:
    with FakeServer(catalog, faults=FaultPlan().once("*", "5xx", status=status)) as srv:
        api = Api(srv)
        failed, ok = api.v2("DescribeModelCompTasks"), api.v2("DescribeModelCompTasks")
        assert [c.fault for c in srv.calls] == ["5xx", None]
    assert failed.status_code == status and failed.json()["requestId"]
    assert ok.status_code == 200


def test_fault_drop_closes_without_answer(catalog: FakeCatalog) -> None:
    with FakeServer(catalog, faults=FaultPlan().once("DescribeModelCompTasks", "drop")) as srv:
        api = Api(srv)
        with pytest.raises(requests.ConnectionError):
            api.v2("DescribeModelCompTasks")
        assert api.v2("DescribeModelCompTasks").status_code == 200
        assert srv.calls[0].status is None and srv.calls[0].fault == "drop"


def test_fault_slow(catalog: FakeCatalog) -> None:
    with FakeServer(catalog, faults=FaultPlan().once("*", "slow", seconds=0.3)) as srv:
        started = time.monotonic()
        response = Api(srv).v2("DescribeModelCompTasks")
    assert time.monotonic() - started >= 0.3 and response.status_code == 200


def test_fault_malformed(catalog: FakeCatalog) -> None:
    with FakeServer(catalog, faults=FaultPlan().once(EVAL_ROUTE, "malformed")) as srv:
        api = Api(srv)
        assert api.v2("DescribeModelCompTasks").json()["result"]  # other routes unaffected
        response = api.eval({"exportID": 96})
    assert response.status_code == 200
    with pytest.raises(ValueError):
        json.loads(response.text)


def test_fault_v1_rate_limit(catalog: FakeCatalog) -> None:
    plan = FaultPlan().once(EVAL_ROUTE, "v1_rate_limit").once("DescribeModel", "v1_rate_limit")
    with FakeServer(catalog, faults=plan) as srv:
        api = Api(srv)
        v1 = api.eval({"exportID": 96})
        v2 = api.v2("DescribeModel", {"modelId": _custom_version(catalog)})
    assert v1.status_code == 200 and v1.json()["error_code"] == 18
    assert v2.status_code == 429


def _two_pages(catalog: FakeCatalog, fault: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The first page clean, the second with ``fault``; a page fault waits for a paged call."""
    plan = FaultPlan().once("*", fault)
    with FakeServer(catalog) as srv:
        first = Api(srv).result("DescribeModelCompTasks", {"maxKeys": 5})
        srv.faults = plan
        api = Api(srv)
        api.result("DescribeModel", {"modelId": _custom_version(catalog)})
        assert plan.pending() == 1  # not spent on a call that has no pages
        second = api.result(
            "DescribeModelCompTasks", {"maxKeys": 5, "marker": first["pageInfo"]["nextMarker"]}
        )
        assert plan.injected == [
            {"action": "DescribeModelCompTasks", "route": "/v2/model", "fault": fault, "params": {}}
        ]
    return first, second


def test_fault_page_loop(catalog: FakeCatalog) -> None:
    first, second = _two_pages(catalog, "page_loop")
    info = second["pageInfo"]
    assert info["isTruncated"] and info["nextMarker"] == first["pageInfo"]["nextMarker"]
    assert info["nextMarker"] == second["modelCompTaskList"][0]["id"]


def test_fault_dup_items(catalog: FakeCatalog) -> None:
    first, second = _two_pages(catalog, "dup_items")
    assert second["modelCompTaskList"][0] == first["modelCompTaskList"][-1]
    assert len(second["modelCompTaskList"]) == 6


def test_fault_truncated_no_marker(catalog: FakeCatalog) -> None:
    _, second = _two_pages(catalog, "truncated_no_marker")
    assert second["pageInfo"]["isTruncated"] is True and "nextMarker" not in second["pageInfo"]


def test_fault_empty_page_more(catalog: FakeCatalog) -> None:
    _, second = _two_pages(catalog, "empty_page_more")
    assert second["modelCompTaskList"] == [] and second["pageInfo"]["isTruncated"] is True


def test_faults_never_corrupt_the_catalog(catalog: FakeCatalog) -> None:
    before = catalog.snapshot()
    plan = FaultPlan(seed=1)
    for fault in ("429", "5xx", "malformed", "page_loop", "dup_items", "empty_page_more"):
        plan.rate(fault, 0.15)
    with FakeServer(catalog, faults=plan) as srv:
        api = Api(srv)
        for _ in range(40):
            with contextlib.suppress(requests.RequestException):
                api.v2("DescribeModelCompTasks", {"maxKeys": 3})
    assert catalog.snapshot() == before
    assert len({i["fault"] for i in plan.injected}) >= 4


def test_random_faults_are_reproducible_and_filtered_by_action() -> None:
    def draws(seed: int) -> list[str | None]:
        plan = FaultPlan(seed).rate("5xx", 0.5, actions=["DescribeModel"])
        found = [plan.draw("DescribeModel", "/v2/model", paged=False) for _ in range(30)]
        assert plan.draw("DescribeModelSet", "/v2/model", paged=False) is None
        return [f.name if f else None for f in found]

    assert draws(1) == draws(1)
    assert draws(1) != draws(2)
    assert 5 < draws(1).count("5xx") < 25


def test_fault_plan_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        FaultPlan().once("*", "teapot")
    with pytest.raises(ValueError):
        FaultPlan().once("*", "5xx", status=504)
    with pytest.raises(ValueError):
        FaultPlan().once("*", "429", retry_after="soon")
    with pytest.raises(ValueError):
        FaultPlan().rate("drop", 1.5)


def test_chaos_plan_rate_is_roughly_what_was_asked() -> None:
    plan = chaos_plan(0.3, seed=2)
    hits = sum(
        plan.draw("DescribeModel", "/v2/model", paged=False) is not None for _ in range(2000)
    )
    assert 0.25 < hits / 2000 < 0.35


def test_latency_is_added(catalog: FakeCatalog) -> None:
    with FakeServer(catalog, latency=0.2) as srv:
        started = time.monotonic()
        Api(srv).v2("DescribeModelCompTasks")
    assert time.monotonic() - started >= 0.2


# ---------------------------------------------------------------------- downloads and times


def test_download_url_rotates_query_but_keeps_path(api: Api, catalog: FakeCatalog) -> None:
    model_id = next(
        k for k in catalog.keys("model_export") if catalog.get("model_export", k)["state"] == "Done"
    )
    urls = [
        api.result("DescribeModelExportTask", {"modelId": model_id})["downloadUrl"]
        for _ in range(3)
    ]
    assert len(set(urls)) == 3
    parts = [urlsplit(u) for u in urls]
    assert len({(p.scheme, p.netloc, p.path) for p in parts}) == 1
    assert all({"authorization", "expires"} <= set(parse_qs(p.query)) for p in parts)
    stored = catalog.get("model_export", model_id)["downloadUrl"]
    assert urls[0].split("?")[0] == stored


def _time_style(text: str) -> str:
    if text == ZERO_TIME:
        return "zero"
    matched = [name for name, pattern in TIME_PATTERNS.items() if pattern.match(text)]
    assert len(matched) == 1, text
    return matched[0]


def test_every_served_time_is_in_a_documented_format() -> None:
    cat = FakeCatalog.generate(seed=9, model_sets=20, comp_tasks=120)
    seen: dict[str, set[str]] = {}
    with FakeServer(cat) as srv:
        api = Api(srv)
        served: list[tuple[str, dict[str, Any]]] = []
        for action in (
            "DescribeCustomModelSets",
            "DescribeSystemModelSets",
            "DescribeModelCompTasks",
        ):
            for page in api.walk(action, 100):
                served += [(action, item) for item in page[list_key(page)]]
        for set_id in cat.keys("model_set"):
            preset = cat.is_preset_set(set_id)
            action = "DescribeSystemModelSet" if preset else "DescribeModelSet"
            served.append(("set", api.result(action, {"modelSetId": set_id})))
        for model_id in cat.keys("model_version"):
            preset = cat.is_preset_version(model_id)
            action = "DescribeSystemModel" if preset else "DescribeModel"
            served.append(("version", api.result(action, {"modelId": model_id})))
    for kind, item in served:
        for name in TIME_FIELDS:
            if name in item:
                seen.setdefault(kind, set()).add(_time_style(item[name]))
    assert seen["DescribeModelCompTasks"] >= {"offset", "cst", "zero"}
    assert seen["version"] >= {"offset", "fraction", "utc", "zero"}
    assert "zero" in seen["set"]
    tasks = cat.snapshot()["compression_task"].values()
    live = [t for t in tasks if t["status"] in ("creating", "running", "stopping")]
    assert live and all(t.get("finishTime", ZERO_TIME) == ZERO_TIME for t in live)
    assert any("finishTime" not in t for t in live)
    ended = [t for t in tasks if t["status"] in ("succeeded", "failed", "stopped")]
    assert all(t["finishTime"] != ZERO_TIME for t in ended)


# ---------------------------------------------------------------------- mutations over HTTP


def test_add_model_set_and_version_are_served(api: Api, catalog: FakeCatalog) -> None:
    rng = random.Random(1)
    set_id = catalog.add("model_set", rng)
    custom = [
        s["modelSetId"]
        for p in api.walk("DescribeCustomModelSets", 100)
        for s in p["customModelSetList"]
    ]
    assert set_id in custom
    model_set = api.result("DescribeModelSet", {"modelSetId": set_id})
    assert len(model_set["modelIds"]) == 1
    model_id = catalog.add("model_version", rng, parent=set_id)
    assert api.result("DescribeModelSet", {"modelSetId": set_id})["modelIds"][-1] == model_id
    assert api.result("DescribeModel", {"modelId": model_id})["modelSetId"] == set_id
    task_id = catalog.add("compression_task", rng, parent=model_id)
    filtered = api.result("DescribeModelCompTasks", {"sourceModelId": model_id})
    assert [t["id"] for t in filtered["modelCompTaskList"]] == [task_id]
    assert catalog.add("model_export", rng, parent=model_id) == model_id
    assert api.result("DescribeModelExportTask", {"modelId": model_id})["hasRecord"] is True
    with pytest.raises(ValueError):
        catalog.add("model_export", rng, parent=model_id)
    export_id = catalog.add("eval_result_export", rng)
    assert api.eval({"exportID": export_id}).json()["result"]["exportID"] == export_id


@pytest.mark.parametrize("kind", KINDS)
def test_change_is_visible_and_really_changes(api: Api, catalog: FakeCatalog, kind: str) -> None:
    rng = random.Random(kind)
    preset = {"model_set": catalog.is_preset_set, "model_version": catalog.is_preset_version}
    keys = [k for k in catalog.keys(kind) if kind not in preset or not preset[kind](k)]
    for key in keys[:6]:
        before = catalog.get(kind, key)
        changed = catalog.change(kind, key, rng)
        after = catalog.get(kind, key)
        assert changed
        for name, value in changed.items():
            assert after.get(name) == value and before.get(name) != value, name
        if "modifyTime" in before:
            assert after["modifyTime"] not in (before["modifyTime"], ZERO_TIME)
        served = _served(api, kind, key)
        if kind == "model_export" and "downloadUrl" in served:
            served["downloadUrl"] = served["downloadUrl"].split("?")[0]
        if kind == "compression_task":
            # The detail leaves the output model out unless the task succeeded (documented).
            after = {k: v for k, v in after.items() if k != "modelId" or v}
        assert served == after


def _served(api: Api, kind: str, key: Any) -> dict[str, Any]:
    if kind == "model_set":
        return api.result("DescribeModelSet", {"modelSetId": key})
    if kind == "model_version":
        return api.result("DescribeModel", {"modelId": key})
    if kind == "model_export":
        return api.result("DescribeModelExportTask", {"modelId": key})
    if kind == "eval_result_export":
        return api.eval({"exportID": key}).json()["result"]  # type: ignore[no-any-return]
    return api.result("DescribeModelCompTask", {"modelCompTaskId": key})


def test_remove_and_restore_a_version(api: Api, catalog: FakeCatalog) -> None:
    before = catalog.snapshot()
    model_id = next(iter(before["model_export"]))  # a custom version: presets have no export
    set_id = before["model_version"][model_id]["modelSetId"]
    removed = catalog.remove("model_version", model_id)
    assert api.v2("DescribeModel", {"modelId": model_id}).status_code == 404
    assert api.v2("DescribeModelExportTask", {"modelId": model_id}).status_code == 404
    assert model_id not in api.result("DescribeModelSet", {"modelSetId": set_id})["modelIds"]
    assert model_id not in catalog.keys("model_export")
    catalog.restore("model_version", removed)
    assert catalog.snapshot() == before
    assert (
        api.result("DescribeModelSet", {"modelSetId": set_id})["modelIds"]
        == before["model_set"][set_id]["modelIds"]
    )


def test_remove_and_restore_a_model_set(api: Api, catalog: FakeCatalog) -> None:
    before = catalog.snapshot()
    set_id = catalog.keys("model_set")[-1]
    assert not catalog.is_preset_set(set_id)
    versions = before["model_set"][set_id]["modelIds"]
    removed = catalog.remove("model_set", set_id)
    assert api.v2("DescribeModelSet", {"modelSetId": set_id}).status_code == 404
    assert all(api.v2("DescribeModel", {"modelId": m}).status_code == 404 for m in versions)
    assert not set(versions) & set(catalog.keys("model_export"))
    catalog.restore("model_set", removed)
    assert catalog.snapshot() == before


@pytest.mark.parametrize("kind", ["compression_task", "model_export", "eval_result_export"])
def test_remove_and_restore_leaves(api: Api, catalog: FakeCatalog, kind: str) -> None:
    before = catalog.snapshot()
    key = catalog.keys(kind)[1]
    removed = catalog.remove(kind, key)
    if kind == "compression_task":
        listed = [
            t["id"] for p in api.walk("DescribeModelCompTasks", 100) for t in p["modelCompTaskList"]
        ]
        assert key not in listed and len(listed) == len(before[kind]) - 1
    elif kind == "model_export":
        assert api.result("DescribeModelExportTask", {"modelId": key}) == {"hasRecord": False}
    else:
        assert api.eval({"exportID": key}).json()["error_code"] == 500002
    catalog.restore(kind, removed)
    assert catalog.snapshot() == before


def test_concurrent_reads_during_mutations(catalog: FakeCatalog, server: FakeServer) -> None:
    errors: list[str] = []

    def reader() -> None:
        api = Api(server)
        for _ in range(15):
            response = api.v2("DescribeCustomModelSets", {"maxKeys": 100})
            if response.status_code != 200:
                errors.append(response.text)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for thread in threads:
        thread.start()
    rng = random.Random(0)
    for _ in range(20):
        catalog.remove("model_set", catalog.add("model_set", rng))
    for thread in threads:
        thread.join()
    assert errors == []
    assert server.call_count("DescribeCustomModelSets") == 60
    assert server.call_count() == 60


def test_serve_runs_until_interrupted(monkeypatch: pytest.MonkeyPatch) -> None:
    lines: list[str] = []

    def interrupt() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("catalog.fake.server._until_interrupted", interrupt)
    serve(port=0, seed=1, comp_tasks=3, echo=lines.append)
    assert lines[0].startswith("fake Qianfan console on http://127.0.0.1:")
    assert lines[-1] == "stopped after 0 calls"


def test_a_served_answer_is_a_copy(catalog: FakeCatalog) -> None:
    """Changing what was served, however deep, changes neither the catalog nor the next answer."""
    set_id = catalog.keys("model_set")[0]
    model_id = catalog.get("model_set", set_id)["modelIds"][0]
    first = catalog.served("DescribeModel", model_id)
    again = json.loads(json.dumps(catalog.served("DescribeModel", model_id)))
    assert first == again
    nested = [v for v in first.values() if isinstance(v, (dict, list)) and v]
    assert nested, "the answer has nested values to change"
    for value in nested:
        if isinstance(value, dict):
            value.clear()
        else:
            value.append({"changed": True})
    first["modelId"] = "changed"
    assert catalog.served("DescribeModel", model_id) == again


def _raw_exchange(server: FakeServer, request: bytes) -> bytes:
    """Send ``request`` as is on a fresh connection; everything the server sends until it
    closes (or goes quiet for a second)."""
    import socket

    with socket.create_connection((server.host, server.port), timeout=1.0) as sock:
        sock.sendall(request)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except TimeoutError:
            pass
    return received


def test_the_fake_reads_request_headers_line_by_line(server: FakeServer) -> None:
    """The fake's own header reader (the ``email`` parser cost a third of its CPU): names in any
    case, a repeated header read as its first value, a close honoured, and bad header sections
    refused as the standard library refuses them."""
    body = b"{}"
    head = (
        b"POST /v2/model?Action=DescribeModel HTTP/1.1\r\nhOsT: x\r\ncontent-length: 2\r\n"
        b"Content-Length: 99\r\nConnection: close\r\n\r\n"
    )
    answer = _raw_exchange(server, head + body)  # unsigned: refused, but read whole
    status, _, rest = answer.partition(b"\r\n")
    assert status == b"HTTP/1.1 403 Forbidden"
    assert b'"SignatureDoesNotMatch"' in rest and answer.count(b"HTTP/1.1") == 1
    assert server.calls[-1].action == "DescribeModel" and server.calls[-1].body == {}

    no_colon = b"POST /v2/model HTTP/1.1\r\nHost x\r\n\r\n"
    assert _raw_exchange(server, no_colon).startswith(b"HTTP/1.1 400 ")
    too_many = b"POST /v2/model HTTP/1.1\r\n" + b"X-A: 1\r\n" * 101 + b"\r\n"
    assert _raw_exchange(server, too_many).startswith(b"HTTP/1.1 431 ")
    too_long = b"POST /v2/model HTTP/1.1\r\nX-A: " + b"a" * 70000 + b"\r\n\r\n"
    assert _raw_exchange(server, too_long).startswith(b"HTTP/1.1 431 ")
    # Any other request line goes to the standard parser (an HTTP/0.9-style error page here).
    assert b"400 - Bad request syntax" in _raw_exchange(server, b"NONSENSE\r\n\r\n")
