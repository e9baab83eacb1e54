"""API objects to table rows: the converters each kind's ``row`` builds its rows with.

The API spells the same thing several ways (three time formats, ``state`` vs ``status``, ids as
numbers or strings); these converters accept every spelling, so the store only ever sees typed,
snake_case rows whose values compare equal when the entity did not change.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import BigInteger, Integer, String

CHINA = dt.timezone(dt.timedelta(hours=8))

#: A zone's name (``CST``) only after its offset, as Go writes it (``+0800 CST``): alone it was
#: ignored, and ``10:00:00 UTC`` read as China time, 8 hours off.
_TIME_RE = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<time>\d{2}:\d{2}:\d{2})(?:\.(?P<frac>\d{1,9}))?"
    r"(?:\s*(?P<zone>Z|[+-]\d{2}:?\d{2})(?:\s+[A-Z]{2,5})?)?$"
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
    # The pattern takes any digits: "2024-13-01", "2024-02-30", "25:00:00" match it, and a
    # time near year 9999 overflows in UTC. Raised as it was (ValueError, OverflowError), one
    # answer's bad time escaped the writer's and the detail call's NormalizeError handlers and
    # ended the whole run, every run while the answer stayed; it is that entity's failure.
    try:
        naive = dt.datetime.fromisoformat(f"{m['date']}T{m['time']}.{frac}")
        return naive.replace(tzinfo=tz).astimezone(dt.UTC)
    except (ValueError, OverflowError) as exc:
        raise NormalizeError(f"{field}: impossible time {text[:40]!r} ({exc})") from None


def stable_url(value: Any) -> str | None:
    """A download URL without its query string: signed URLs rotate it on every call."""
    if not value:
        return None
    parts = urlsplit(str(value))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def download_unsigned(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """``obj`` with its ``downloadUrl`` cut at the query string: a pre-signed link's signature
    authorises a download for as long as it lasts, so it is neither stored (``raw``) nor
    hashed (the service signs afresh on every call). ``obj`` itself when it has none."""
    url = obj.get("downloadUrl")
    if isinstance(url, str) and "?" in url:
        return {**obj, "downloadUrl": url.split("?", 1)[0]}
    return obj


def as_text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, (dict, list)):
        raise NormalizeError(f"expected text, got {type(value).__name__}")
    return str(value)


def as_int(value: Any) -> int | None:
    """An integer, or its decimal string; a float only when whole (``4096.0``): ``int`` would
    cut ``1.5`` to 1, a wrong value stored as if answered, and raise ``OverflowError`` for the
    ``Infinity`` the JSON parser accepts."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise NormalizeError(f"expected an integer, got {type(value).__name__}")
    if isinstance(value, float) and not value.is_integer():
        raise NormalizeError(f"expected an integer, got {value!r}")
    try:
        return int(value)
    except ValueError as exc:
        raise NormalizeError(f"expected an integer, got {value!r}") from exc


def as_float(value: Any) -> float | None:
    """A finite number: ``float("abc")``'s ``ValueError`` is no ``NormalizeError`` (it ended
    the run), and a NaN (JSON ``NaN``, ``"nan"``) is stored as NULL by SQLite and as NaN by
    PostgreSQL, an infinity as no documented value."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise NormalizeError(f"expected a number, got {type(value).__name__}")
    try:
        number = float(value)
    except ValueError as exc:
        raise NormalizeError(f"expected a number, got {value!r}") from exc
    if not math.isfinite(number):
        raise NormalizeError(f"expected a finite number, got {value!r}")
    return number


def as_bool(value: Any) -> bool | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise NormalizeError(f"expected a boolean, got {value!r}")


def as_obj(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise NormalizeError(f"expected an object, got {type(value).__name__}")
    return value


def obj_at(obj: Mapping[str, Any], *path: str) -> dict[str, Any]:
    """The object at ``path`` inside ``obj`` ({} where a step is absent or null); an error names
    the whole path (``tokenLimitations.trivial``), as ``field_of`` names its field."""
    found: dict[str, Any] = {}
    node = obj
    for depth, name in enumerate(path, 1):
        try:
            found = as_obj(node.get(name))
        except NormalizeError as exc:
            raise NormalizeError(f"{'.'.join(path[:depth])}: {exc}") from None
        node = found
    return found


def field_of(obj: Mapping[str, Any], name: str, conv: Callable[[Any], Any]) -> Any:
    try:
        return conv(obj.get(name))
    except NormalizeError as exc:
        raise NormalizeError(f"{name}: {exc}") from None


def state_of(obj: Mapping[str, Any], first: str = "status") -> str | None:
    """An object's ``status`` or ``state``, whichever it carries: the documents and their examples
    spell the same field both ways. ``first`` is the spelling the call is known to answer with."""
    second = "state" if first == "status" else "status"
    value: str | None = field_of(obj, first, as_text) or field_of(obj, second, as_text)
    return value


def _limit(column: Any) -> int | None:
    """The largest length (text) or magnitude (integers) a column takes on PostgreSQL."""
    if isinstance(column.type, String) and column.type.length:
        return int(column.type.length)
    if isinstance(column.type, BigInteger):
        return 2**63 - 1
    if isinstance(column.type, Integer):
        return 2**31 - 1
    return None


@functools.cache
def _limits(table: str) -> list[tuple[str, int]]:
    """The columns of ``table`` PostgreSQL bounds (SQLite does not): text length, integer size.

    Looked up on first use: the schema is built from the kinds, which use this module.
    """
    from catalog.schema import metadata

    return [
        (c.name, limit) for c in metadata.tables[table].columns if (limit := _limit(c)) is not None
    ]


def fits(table: str, row: dict[str, Any]) -> dict[str, Any]:
    """Refuse a value its column cannot hold, here, as a malformed answer for this entity only.

    Left to the database, it would fail the whole batch on PostgreSQL (and pass on SQLite).
    """
    for name, limit in _limits(table):
        value = row.get(name)
        if isinstance(value, str) and len(value) > limit:
            raise NormalizeError(f"{name}: {len(value)} characters, more than the {limit} allowed")
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > limit:
            raise NormalizeError(f"{name}: {value} is out of range")
    return row


def is_id(value: object) -> bool:
    """An id an answer can name an entity by: a non-empty string without surrounding blanks,
    or an integer. An item of a listing without one cannot be told from the entity it stands
    for, which the listing's end would then delete (``"amv-1 "`` is not the stored ``amv-1``)."""
    if isinstance(value, str):
        return bool(value) and value == value.strip()
    return isinstance(value, int) and not isinstance(value, bool)


def require_id(obj: Mapping[str, Any], name: str) -> str:
    value = obj.get(name)
    if not is_id(value):
        raise NormalizeError(f"{name}: missing or not an id")
    return str(value)


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
