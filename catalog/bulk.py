"""The bulk-SQL machinery under the store: one-value key lists, statements compiled once and
executed with hand-made DBAPI parameters, and the JSON text the store writes and hashes.

Kept apart from ``store.py``, which holds the history rules: this module knows nothing of
kinds, history or changes, only how to move many rows through SQLAlchemy fast (every figure
behind these choices is in the README's benchmark section and docs/benchmark-history.md).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import marshal
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    JSON,
    ClauseElement,
    ColumnElement,
    Connection,
    Dialect,
    Select,
    String,
    any_,
    bindparam,
    cast,
    func,
    select,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import OperationalError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.selectable import TableValuedAlias

from catalog.normalize import download_unsigned
from catalog.types import UTCDateTime


def _json_default(obj: Any) -> Any:
    if isinstance(obj, dt.datetime):
        return (obj if obj.tzinfo is dt.UTC else obj.astimezone(dt.UTC)).isoformat()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _encoder(py: json.JSONEncoder) -> Callable[[Any], str]:
    """``py.encode``, minus the C encoder ``json`` builds afresh on every call.

    ``json.dumps`` and ``JSONEncoder.encode`` construct the C encoder per value, and with
    several JSON values per row that is a real share of a database-bound write. The encoder is
    built here once, from the same settings, so the text is the same (tested against
    ``json.dumps``). The marker dict that guards against cycles is left out: these values are
    trees decoded from JSON.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # an interpreter without json's C accelerator
        return py.encode
    text = json.encoder
    strings = text.encode_basestring_ascii if py.ensure_ascii else text.encode_basestring
    c_encode = make(
        None, py.default, strings, None, py.key_separator, py.item_separator,
        py.sort_keys, py.skipkeys, py.allow_nan,
    )  # fmt: skip
    return lambda value: "".join(c_encode(value, 0))


#: Change rows' JSON: stable (sorted keys), readable (no \u escapes), times in ISO 8601 UTC.
to_json = _encoder(json.JSONEncoder(default=_json_default, ensure_ascii=False, sort_keys=True))
#: What Core's JSON type writes on SQLite (``json.dumps`` with its defaults, None as 'null').
_sqlite_json = _encoder(json.JSONEncoder())


def _sqlite_json_or_null(value: Any) -> str | None:
    """What Core's JSON type with ``none_as_null`` writes on SQLite: None is SQL NULL."""
    return None if value is None else _sqlite_json(value)


def answer_hash(obj: Mapping[str, Any]) -> str:
    """A digest of an API answer object: equal answers give equal digests.

    The answer's ``marshal`` form (format 2, which writes every value out and never refers
    back to an object seen before, so it depends on the values alone) is hashed rather than
    its JSON text: on a long listing this digest is most of the per-item work of a no-op
    re-sync, and JSON text costs more to make (README, the no-op benchmark).
    Keys count in the order the service sent them. An answer whose keys come in a new order
    is therefore read as changed once: it is normalised and compared, found equal, and only
    its stored answer and hash follow it (no history, no change row). A ``downloadUrl``
    counts without its query string, which the service signs afresh on every call.
    """
    obj = download_unsigned(obj)
    value: Any = obj  # a dict from a JSON answer; anything else fails over to its JSON text
    try:
        text = marshal.dumps(value, 2)
    except ValueError:  # a value JSON cannot hold either (not from an answer): its JSON text
        text = to_json(obj).encode()
    return hashlib.blake2b(text, digest_size=16).hexdigest()


def one_of(
    column: ColumnElement[Any], keys: Sequence[Any], dialect: str, json_each: bool = True
) -> ColumnElement[bool]:
    """``column IN (keys)`` with all the keys in one bound value instead of one each.

    Core renders and binds an expanding ``IN`` list key by key on every execution, which cost
    more than the database's own work for a batch's lookups; a JSON array read by ``json_each``
    (SQLite) or an array compared with ``= ANY`` (PostgreSQL) is one parameter, and the
    statement compiles once. It also lifts SQLite's limit on bound variables per statement.
    An SQLite built without its JSON functions (``json_each=False``) gets the plain ``IN`` list.
    """
    if dialect == "sqlite" and not json_each:
        return column.in_(list(keys))
    if dialect == "postgresql":
        return column == any_(bindparam(None, list(keys), type_=postgresql.ARRAY(column.type)))
    listed = func.json_each(bindparam(None, _sqlite_json(list(keys)), type_=String()))
    return column.in_(select(listed.table_valued("value").c.value))


def pairs(dialect: str, name: str = "pairs") -> TableValuedAlias:
    """Rows ``(key, value)`` of a JSON object bound as one parameter, ``name`` (its text:
    ``pairs_json``).

    For the no-op re-sync's per-batch question "which of these keys still has this hash": the
    database joins the rows with the stored ones itself, so an unchanged key never comes back
    to Python (``json_each`` on SQLite, ``json_each_text`` on PostgreSQL; both name the columns
    ``key`` and ``value``). Keys and values are text, whatever the key column's type.
    """
    text = bindparam(name, type_=String())
    if dialect == "postgresql":
        return func.json_each_text(cast(text, postgresql.JSON)).table_valued("key", "value")
    return func.json_each(text).table_valued("key", "value")


def pairs_json(mapping: Mapping[str, str]) -> str:
    """The parameter of ``pairs``."""
    return _sqlite_json(mapping)


class Bulk:
    """A statement compiled once, executed with rows turned into DBAPI parameters by hand.

    Core's ``executemany`` builds a parameter dict and runs generic bind processing for every row
    and every execute; on a database-bound write that overhead, not the database, is the
    limit (cProfile of ``bench/run.py db``). Here the SQL text, the parameter order and
    each column's bind processor (the same ones Core would apply: UTC times, JSON, JSONB) are
    worked out once per statement, and rows are executed through ``exec_driver_sql``, which still
    runs in the connection's transaction and fires its events.
    """

    def __init__(self, stmt: ClauseElement, dialect: Dialect, keys: Sequence[str]) -> None:
        compiled = stmt.compile(dialect=dialect, column_keys=list(keys), for_executemany=True)
        assert isinstance(compiled, SQLCompiler)
        self.sql = compiled.string
        self.positional = bool(compiled.positional)
        by_name = {name: bind for bind, name in compiled.bind_names.items()}
        names = list(compiled.positiontup or []) if self.positional else list(by_name)
        wanted = set(keys)
        self.names = tuple(names)
        #: Per parameter: the row key to read (or None for a constant) and its bind processor.
        self.slots: list[tuple[str | None, Any, Callable[[Any], Any] | None]] = []
        for name in names:
            bind = by_name[name]
            processor = _processor(bind.type, dialect)
            if name in wanted:
                self.slots.append((name, None, processor))
            else:
                value = bind.value
                self.slots.append((None, processor(value) if processor else value, None))
        # The fast path: constants before and after one run of row values (how every statement
        # here compiles: run stamps lead in ``changes``, bookkeeping trails in the upserts).
        is_key = [key is not None for key, _, _ in self.slots]
        first = is_key.index(True) if True in is_key else 0
        n_keys = sum(is_key)
        self.fast = n_keys > 0 and all(is_key[first : first + n_keys])
        keys_in_order = [key for key, _, _ in self.slots[first : first + n_keys] if key]
        self.getter: Callable[[Mapping[str, Any]], Any] | None = None
        if self.fast:
            self.getter = itemgetter(*keys_in_order) if n_keys > 1 else _single(keys_in_order[0])
        self.procs = [
            (i, proc) for i, (_, _, proc) in enumerate(self.slots[first : first + n_keys]) if proc
        ]
        self.before = tuple(const for _, const, _ in self.slots[:first])
        self.after = tuple(const for _, const, _ in self.slots[first + n_keys :])

    def _values(self, row: Mapping[str, Any]) -> tuple[Any, ...]:
        if self.getter is not None:
            try:
                values = list(self.getter(row))
            except KeyError:
                pass
            else:
                for i, proc in self.procs:
                    values[i] = proc(values[i])
                return (*self.before, *values, *self.after)
        return tuple(
            const if key is None else (proc(row.get(key)) if proc else row.get(key))
            for key, const, proc in self.slots
        )

    def execute(self, conn: Connection, rows: Iterable[Mapping[str, Any]]) -> int:
        """Run for every row; returns the rows changed (both drivers sum them over executemany)."""
        values = self._values
        if self.positional:
            params: list[Any] = [values(row) for row in rows]
        else:
            names = self.names
            params = [dict(zip(names, values(row), strict=True)) for row in rows]
        if not params:
            return 0
        return int(conn.exec_driver_sql(self.sql, params).rowcount)

    def execute_one(self, conn: Connection, row: Mapping[str, Any]) -> int:
        """Run once for ``row``; returns the rows changed (a single execute: every driver
        counts the rows of an INSERT ... SELECT then)."""
        values = self._values(row)
        params = values if self.positional else dict(zip(self.names, values, strict=True))
        return int(conn.exec_driver_sql(self.sql, params).rowcount)


def driver_rows(conn: Connection, stmt: Select[Any], size: int) -> Iterator[list[Any]]:
    """``stmt``'s rows, ``size`` at a time, as the driver's own tuples, on ``conn``.

    For a long scan whose rows are only hashed (a ledger's): SQLAlchemy's ``Row`` over each
    tuple was most of the scan's time in the interpreter (docs/benchmark-history.md, the no-op
    pair), and its result processing changes nothing in text columns. The statement is compiled
    once and run on a cursor of the connection's driver; on PostgreSQL a named (server-side)
    cursor, so the rows stream in parts instead of arriving all at once. Only for statements
    whose columns have no result processor and whose parameters need no bind processor (plain
    text).
    """
    compiled = stmt.compile(dialect=conn.dialect)
    params = compiled.construct_params()
    args: Any = params
    if compiled.positional:
        args = [params[name] for name in compiled.positiontup or ()]
    driver: Any = conn.connection.driver_connection
    streamed = conn.dialect.name == "postgresql"
    cursor = driver.cursor(name="catalog_scan") if streamed else driver.cursor()
    try:
        cursor.execute(compiled.string, args)
        while part := cursor.fetchmany(size):
            yield part
    finally:
        cursor.close()


def _single(key: str) -> Callable[[Mapping[str, Any]], tuple[Any]]:
    """Like ``itemgetter(key)`` but a 1-tuple, as ``itemgetter`` gives for two keys or more."""
    return lambda row: (row[key],)


def _sqlite_utc(value: dt.datetime | None) -> str | None:
    """UTCDateTime then SQLite's DATETIME processor, in one C-level call (same text; tested)."""
    if value is None:
        return None
    if value.tzinfo is dt.UTC:  # what normalize gives: no conversion needed
        return value.isoformat(" ", "microseconds")[:26]
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _processor(type_: Any, dialect: Dialect) -> Callable[[Any], Any] | None:
    """The bind processor Core would use for ``type_``; faster equal ones on SQLite (tested)."""
    if dialect.name == "sqlite":
        if isinstance(type_, UTCDateTime):
            return _sqlite_utc
        if isinstance(type_.dialect_impl(dialect), JSON):
            return _sqlite_json_or_null if type_.none_as_null else _sqlite_json
    processor: Callable[[Any], Any] | None = type_.dialect_impl(dialect).bind_processor(dialect)
    return processor


def has_json_each(conn: Connection) -> bool:
    """Whether this SQLite has its JSON functions (built in since 3.38, optional before)."""
    try:
        conn.exec_driver_sql("SELECT count(*) FROM json_each('[1]')").scalar_one()
    except OperationalError:
        return False
    return True
