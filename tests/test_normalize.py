"""Time formats, field variants and bad values, as the documents and the live API give them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from catalog import normalize
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

UTC = dt.UTC


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-22T17:13:33+08:00", dt.datetime(2024, 3, 22, 9, 13, 33, tzinfo=UTC)),
        ("2024-03-22T17:13:33.5+08:00", dt.datetime(2024, 3, 22, 9, 13, 33, 500000, tzinfo=UTC)),
        (
            "2024-03-22T17:13:33.123456789+08:00",
            dt.datetime(2024, 3, 22, 9, 13, 33, 123456, tzinfo=UTC),
        ),
        ("2024-03-22T09:13:33Z", dt.datetime(2024, 3, 22, 9, 13, 33, tzinfo=UTC)),
        ("2024-03-22T09:13:33.25Z", dt.datetime(2024, 3, 22, 9, 13, 33, 250000, tzinfo=UTC)),
        ("2023-06-24 22:19:40 +0800 CST", dt.datetime(2023, 6, 24, 14, 19, 40, tzinfo=UTC)),
        ("2023-09-07 11:11:11", dt.datetime(2023, 9, 7, 3, 11, 11, tzinfo=UTC)),
        ("2024-01-01T00:30:00-05:00", dt.datetime(2024, 1, 1, 5, 30, tzinfo=UTC)),
        # zones with minutes (India, Nepal): the minutes count too
        ("2024-03-22T17:13:33+05:30", dt.datetime(2024, 3, 22, 11, 43, 33, tzinfo=UTC)),
        ("2024-03-22 17:13:33 +0545 NPT", dt.datetime(2024, 3, 22, 11, 28, 33, tzinfo=UTC)),
    ],
)
def test_documented_time_formats(text: str, expected: dt.datetime) -> None:
    parsed = normalize.parse_time(text)
    assert parsed == expected
    assert parsed is not None and parsed.utcoffset() == dt.timedelta(0)


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00Z", "", "  ", None])
def test_no_value_forms(text: str | None) -> None:
    assert normalize.parse_time(text) is None


@pytest.mark.parametrize(
    "text",
    [
        "yesterday",
        "2024-13-01",
        "2024-03-22T17:13",
        1700000000,
        # a time followed by anything else is not a time (nor what its first part says)
        "2024-03-22T17:13:33Z and later",
        "2024-03-22T17:13:33+08:00:00",
        "2024-03-22 17:13:33 +0800 CST 2024",
        # a zone's name without its offset: read as China time, 8 hours off for UTC
        "2024-03-22 10:00:00 UTC",
        "2024-03-22T10:00:00 PST",
    ],
)
def test_bad_times_name_the_field(text: object) -> None:
    with pytest.raises(normalize.NormalizeError, match="createTime"):
        normalize.parse_time(text, "createTime")


@pytest.mark.parametrize(
    "text",
    [
        "2024-13-01T00:00:00Z",  # month 13
        "2024-02-30 10:00:00",  # no such day
        "2024-03-22T25:00:00+08:00",  # hour 25
        "0000-00-00T00:00:00Z",  # the SDK mock's "no time", outside the one kind that expects it
        "9999-12-31T23:59:59-05:00",  # past the last representable UTC time
    ],
)
def test_impossible_times_are_a_normalize_error(text: str) -> None:
    """Shaped like a time but not one: a ``NormalizeError`` naming the field (the entity's
    failure), not the ``ValueError``/``OverflowError`` that escaped the writer and ended the run."""
    with pytest.raises(normalize.NormalizeError, match="createTime"):
        normalize.parse_time(text, "createTime")
    with pytest.raises(normalize.NormalizeError, match="createTime"):
        model_versions.row({"modelId": "amv-1", "createTime": text})


def test_export_state_and_status_are_the_same_field() -> None:
    a = model_exports.row("amv-1", {"hasRecord": True, "state": "Done"})
    b = model_exports.row("amv-1", {"hasRecord": True, "status": "Done"})
    assert a is not None and b is not None
    assert a["state"] == b["state"] == "Done"
    assert model_exports.row("amv-1", {"hasRecord": False}) is None


def test_download_url_query_is_not_tracked() -> None:
    row = model_exports.row(
        "amv-1",
        {
            "hasRecord": True,
            "state": "Done",
            "downloadUrl": "https://b.example/x/model.tar?authorization=abc&expires=1",
        },
    )
    assert row is not None
    assert row["download_url"] == "https://b.example/x/model.tar"
    assert row["raw"]["downloadUrl"] == "https://b.example/x/model.tar"  # no live signature
    assert row["raw"]["state"] == "Done"


def test_version_row_flattens_nested_objects() -> None:
    row = model_versions.row(
        {
            "modelId": "amv-1",
            "modelSetId": "am-1",
            "status": "Ready",
            "sourceInfo": {"sourceType": "Train", "trainTaskId": 423},
            "tokenLimitations": {"trivial": {"inputTokens": 4096, "outputTokens": 1024}},
            "advancedSettings": {"numBeams": 4},
            "isSupportDeploy": True,
            "isSupportModelComp": "false",
            "createTime": "2023-12-15T16:30:06+08:00",
            "modifyTime": "0001-01-01T00:00:00Z",
        }
    )
    assert row["train_task_id"] == "423"
    assert row["input_tokens"] == 4096 and row["output_tokens"] == 1024
    assert row["num_beams"] == 4
    assert row["is_support_deploy"] is True and row["is_support_model_comp"] is False
    assert row["modify_time"] is None


def _at(hour: int) -> dt.datetime:
    return dt.datetime(2024, 3, 22, hour, tzinfo=UTC)


def test_each_field_lands_in_its_column() -> None:
    """Every answer field a row builder converts, each with a value of its own, so a field read
    into another's column (or a time from the wrong field) shows."""
    version = model_versions.row({
        "modelId": "amv-1",
        "tokenLimitations": {
            "trivial": {"inputTokens": 1, "outputTokens": 2, "characterLimit": 3},
            "reranker": {"queryTokens": 4, "queryCharacterLimit": 5, "documentTokens": 6,
                         "documentCharacterLimit": 7},
        },
        "isSupportDeploy": True, "isSupportModelComp": False, "isSupportEvaluation": None,
        "endpointType": "chat",  # the older name of modelApplicationType
        "createTime": "2024-03-22T01:00:00Z", "modifyTime": "2024-03-22T02:00:00Z",
    })
    assert [version[c] for c in (
        "input_tokens", "output_tokens", "character_limit", "query_tokens",
        "query_character_limit", "document_tokens", "document_character_limit",
    )] == [1, 2, 3, 4, 5, 6, 7]
    assert (version["is_support_deploy"], version["is_support_model_comp"],
            version["is_support_evaluation"]) == (True, False, None)
    assert version["model_application_type"] == "chat"
    assert (version["create_time"], version["modify_time"]) == (_at(1), _at(2))

    sets = [model_sets.row({"modelSetId": "am-1", "modelIds": [], "createTime": created, **mod},
                           is_system=True)
            for created, mod in (("2024-03-22T01:00:00Z", {"modifyTime": "2024-03-22T02:00:00Z"}),
                                 (None, {"time": "2024-03-22T02:00:00Z"}))]  # the preset page's
    assert [(s.get("create_time"), s["modify_time"]) for s in sets] == [
        (_at(1), _at(2)), (None, _at(2))
    ]

    task = compression_tasks.row({
        "id": "amva-1", "config": {"strategy": "Quant", "quantConf": "w8a8", "sparsityRatio": 0.5},
        "createTime": "2024-03-22T01:00:00Z", "finishTime": "2024-03-22T02:00:00Z",
    })
    assert (task["strategy"], task["quant_conf"], task["sparsity_ratio"]) == ("Quant", "w8a8", 0.5)
    assert (task["create_time"], task["finish_time"]) == (_at(1), _at(2))

    job = fine_tuning_jobs.row({"jobId": "job-1", "createTime": "2024-03-22T01:00:00Z"})
    assert job["create_time"] == _at(1)  # QA's truncated "creat..." name; the SDK says createDate
    ft = fine_tuning_tasks.row({"taskId": "task-1", "createDate": "2024-03-22T01:00:00Z",
                                "finishDate": "0000-00-00T00:00:00Z"})
    assert (ft["create_time"], ft["finish_time"]) == (_at(1), None)  # the SDK mock's "not yet"

    export = model_exports.row("amv-1", {"hasRecord": True, "fileSize": "1024"})
    assert export is not None and export["file_size"] == 1024

    service = services.row({"serviceId": "svco-1", "resourceConfig": {
        "type": "GPU-I-2", "replicasCount": 2, "qps": 5}}, is_preset=False, detailed=True)
    assert (service["resource_type"], service["replicas"], service["replica_qps"]) == (
        "GPU-I-2", 2, 5
    )

    ref = eval_result_exports.row(
        {"exportID": 96, "exportIDStr": "amemt-x", "id": 7, "idStr": "r7"}
    )
    assert (ref["export_id"], ref["export_id_str"], ref["record_id"], ref["record_id_str"]) == (
        96, "amemt-x", 7, "r7"
    )

    # The answer's evalType over the listing's filter it was asked with.
    answered = eval_tasks.row({"taskId": "ame-1", "evalType": "manual"}, "auto")
    assert answered["eval_type"] == "manual"
    assert eval_tasks.row({"taskId": "ame-1"}, "auto")["eval_type"] == "auto"


@pytest.mark.parametrize(
    "obj",
    [
        {"modelSetId": "am-1", "modelIds": "amv-1"},
        {"modelSetId": None},
        {"modelSetId": "am-1", "createTime": 5},
    ],
)
def test_malformed_model_sets_are_refused(obj: dict[str, object]) -> None:
    with pytest.raises(normalize.NormalizeError):
        model_sets.row(obj, is_system=False)


@pytest.mark.parametrize(
    ("conv", "value"),
    [
        (normalize.as_int, 1.5),  # int() cut it to 1: a wrong value stored as answered
        (normalize.as_int, float("inf")),  # JSON Infinity: int() raised OverflowError
        (normalize.as_int, float("nan")),
        (normalize.as_float, "abc"),  # float() raised a ValueError that ended the run
        (normalize.as_float, float("nan")),  # SQLite stores NULL, PostgreSQL NaN
        (normalize.as_float, "inf"),
    ],
)
def test_numbers_that_are_not_the_documented_type_are_refused(
    conv: Callable[[Any], Any], value: object
) -> None:
    with pytest.raises(normalize.NormalizeError, match="expected"):
        conv(value)


def test_whole_floats_and_numeric_strings_are_numbers() -> None:
    assert normalize.as_int(4096.0) == 4096 and normalize.as_int("7") == 7
    assert normalize.as_float("0.5") == 0.5 and normalize.as_float(2) == 2.0
    with pytest.raises(normalize.NormalizeError, match="inputTokens"):
        model_versions.row(
            {"modelId": "amv-1", "tokenLimitations": {"trivial": {"inputTokens": 4096.5}}}
        )
    with pytest.raises(normalize.NormalizeError, match="sparsityRatio"):
        compression_tasks.row({"id": "amva-1", "config": {"sparsityRatio": "half"}})


@pytest.mark.parametrize(
    ("conv", "value"),
    [
        (normalize.as_text, {"zh": "名"}),  # str() of it was stored as the name
        (normalize.as_text, ["a"]),
        (normalize.as_int, True),  # a bool is no count: True was stored as 1
        (normalize.as_int, "abc"),  # a ValueError, which no handler takes, before
        (normalize.as_int, [1]),
        (normalize.as_float, False),
        (normalize.as_bool, 1),  # 1 and 0 are not the documented true and false
        (normalize.as_bool, 0),
        (normalize.as_bool, "yes"),
        (normalize.as_obj, "x"),  # not an empty object: the answer is malformed
        (normalize.as_obj, ["a"]),
    ],
)
def test_each_converter_refuses_the_wrong_type(conv: Callable[[Any], Any], value: object) -> None:
    with pytest.raises(normalize.NormalizeError):
        conv(value)


def test_no_value_is_none_for_every_converter() -> None:
    """'' and null are no value (NULL), never an empty text stored as if answered."""
    for conv in (normalize.as_text, normalize.as_int, normalize.as_float, normalize.stable_url):
        assert conv("") is None and conv(None) is None
    assert normalize.as_bool(None) is None and normalize.as_obj(None) == {}


@pytest.mark.parametrize(("text", "value"), [("true", True), ("False", False), ("TRUE", True)])
def test_booleans_as_text_in_any_case(text: str, value: bool) -> None:
    assert normalize.as_bool(text) is value


def test_a_malformed_field_is_named_in_the_error() -> None:
    with pytest.raises(normalize.NormalizeError, match="^fileSize: expected an integer"):
        model_exports.row("amv-1", {"hasRecord": True, "fileSize": "big"})
    with pytest.raises(normalize.NormalizeError, match="^modelName: expected text"):
        model_versions.row({"modelId": "amv-1", "modelName": {"a": 1}})
    with pytest.raises(normalize.NormalizeError, match="^tokenLimitations: expected an object"):
        model_versions.row({"modelId": "amv-1", "tokenLimitations": "4096"})


@pytest.mark.parametrize(
    ("build", "obj", "named"),
    [
        (model_versions.row, {"tokenLimitations": {"trivial": [4096]}}, "tokenLimitations.trivial"),
        (model_versions.row, {"tokenLimitations": {"reranker": 1}}, "tokenLimitations.reranker"),
        (model_versions.row, {"sourceInfo": "Train"}, "sourceInfo"),
        (model_versions.row, {"advancedSettings": []}, "advancedSettings"),
        (compression_tasks.row, {"config": "Sparsity"}, "config"),
        (eval_task_reports.row, {"effectMetric": [0.5]}, "effectMetric"),
    ],
)
def test_a_nested_object_of_the_wrong_type_is_named_by_its_path(
    build: Callable[[dict[str, Any]], Any], obj: dict[str, Any], named: str
) -> None:
    """An object field that is not an object fails the entity with its path named, as a plain
    field is named: the line in sync_errors says which part of the answer to look at."""
    ids = {"modelId": "amv-1", "id": "cmp-1", "taskId": "et-1", "modelSetId": "am-1"}
    with pytest.raises(normalize.NormalizeError, match=f"^{named}: expected an object"):
        build({**ids, **obj})


def test_state_of_prefers_the_spelling_the_call_answers_with() -> None:
    both = {"status": "Ready", "state": "Done"}
    assert normalize.state_of(both) == "Ready"
    assert normalize.state_of(both, first="state") == "Done"
    assert normalize.state_of({"state": "Done"}) == "Done"  # the other spelling, alone
    assert normalize.state_of({"status": "Done"}, first="state") == "Done"
    assert normalize.state_of({"status": "", "state": "Done"}) == "Done"
    assert normalize.state_of({}) is None


def test_column_limits_are_exact() -> None:
    """At the limit is stored; one past it (PostgreSQL's error, for the whole batch) is not."""
    assert compression_tasks.row({"id": "amva-1", "status": "x" * 32})["status"] == "x" * 32
    with pytest.raises(normalize.NormalizeError, match="status: 33 characters"):
        compression_tasks.row({"id": "amva-1", "status": "x" * 33})
    big = 2**63 - 1  # BIGINT: a file of 5 GB is no INTEGER, and fits
    for size in (big, -big, 5 * 2**30):
        assert model_exports.row("amv-1", {"hasRecord": True, "fileSize": size}) is not None
    for size in (big + 1, -big - 2):
        with pytest.raises(normalize.NormalizeError, match="file_size: .* out of range"):
            model_exports.row("amv-1", {"hasRecord": True, "fileSize": size})
    for beams in (2**31 - 1, -(2**31 - 1)):
        settings = {"numBeams": beams}
        assert model_versions.row({"modelId": "amv-1", "advancedSettings": settings})
    for beams in (2**31, -(2**31) - 1):
        with pytest.raises(normalize.NormalizeError, match="num_beams"):
            model_versions.row({"modelId": "amv-1", "advancedSettings": {"numBeams": beams}})


@pytest.mark.parametrize("ref", ["96", "amemt-hkkf5y9e64j8", " 7 "])
def test_eval_refs(ref: str) -> None:
    assert normalize.eval_export_ref(ref) == ref.strip()


@pytest.mark.parametrize(
    "ref", ["", "abc", "amemt-", "96; drop table", "-1", "9" * 19, "amemt-" + "a" * 33]
)
def test_bad_eval_refs(ref: str) -> None:
    with pytest.raises(normalize.NormalizeError, match="evaluation export id"):
        normalize.eval_export_ref(ref)


def test_eval_body_types() -> None:
    assert normalize.eval_ref_body("96") == {"exportID": 96}
    assert normalize.eval_ref_body("amemt-x1") == {"exportID": "amemt-x1"}


def test_values_a_column_cannot_hold_are_refused_here() -> None:
    with pytest.raises(normalize.NormalizeError, match="status: 100 characters"):
        compression_tasks.row({"id": "amva-1", "status": "x" * 100})
    with pytest.raises(normalize.NormalizeError, match="task_id"):
        compression_tasks.row({"id": "amva-" + "9" * 80})
    with pytest.raises(normalize.NormalizeError, match="file_size: .* out of range"):
        model_exports.row("amv-1", {"hasRecord": True, "fileSize": 2**64})
    with pytest.raises(normalize.NormalizeError, match="num_beams"):
        model_versions.row({"modelId": "amv-1", "advancedSettings": {"numBeams": 2**40}})
    long_text = "名" * 10_000  # unbounded text columns take 10 KB strings as they are
    row = compression_tasks.row({"id": "amva-1", "name": long_text})
    assert row["name"] == long_text


@pytest.mark.parametrize("value", ["amv-1", 7, "a b"])
def test_an_id_is_a_non_empty_string_or_an_integer(value: object) -> None:
    from catalog.normalize import is_id, require_id

    assert is_id(value) and require_id({"id": value}, "id") == str(value)


@pytest.mark.parametrize(
    "value", [None, "", "   ", "  x ", "amv-1 ", True, 1.5, ["a"], {"id": "x"}]
)
def test_anything_else_is_no_id(value: object) -> None:
    """One rule for describe answers (``require_id``) and listings (the pager): a blank id,
    accepted by ``require_id`` before, could not be told from the entity it stands for; nor can
    a padded one from the stored id it pads (a set naming ``"amv-1 "`` deleted ``amv-1``)."""
    from catalog.normalize import NormalizeError, is_id, require_id

    assert not is_id(value)
    with pytest.raises(NormalizeError, match="missing or not an id"):
        require_id({"id": value}, "id")


def test_drift_names_unknown_and_missing_fields_apart() -> None:
    """Against DescribeModelCompTask's documents (id name status required; failedReason and
    the rest optional): an optional field absent or present is no drift, a required one absent
    is *missing*, a field no document names *unknown*; each counted, with its first example."""
    from catalog.documented import MISSING, UNKNOWN, DriftLog, DriftSeen

    call = "DescribeModelCompTask"
    log = DriftLog()
    log.check("compression_task", call, {"id": "a", "name": "n", "status": "s"}, "a")
    log.check("compression_task", call, {"id": "a", "name": "n", "status": "s",
                                         "failedReason": "", "config": {}}, "a")
    assert log.found == {}
    log.check("compression_task", call, {"id": "b", "status": "s", "quotaTier": 1}, "b")
    log.check("compression_task", call, {"id": "c", "status": "s"}, "c")
    assert log.found == {
        ("compression_task", call, "name", MISSING): DriftSeen(2, "b"),
        ("compression_task", call, "quotaTier", UNKNOWN): DriftSeen(1, "b"),
    }
    # A listing page names its example by the page's own key (a set's is modelSetId).
    page = [{"modelSetId": "am-1", "modelSetName": "n", "modelType": "t", "modelIds": []},
            {"modelSetId": "am-2", "modelSetName": "n", "modelIds": [], "id": "other"}]
    log = DriftLog()
    log.check_page("model_set", "DescribeCustomModelSets", page, "modelSetId")
    assert log.found == {
        ("model_set", "DescribeCustomModelSets", "modelType", MISSING): DriftSeen(1, "am-2"),
        ("model_set", "DescribeCustomModelSets", "id", UNKNOWN): DriftSeen(1, "am-2"),
    }
