"""End to end against an oracle written by hand (``tests/oracle/``), not computed by the code.

The other sync tests build their expectations with the product's own ``normalize``, so a wrong
time zone, a lost fraction, a zero time stored as year 1, a size that overflows or a mangled name
would pass them all. Here the fake serves the documents' example answers and a handful of tricky
ones, a real sync stores them through HTTP, and every column of every row is compared with a
value worked out by reading the documents.
"""

from __future__ import annotations

import copy
from typing import Any

from sqlalchemy import select

from catalog import db
from catalog.fake.catalog import FakeCatalog
from catalog.schema import metadata
from tests.helpers import fake_console, sync
from tests.oracle import answers, rows


def oracle_catalog() -> FakeCatalog:
    """A fake holding exactly the oracle's answers (its per-kind dicts keyed as documented)."""
    catalog = FakeCatalog()
    for kind, objects in answers.BY_KIND.items():
        for key, obj in objects.items():
            catalog._items[kind][key] = copy.deepcopy(obj)
    return catalog


def _stored(db_url: str) -> dict[str, dict[Any, dict[str, Any]]]:
    """Every column of every row of the entity tables, by primary key."""
    engine = db.create_engine_for(db_url)
    out: dict[str, dict[Any, dict[str, Any]]] = {}
    try:
        with engine.connect() as conn:
            for name in rows.TABLES:
                table = metadata.tables[name]
                key = next(c.name for c in table.primary_key.columns if c.name != "account")
                out[name] = {r[key]: dict(r) for r in conn.execute(select(table)).mappings()}
    finally:
        engine.dispose()
    return out


def _differences(
    stored: dict[str, dict[Any, dict[str, Any]]], expected: dict[str, dict[Any, dict[str, Any]]]
) -> list[str]:
    out = []
    for table, want in expected.items():
        got = stored[table]
        if set(got) != set(want):
            out.append(f"{table}: keys {sorted(map(str, got))} != {sorted(map(str, want))}")
        for key in sorted(set(got) & set(want), key=str):
            columns = set(got[key]) - rows.BOOKKEEPING
            if columns != set(want[key]):
                out.append(f"{table} {key}: columns not in the oracle "
                           f"{sorted(columns - set(want[key]))}, missing "
                           f"{sorted(set(want[key]) - columns)}")
            for column in sorted(columns & set(want[key])):
                value, wanted = got[key][column], want[key][column]
                if value != wanted or type(value) is not type(wanted):
                    out.append(f"{table} {key}.{column}: stored {value!r}, expected {wanted!r}")
    return out


def test_a_sync_stores_the_documents_answers_as_worked_out_by_hand(db_url: str) -> None:
    with fake_console(oracle_catalog()) as server:
        summary = sync(db_url, server, eval_export_ids=answers.TRACKED_EVAL_REFS)
    assert summary.status == "success", summary.message
    differences = _differences(_stored(db_url), rows.TABLES)
    assert not differences, "\n".join(differences)
