"""An answer equal to the one stored last time is neither normalised nor compared again.

A no-op cron run should cost the API's time, not parsing: each entity stores a hash of its
answer, and the writer builds rows only for answers whose hash differs. A changed answer must
still be seen as changed, including a change outside the typed columns.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from sqlalchemy import func, select

from catalog import db
from catalog.bulk import answer_hash
from catalog.fake.catalog import FakeCatalog
from catalog.kinds import compression_tasks as task_kind
from catalog.kinds import model_versions as version_kind
from catalog.schema import SPECS, changes, compression_tasks
from tests.helpers import fake_console, stored_rows, sync


@pytest.fixture
def normalised(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How often the answers of each high-volume kind were normalised."""
    counts: Counter[str] = Counter()
    for name, module in (("compression_task_row", task_kind),
                         ("model_version_row", version_kind)):
        real = module.row

        def counting(*args: Any, _real: Any = real, _name: str = name, **kw: Any) -> Any:
            counts[_name] += 1
            return _real(*args, **kw)

        monkeypatch.setattr(module, "row", counting)
    return counts


def _count(db_url: str, table: Any) -> int:
    engine = db.create_engine_for(db_url)
    with engine.connect() as conn:
        n = int(conn.execute(select(func.count()).select_from(table)).scalar_one())
    engine.dispose()
    return n


def _history_and_changes(db_url: str) -> tuple[int, int]:
    return _count(db_url, SPECS["compression_task"].history), _count(db_url, changes)


def test_a_no_op_run_normalises_nothing(db_url: str, normalised: Counter[str]) -> None:
    catalog = FakeCatalog.generate(seed=51, model_sets=3, comp_tasks=40, eval_exports=0)
    with fake_console(catalog) as server:
        sync(db_url, server)
        first = Counter(normalised)
        assert first["compression_task_row"] >= 40 and first["model_version_row"] > 0
        normalised.clear()
        again = sync(db_url, server)
    assert again.status == "success"
    assert normalised == Counter()  # nothing parsed into rows, nothing compared
    assert again.counts["compression_task_seen"] == 40  # yet all of them seen (not deleted)
    assert all(again.counts[f"{k}_inserted"] == again.counts[f"{k}_updated"] == 0
               for k in SPECS)


def test_a_typed_change_is_still_seen(db_url: str, normalised: Counter[str]) -> None:
    catalog = FakeCatalog.generate(seed=52, model_sets=2, comp_tasks=10, eval_exports=0)
    task = catalog.keys("compression_task")[0]
    with fake_console(catalog) as server:
        sync(db_url, server)
        normalised.clear()
        catalog.patch("compression_task", task, fields={"description": "new words"})
        summary = sync(db_url, server)
    assert summary.counts["compression_task_updated"] == 1
    assert normalised["compression_task_row"] == 1  # only the changed answer
    assert stored_rows(db_url)["compression_task"][task]["description"] == "new words"


def test_a_change_outside_the_typed_columns_refreshes_raw_only(
    db_url: str, normalised: Counter[str]
) -> None:
    catalog = FakeCatalog.generate(seed=53, model_sets=2, comp_tasks=10, eval_exports=0)
    task = catalog.keys("compression_task")[0]
    with fake_console(catalog) as server:
        sync(db_url, server)
        written = _history_and_changes(db_url)
        catalog.patch("compression_task", task, fields={"quotaTier": "gold"})
        normalised.clear()
        summary = sync(db_url, server)
        assert normalised["compression_task_row"] == 1  # seen as changed: parsed again
        assert summary.counts["compression_task_updated"] == 0  # no typed column changed
        assert _history_and_changes(db_url) == written
        engine = db.create_engine_for(db_url)
        with engine.connect() as conn:
            raw, stored_hash = conn.execute(
                select(compression_tasks.c.raw, compression_tasks.c.raw_hash).where(
                    compression_tasks.c.task_id == task
                )
            ).one()
        engine.dispose()
        assert raw["quotaTier"] == "gold"  # the stored answer follows the service
        served = server.answer("/v2/model", "DescribeModelCompTasks", {"maxKeys": 100}, None)
        item = next(i for i in served["modelCompTaskList"] if i["id"] == task)
        assert stored_hash == answer_hash(item)
        normalised.clear()
        sync(db_url, server)
    assert normalised["compression_task_row"] == 0  # and the next run skips it again


def test_the_hash_ignores_a_signed_urls_query_but_not_a_value() -> None:
    a = {"id": "x", "downloadUrl": "https://b/o.tar?authorization=1", "n": [1, 2]}
    assert answer_hash(a) == answer_hash({**a, "downloadUrl": "https://b/o.tar?authorization=2"})
    assert answer_hash(a) != answer_hash({**a, "n": [2, 1]})
    assert answer_hash(a) != answer_hash({**a, "n": [1, 2.0]})  # 2 and 2.0 are two answers
    assert answer_hash(a) != answer_hash({**a, "downloadUrl": "https://b/p.tar?x"})
    assert answer_hash({"t": None}) != answer_hash({"t": ""})


def test_an_answer_with_its_keys_reordered_is_compared_once_and_changes_nothing(
    db_url: str, normalised: Counter[str]
) -> None:
    """The hash counts key order (it is cheaper that way): a reordered answer is normalised
    and compared, found equal, and only its stored answer and hash follow it."""
    catalog = FakeCatalog.generate(seed=54, model_sets=2, comp_tasks=10, eval_exports=0)
    task = catalog.keys("compression_task")[0]
    with fake_console(catalog) as server:
        sync(db_url, server)
        written = _history_and_changes(db_url)
        served = server.answer("/v2/model", "DescribeModelCompTasks", {"maxKeys": 100}, None)
        item = next(i for i in served["modelCompTaskList"] if i["id"] == task)
        reordered = dict(reversed(list(item.items())))
        assert reordered == item and answer_hash(reordered) != answer_hash(item)
        catalog.patch("compression_task", task, drop=list(item), fields=reordered)
        normalised.clear()
        summary = sync(db_url, server)
        assert normalised["compression_task_row"] == 1  # compared once
        assert summary.counts["compression_task_updated"] == 0
        assert _history_and_changes(db_url) == written
        normalised.clear()
        sync(db_url, server)
    assert normalised["compression_task_row"] == 0  # its new hash was stored: skipped again


def test_no_live_signature_is_stored_anywhere(db_url: str) -> None:
    """A pre-signed download link authorises a download while it lasts: the typed column kept
    it without its query already, but ``raw`` held it whole (``--record`` cut it, and so did
    the hash)."""
    from tests._proc import dump_db

    catalog = FakeCatalog.generate(seed=51, model_sets=3, comp_tasks=4, eval_exports=2,
                                   export_share=1.0)
    with fake_console(catalog) as server:
        served = [server.answer("/v2/model", "DescribeModelExportTask", {"modelId": m}, None)
                  for m in catalog.keys("model_export")]
        assert any("authorization=" in str(a.get("downloadUrl")) for a in served)
        assert sync(db_url, server).status == "success"
    dump = dump_db(db_url)
    assert dump["model_exports"]
    stored = repr(dump)
    assert "authorization=" not in stored.lower() and "bce-auth-v1" not in stored.lower()
    assert "downloadUrl" in stored  # the link is kept, without its query


def test_0010_cuts_the_signature_from_links_stored_before_it(db_url: str) -> None:
    """Their hash never counted the query, so no run would have rewritten those answers."""
    from sqlalchemy import JSON

    from catalog.schema import SPECS

    model_exports = SPECS["model_export"].table

    catalog = FakeCatalog.generate(seed=52, model_sets=2, comp_tasks=2, export_share=1.0)
    with fake_console(catalog) as server:
        assert sync(db_url, server).status == "success"
    engine = db.create_engine_for(db_url)
    t = model_exports
    with engine.connect() as conn:
        db.downgrade(conn, "0009")
        some = conn.execute(select(t.c.model_id, t.c.raw)).first()
        assert some is not None
        signed = {**some.raw, "downloadUrl": "https://b.example/m.tar?authorization=bce-auth-v1/x"}
        conn.execute(t.update().where(t.c.model_id == some.model_id).values(raw=signed))
        conn.execute(t.update().where(t.c.model_id != some.model_id).values(raw=JSON.NULL))
        conn.commit()
        db.upgrade(conn)
        raw = conn.execute(select(t.c.raw).where(t.c.model_id == some.model_id)).scalar_one()
    engine.dispose()
    assert raw == {**signed, "downloadUrl": "https://b.example/m.tar"}
