"""Column types shared by the schema and the kinds' column declarations.

Kept apart from ``schema.py`` because each kind declares its own columns (``catalog/kinds``) and
the schema builds its tables from those declarations.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, BigInteger, DateTime, Dialect, Integer, TypeDecorator
from sqlalchemy.dialects.postgresql import JSONB


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC in and out, on every dialect.

    SQLite has no time zone type, so values are stored as naive UTC there and given their zone
    back on the way out; PostgreSQL stores ``timestamptz``. Naive values are refused, because a
    naive time in this project is always a bug.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


#: JSON that compares by value on PostgreSQL (``json`` has no equality operator, ``jsonb`` does).
#: No value is SQL NULL, not the JSON ``null`` Core writes by default: ``IS NULL`` and a BI
#: tool's "is empty" filter must find it, on both databases (migration 0010 converted the old).
JsonValue = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
#: Auto-increment ids: BIGINT where it matters, INTEGER on SQLite where only that is a rowid alias.
BigId = BigInteger().with_variant(Integer(), "sqlite")
