"""API objects to table rows.

The API spells the same thing several ways (three time formats, ``state`` vs ``status``, ids as
numbers or strings); this module is the one place that knows, so the store only ever sees typed,
snake_case rows whose values compare equal when the entity did not change.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import BigInteger, Integer, String

from catalog.schema import metadata

CHINA = dt.timezone(dt.timedelta(hours=8))

_TIME_RE = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<time>\d{2}:\d{2}:\d{2})(?:\.(?P<frac>\d{1,9}))?"
    r"\s*(?P<zone>Z|[+-]\d{2}:?\d{2})?(?:\s+[A-Z]{2,5})?$"
)


class NormalizeError(ValueError):
    """A field's value is not what the documents allow; the message names the field."""


def parse_time(value: Any, field: str = "time") -> dt.datetime | None:
    """Any documented time form to an aware UTC datetime; the zero time and '' mean no value.

    Forms: ``2024-03-22T17:13:33+08:00`` (fraction up to 9 digits, or ``Z``),
    ``2023-06-24 22:19:40 +0800 CST``, and naive ``2023-09-07 11:11:11``, which is China time.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise NormalizeError(f"{field}: expected a time string, got {type(value).__name__}")
    text = value.strip()
    if not text:
        return None
    m = _TIME_RE.match(text)
    if not m:
        raise NormalizeError(f"{field}: unrecognised time {text[:40]!r}")
    if m["date"].startswith("0001-01-01"):
        return None
    frac = (m["frac"] or "").ljust(6, "0")[:6]
    zone = m["zone"]
    if zone is None:
        tz: dt.tzinfo = CHINA
    elif zone == "Z":
        tz = dt.UTC
    else:
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        tz = dt.timezone(sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    naive = dt.datetime.fromisoformat(f"{m['date']}T{m['time']}.{frac}")
    return naive.replace(tzinfo=tz).astimezone(dt.UTC)


def stable_url(value: Any) -> str | None:
    """A download URL without its query string: signed URLs rotate it on every call."""
    if not value:
        return None
    parts = urlsplit(str(value))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, (dict, list)):
        raise NormalizeError(f"expected text, got {type(value).__name__}")
    return str(value)


def _int(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise NormalizeError(f"expected an integer, got {type(value).__name__}")
    try:
        return int(value)
    except ValueError as exc:
        raise NormalizeError(f"expected an integer, got {value!r}") from exc


def _float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise NormalizeError(f"expected a number, got {type(value).__name__}")
    return float(value)


def _bool(value: Any) -> bool | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise NormalizeError(f"expected a boolean, got {value!r}")


def _obj(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise NormalizeError(f"expected an object, got {type(value).__name__}")
    return value


def _json(value: Any) -> Any:
    return value


def _field(obj: Mapping[str, Any], name: str, conv: Callable[[Any], Any]) -> Any:
    try:
        return conv(obj.get(name))
    except NormalizeError as exc:
        raise NormalizeError(f"{name}: {exc}") from None


def _limit(column: Any) -> int | None:
    """The largest length (text) or magnitude (integers) a column takes on PostgreSQL."""
    if isinstance(column.type, String) and column.type.length:
        return int(column.type.length)
    if isinstance(column.type, BigInteger):
        return 2**63 - 1
    if isinstance(column.type, Integer):
        return 2**31 - 1
    return None


#: Per table, the columns PostgreSQL bounds (SQLite does not): length of text, size of integers.
_LIMITS = {
    table.name: [(c.name, limit) for c in table.columns if (limit := _limit(c)) is not None]
    for table in metadata.tables.values()
}


def _fits(table: str, row: dict[str, Any]) -> dict[str, Any]:
    """Refuse a value its column cannot hold, here, as a malformed answer for this entity only.

    Left to the database, it would fail the whole batch on PostgreSQL (and pass on SQLite).
    """
    for name, limit in _LIMITS[table]:
        value = row.get(name)
        if isinstance(value, str) and len(value) > limit:
            raise NormalizeError(f"{name}: {len(value)} characters, more than the {limit} allowed")
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > limit:
            raise NormalizeError(f"{name}: {value} is out of range")
    return row


def _require_id(obj: Mapping[str, Any], name: str) -> str:
    value = obj.get(name)
    if not isinstance(value, (str, int)) or isinstance(value, bool) or value == "":
        raise NormalizeError(f"{name}: missing or not an id")
    return str(value)


def model_set_row(obj: Mapping[str, Any], is_system: bool) -> dict[str, Any]:
    """A set from a listing item or a describe answer.

    A listing item has no ``source``: which listing it came from says it (``UserCreate`` for my
    models, ``System`` for presets, the two values DescribeModelSet documents). The preset
    listing's page in one of the vendor's two sites calls the modification time ``time``.
    """
    model_ids = obj.get("modelIds") or []
    if not isinstance(model_ids, list):
        raise NormalizeError("modelIds: expected a list")
    source = _field(obj, "source", _text) or ("System" if is_system else "UserCreate")
    modified = obj.get("modifyTime") if obj.get("modifyTime") is not None else obj.get("time")
    return _fits(
        "model_sets",
        {
            "model_set_id": _require_id(obj, "modelSetId"),
            "model_set_name": _field(obj, "modelSetName", _text),
            "source": source,
            "model_type": _field(obj, "modelType", _text),
            "is_system": is_system,
            "labels": obj.get("labels"),
            "description": _field(obj, "description", _text),
            "model_ids": [str(m) for m in model_ids],
            "create_time": parse_time(obj.get("createTime"), "createTime"),
            "modify_time": parse_time(modified, "modifyTime"),
            "raw": dict(obj),
        },
    )


def model_version_row(obj: Mapping[str, Any]) -> dict[str, Any]:
    source = _obj(obj.get("sourceInfo"))
    limits = _obj(obj.get("tokenLimitations"))
    trivial = _obj(limits.get("trivial"))
    reranker = _obj(limits.get("reranker"))
    advanced = _obj(obj.get("advancedSettings"))
    return _fits(
        "model_versions",
        {
            "model_id": _require_id(obj, "modelId"),
            "model_set_id": _field(obj, "modelSetId", _text),
            "model_set_name": _field(obj, "modelSetName", _text),
            "model_name": _field(obj, "modelName", _text),
            "model": _field(obj, "model", _text),
            "status": _field(obj, "status", _text) or _field(obj, "state", _text),
            "description": _field(obj, "description", _text),
            "source_type": _field(source, "sourceType", _text),
            "train_task_id": _field(source, "trainTaskId", _text),
            "acceleration_task_id": _field(source, "accelerationTaskId", _text),
            "import_model_version_bos_url": _field(source, "importModelVersionBosUrl", _text),
            "model_application_type": _field(obj, "modelApplicationType", _text),
            "input_tokens": _field(trivial, "inputTokens", _int),
            "output_tokens": _field(trivial, "outputTokens", _int),
            "character_limit": _field(trivial, "characterLimit", _int),
            "query_tokens": _field(reranker, "queryTokens", _int),
            "query_character_limit": _field(reranker, "queryCharacterLimit", _int),
            "document_tokens": _field(reranker, "documentTokens", _int),
            "document_character_limit": _field(reranker, "documentCharacterLimit", _int),
            "is_support_deploy": _field(obj, "isSupportDeploy", _bool),
            "is_support_model_comp": _field(obj, "isSupportModelComp", _bool),
            "is_support_evaluation": _field(obj, "isSupportEvaluation", _bool),
            "sampling_strategy": _field(advanced, "samplingStrategy", _text),
            "num_beams": _field(advanced, "numBeams", _int),
            "top_logprobs": _field(advanced, "topLogprobs", _int),
            "model_comp_configs": obj.get("modelCompConfigs"),
            "create_time": parse_time(obj.get("createTime"), "createTime"),
            "modify_time": parse_time(obj.get("modifyTime"), "modifyTime"),
            "raw": dict(obj),
        },
    )


def compression_task_row(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A task from a listing item, or from a listing item merged with DescribeModelCompTask.

    Only the detail call answers ``failedReason``; a failed task's row from the listing alone
    has no ``failed_reason`` key at all, so the store keeps the reason it has (``None`` would
    erase it). An empty reason is kept as ``''``: NULL means "not asked yet", or not failed.
    """
    config = _obj(obj.get("config"))
    row = _fits(
        "compression_tasks",
        {
            "task_id": _require_id(obj, "id"),
            "name": _field(obj, "name", _text),
            "description": _field(obj, "description", _text),
            "status": _field(obj, "status", _text) or _field(obj, "state", _text),
            "source_model_id": _field(obj, "sourceModelId", _text),
            "model_id": _field(obj, "modelId", _text),
            "strategy": _field(config, "strategy", _text),
            "quant_conf": _field(config, "quantConf", _text),
            "sparsity_ratio": _field(config, "sparsityRatio", _float),
            "config": obj.get("config"),
            "create_time": parse_time(obj.get("createTime"), "createTime"),
            "finish_time": parse_time(obj.get("finishTime"), "finishTime"),
            "raw": dict(obj),
        },
    )
    if row["status"] != "failed":
        row["failed_reason"] = None  # a reason belongs to a failed task only
    elif "failedReason" in obj:
        reason = obj["failedReason"]
        if reason is not None and not isinstance(reason, str):
            raise NormalizeError(f"failedReason: expected text, got {type(reason).__name__}")
        row["failed_reason"] = reason or ""
    return row


def model_export_row(model_id: str, obj: Mapping[str, Any]) -> dict[str, Any] | None:
    """``None`` when the version has no export (``hasRecord: false``)."""
    has_record = _field(obj, "hasRecord", _bool)
    if has_record is False:
        return None
    return _fits(
        "model_exports",
        {
            "model_id": model_id,
            "export_id": _field(obj, "exportId", _text),
            # The documents say ``status``; their examples and the service say ``state``.
            "state": _field(obj, "state", _text) or _field(obj, "status", _text),
            "file_name": _field(obj, "fileName", _text),
            "file_type": _field(obj, "fileType", _text),
            "md5": _field(obj, "md5", _text),
            "file_size": _field(obj, "fileSize", _int),
            "download_url": stable_url(obj.get("downloadUrl")),
            "raw": dict(obj),
        },
    )


def eval_result_export_row(obj: Mapping[str, Any]) -> dict[str, Any]:
    export_id = _field(obj, "exportID", _int)
    if export_id is None:
        raise NormalizeError("exportID: missing")
    return _fits(
        "eval_result_exports",
        {
            "export_id": export_id,
            "export_id_str": _field(obj, "exportIDStr", _text),
            "record_id": _field(obj, "id", _int),
            "record_id_str": _field(obj, "idStr", _text),
            "state": _field(obj, "state", _text) or _field(obj, "status", _text),
            "export_type": _field(obj, "exportType", _text),
            "volume_id": _field(obj, "volumeId", _text),
            "export_path": _field(obj, "exportPath", _text),
            "download_url": stable_url(obj.get("downloadUrl")),
            "raw": dict(obj),
        },
    )


_EVAL_REF = re.compile(r"^(?:\d{1,18}|amemt-[a-z0-9]{1,32})$")


def eval_export_ref(value: str) -> str:
    """Check a user-given evaluation export id: a number or an ``amemt-...`` id."""
    text = value.strip()
    if not _EVAL_REF.match(text):
        raise NormalizeError(
            f"bad evaluation export id {value[:40]!r}: give the numeric exportID (96) "
            "or the exportIDStr (amemt-...)"
        )
    return text


def eval_ref_body(ref: str) -> dict[str, Any]:
    """The request body for one ref: the API wants an int for numeric ids, a string otherwise."""
    return {"exportID": int(ref) if ref.isdigit() else ref}
