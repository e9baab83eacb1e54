"""Model versions (模型版本): one describe call per id their set's ``modelIds`` name.

Custom versions through DescribeModel, presets through DescribeSystemModel (the documents do
not promise that the custom call accepts preset ids). A set's ``modelIds`` are the complete
listing of its versions, so the set's scope completes as soon as the set is recorded; a version
whose describe call fails is kept, never deleted for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from sqlalchemy import BigInteger, Boolean, Column, ColumnElement, Integer, String, Text

from catalog.bulk import answer_hash
from catalog.documented import fields
from catalog.errors import ApiError
from catalog.events import VERSION, Keep, Record, ScopeDone
from catalog.kinds.base import DeleteView, Kind, Walk, answers_for, within_parents
from catalog.normalize import (
    NormalizeError,
    as_bool,
    as_int,
    as_text,
    field_of,
    fits,
    obj_at,
    parse_time,
    require_id,
    state_of,
)
from catalog.types import JsonValue, UTCDateTime

ACTIONS = {False: "DescribeModel", True: "DescribeSystemModel"}

KEY = Column("model_id", String(64), primary_key=True)
COLUMNS = (
    Column("model_set_id", String(64), index=True),
    Column("model_set_name", Text),
    Column("model_name", Text),
    Column("model", Text, comment="base model version name"),
    Column("status", String(32), comment="Ready, Creating, Fail"),
    Column("description", Text),
    Column("source_type", String(32), comment="Train, Acceleration, Import, PlatformPreset"),
    Column("train_task_id", Text),
    Column("acceleration_task_id", Text),
    Column("import_model_version_bos_url", Text),
    Column("model_application_type", String(32)),
    Column("input_tokens", BigInteger),
    Column("output_tokens", BigInteger),
    Column("character_limit", BigInteger),
    Column("query_tokens", BigInteger),
    Column("query_character_limit", BigInteger),
    Column("document_tokens", BigInteger),
    Column("document_character_limit", BigInteger),
    Column("is_support_deploy", Boolean),
    Column("is_support_model_comp", Boolean),
    Column("is_support_evaluation", Boolean),
    Column("sampling_strategy", String(64)),
    Column("num_beams", Integer),
    Column("top_logprobs", Integer),
    Column("model_comp_configs", JsonValue),
    Column("create_time", UTCDateTime),
    Column("modify_time", UTCDateTime),
)
#: REFERENCE.md section 3 and seed 004.
CALLS = {
    "DescribeModel": fields(
        "modelSetId modelId modelName status",
        "model sourceInfo description createTime modifyTime modelApplicationType "
        "tokenLimitations isSupportDeploy isSupportModelComp isSupportEvaluation capabilities "
        "modelProviders modelSetName modelCompConfigs advancedSettings endpointType ioTokens "
        "resourceConfig resourceId",
    ),
    "DescribeSystemModel": fields(
        "modelSetId modelId modelName status",
        "description createTime modifyTime modelApplicationType tokenLimitations "
        "isSupportDeploy isSupportModelComp isSupportEvaluation capabilities modelProviders",
    ),
}


def row(obj: Mapping[str, Any]) -> dict[str, Any]:
    source = obj_at(obj, "sourceInfo")
    trivial = obj_at(obj, "tokenLimitations", "trivial")
    reranker = obj_at(obj, "tokenLimitations", "reranker")
    advanced = obj_at(obj, "advancedSettings")
    return fits(
        "model_versions",
        {
            "model_id": require_id(obj, "modelId"),
            "model_set_id": field_of(obj, "modelSetId", as_text),
            "model_set_name": field_of(obj, "modelSetName", as_text),
            "model_name": field_of(obj, "modelName", as_text),
            "model": field_of(obj, "model", as_text),
            "status": state_of(obj),
            "description": field_of(obj, "description", as_text),
            "source_type": field_of(source, "sourceType", as_text),
            "train_task_id": field_of(source, "trainTaskId", as_text),
            "acceleration_task_id": field_of(source, "accelerationTaskId", as_text),
            "import_model_version_bos_url": field_of(source, "importModelVersionBosUrl", as_text),
            # Seed 004's field table names it modelApplicationType, its examples endpointType.
            "model_application_type": field_of(obj, "modelApplicationType", as_text)
            or field_of(obj, "endpointType", as_text),
            "input_tokens": field_of(trivial, "inputTokens", as_int),
            "output_tokens": field_of(trivial, "outputTokens", as_int),
            "character_limit": field_of(trivial, "characterLimit", as_int),
            "query_tokens": field_of(reranker, "queryTokens", as_int),
            "query_character_limit": field_of(reranker, "queryCharacterLimit", as_int),
            "document_tokens": field_of(reranker, "documentTokens", as_int),
            "document_character_limit": field_of(reranker, "documentCharacterLimit", as_int),
            "is_support_deploy": field_of(obj, "isSupportDeploy", as_bool),
            "is_support_model_comp": field_of(obj, "isSupportModelComp", as_bool),
            "is_support_evaluation": field_of(obj, "isSupportEvaluation", as_bool),
            "sampling_strategy": field_of(advanced, "samplingStrategy", as_text),
            "num_beams": field_of(advanced, "numBeams", as_int),
            "top_logprobs": field_of(advanced, "topLogprobs", as_int),
            "model_comp_configs": obj.get("modelCompConfigs"),
            "create_time": parse_time(obj.get("createTime"), "createTime"),
            "modify_time": parse_time(obj.get("modifyTime"), "modifyTime"),
            "raw": dict(obj),
        },
    )



def _of_set(walk: Walk, model_set: dict[str, Any], system: bool) -> None:
    walk.emit(ScopeDone("model_version", model_set["model_set_id"]))
    for model_id in model_set["model_ids"]:
        walk.submit(partial(_describe, walk, model_id, system), VERSION)


def _describe(walk: Walk, model_id: str, system: bool) -> None:
    if walk.denied("model_version"):
        return
    call = ACTIONS[system]
    try:
        obj = walk.client.call(call, {"modelId": model_id})
        answers_for(obj, "modelId", model_id)
    except (ApiError, NormalizeError) as exc:
        walk.fail("model_version", call, model_id, exc)
        walk.emit(Keep("model_version", model_id))
        return
    walk.drift.check("model_version", call, obj, model_id)
    build = partial(row, obj)  # by the writer, if the answer changed
    walk.emit(Record("model_version", model_id, obj, answer_hash(obj), build, call))


def _deletes(d: DeleteView) -> ColumnElement[bool] | None:
    """Versions a recorded set's modelIds no longer name, and versions of deleted sets."""
    return within_parents(d, "model_version", "model_set_id", "model_set")


KIND = Kind(
    name="model_version",
    table="model_versions",
    label="versions",
    short="versions",
    key=KEY,
    columns=COLUMNS,
    policy="QianfanReadAccessPolicy or QianfanModelTuningReadAccessPolicy",
    calls=CALLS,
    parent="model_set",
    on_parent={"model_set": _of_set},
    deletes=_deletes,
)
