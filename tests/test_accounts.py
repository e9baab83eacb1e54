"""Many accounts in one database: keys are (account, id), and nothing one account's run decides
touches another account's rows.

The accounts here serve the *same* generated catalog (the same API ids) wherever the point is
isolation: a statement that forgot the account would then find, change or delete the other
account's row, and the test would see it.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import signal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import JSON, Boolean, DateTime, MetaData, Table, func, select, text

from catalog import db, locks, queries
from catalog.cli import cli
from catalog.errors import ConfigError, ExitCode, LockTimeout, MassDeleteRefused
from catalog.fake.catalog import FakeCatalog
from catalog.fake.server import FakeServer
from catalog.killpoints import ENV as KILL_AT
from catalog.schema import SPECS, changes, sync_runs
from tests._proc import assert_consistent, cli_env, dump_db, popen_cli, run_cli, sync_argv
from tests.helpers import AK, SK, expected_rows, fake_console, stored_rows, sync, tracked_only
from tests.test_concurrency import Gate, _wait

FIXTURE = Path(__file__).with_name("fixtures") / "pre_accounts.json"
#: Tables with a generated integer key, and that key.
SERIAL = {
    "sync_runs": "run_id",
    "changes": "change_id",
    "sync_errors": "error_id",
    "api_drift": "drift_id",
    **{spec.history.name: "history_id" for spec in SPECS.values()},
}


def small(seed: int = 31, **kw: Any) -> FakeCatalog:
    return FakeCatalog.generate(seed=seed, model_sets=3, comp_tasks=8, **kw)


def account_rows(db_url: str, account: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of one account (entities, history, changes, runs, errors, its source)."""
    return dump_db(db_url, account=account)


def catalog_rows(db_url: str, account: str) -> dict[str, list[tuple[Any, ...]]]:
    """One account's catalog: its rows but for the run ledger (a refused run writes its row)."""
    rows = account_rows(db_url, account)
    return {table: r for table, r in rows.items() if table not in ("sync_runs", "sync_errors")}


def run_rows(db_url: str) -> list[dict[str, Any]]:
    engine = db.create_engine_for(db_url)
    try:
        with engine.connect() as conn:
            stmt = select(sync_runs).order_by(sync_runs.c.run_id)
            return [dict(r) for r in conn.execute(stmt).mappings()]
    finally:
        engine.dispose()


# -- isolation ---------------------------------------------------------------------------------


def test_two_accounts_with_the_same_ids_stay_apart(db_url: str) -> None:
    one, two = small(), small()
    with fake_console(one) as a, fake_console(two) as b:
        assert sync(db_url, a, account="a").status == "success"
        assert sync(db_url, b, account="b").status == "success"
        expected = tracked_only(expected_rows(one))
        assert stored_rows(db_url, account="a") == expected
        assert stored_rows(db_url, account="b") == expected  # the same ids, twice
        before_a = account_rows(db_url, "a")
        # b's catalog changes: a set goes (with its versions and exports), a task changes.
        rng = random.Random(5)
        gone = sorted(two.keys("model_set"))[0]
        two.remove("model_set", gone)
        task = sorted(two.keys("compression_task"))[0]
        two.change("compression_task", task, rng)
        summary = sync(db_url, b, account="b", max_delete_share=1.0)
        assert summary.status == "success"
        assert summary.kinds["model_set"].deleted == 1
        assert summary.kinds["compression_task"].updated == 1
        assert stored_rows(db_url, account="b") == tracked_only(expected_rows(two))
        # a's rows, history and changes are exactly as they were, though b deleted a set with
        # a's ids and changed a task with a's id.
        assert account_rows(db_url, "a") == before_a
        # a's next run is a no-op: b's run did not make a's rows look changed or unseen.
        again = sync(db_url, a, account="a")
        assert (again.kinds["model_set"].inserted, again.kinds["model_set"].deleted) == (0, 0)
        assert sum(c.inserted + c.updated + c.deleted for c in again.kinds.values()) == 0
    engine = db.create_engine_for(db_url)
    try:
        with engine.connect() as conn:
            ids = queries.changes_query(conn, account="b")[1]
            assert {row[1] for row in ids} == {"b"}
            deleted = [r for r in ids if r[5] == "delete" and r[3] == "model_set"]
            assert [r[4] for r in deleted] == [gone]
            assert queries.accounts(conn) == ["a", "b"]
            # Views carry the account: the same set appears once per account.
            cols, rows = queries.report(conn, "versions_by_model_set",
                                        ["account", "model_set_id"])
            per_account = {acct: {r[1] for r in rows if r[0] == acct} for acct in ("a", "b")}
            assert gone in per_account["a"] and gone not in per_account["b"]
            current = conn.execute(text(
                "SELECT account, COUNT(*) FROM current_model_sets GROUP BY account"
            )).all()
            assert dict(current) == {"a": len(one.keys("model_set")),
                                     "b": len(two.keys("model_set"))}
    finally:
        engine.dispose()
    assert_consistent(db_url)


def test_an_emptied_account_trips_only_its_own_delete_guard(db_url: str) -> None:
    big, shrinking = FakeCatalog.generate(seed=41, model_sets=8, comp_tasks=20), small(seed=42)
    with fake_console(big) as a, fake_console(shrinking) as b:
        assert sync(db_url, a, account="a").status == "success"
        assert sync(db_url, b, account="b").status == "success"
        sets_b = sorted(shrinking.keys("model_set"))
        custom = [k for k in sets_b if not str(k).startswith("am-sys")]
        for key in custom[1:]:  # b loses most of its custom sets: far more than half of b's
            shrinking.remove("model_set", key)
        before = (account_rows(db_url, "a"), catalog_rows(db_url, "b"))
        with pytest.raises(MassDeleteRefused) as refused:
            sync(db_url, b, account="b")
        # Measured against b's own sets, not the two accounts' together (which would pass).
        assert f"of the {len(sets_b)} there were before this run" in str(refused.value)
        # b's refused run left its failed run row and nothing else; a's rows are untouched.
        assert (account_rows(db_url, "a"), catalog_rows(db_url, "b")) == before
        assert [r["status"] for r in run_rows(db_url) if r["account"] == "b"][-1] == "failed"
        assert sync(db_url, a, account="a").status == "success"  # a is not held up by b
        assert sync(db_url, b, account="b", allow_mass_delete=True).status == "success"
    assert account_rows(db_url, "a")["model_sets"] == before[0]["model_sets"]
    assert_consistent(db_url)


def test_an_account_is_bound_to_its_source(db_url: str) -> None:
    other_key = "other-account-ak"
    with fake_console(small()) as server, FakeServer(small(), other_key, SK) as other:
        assert sync(db_url, server, account="prod").status == "success"
        with pytest.raises(ConfigError) as info:
            sync(db_url, other, account="prod", access_key=other_key)
        assert info.value.exit_code == ExitCode.CONFIG
        assert "account 'prod'" in str(info.value) and "--rebind-source" in str(info.value)
        assert other_key not in str(info.value)
        # Another account may use that key: it is another catalog.
        assert sync(db_url, other, account="dev", access_key=other_key).status == "success"


def test_the_lock_is_per_account(db_url: str) -> None:
    with fake_console(small()) as server:
        sync(db_url, server, account="a")  # creates the schema
        engine = db.create_engine_for(db_url)
        try:
            with engine.connect() as conn, locks.writer_lock(conn, 0, "a"):
                with pytest.raises(LockTimeout) as info:
                    sync(db_url, server, account="a")
                assert "account 'a'" in str(info.value)
                assert sync(db_url, server, account="b").status == "success"
        finally:
            engine.dispose()
        assert sync(db_url, server, account="a").status == "success"


# -- a database written before accounts --------------------------------------------------------


def _load_fixture(conn: Any) -> dict[str, int]:
    """Insert the rows a sync of main (before accounts) wrote, into a schema at 0006."""
    data = json.loads(FIXTURE.read_text(encoding="utf-8"))
    meta = MetaData()
    counts = {}
    for name, content in sorted(data.items(), key=lambda item: item[0] != "sync_runs"):
        if name == "alembic_version":
            continue
        table = Table(name, meta, autoload_with=conn)
        rows = []
        for values in content["rows"]:
            row = dict(zip(content["columns"], values, strict=True))
            for column in table.columns:
                value = row.get(column.name)
                if value is None:
                    continue
                if isinstance(column.type, DateTime):
                    row[column.name] = dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)
                elif isinstance(column.type, JSON):
                    row[column.name] = json.loads(value)
                elif isinstance(column.type, Boolean):
                    row[column.name] = bool(value)
            rows.append(row)
        if rows:
            conn.execute(table.insert(), rows)
        counts[name] = len(rows)
    if conn.dialect.name == "postgresql":  # explicit ids were inserted: move the sequences on
        for name, column in SERIAL.items():
            if name not in counts:  # a table newer than the fixture's schema
                continue
            high = conn.execute(select(func.max(Table(name, meta).c[column]))).scalar() or 0
            conn.execute(
                text("SELECT setval(pg_get_serial_sequence(:t, :c), :v, false)"),
                {"t": name, "c": column, "v": high + 1},
            )
    return counts


def _fixture_catalog() -> FakeCatalog:
    """The catalog the fixture was synced from, in the state of its second run (see
    tests/fixtures/README.md)."""
    catalog = FakeCatalog.generate(seed=7, model_sets=3, comp_tasks=8, fine_tuning_jobs=2,
                                   eval_tasks=2)
    rng = random.Random(70)
    catalog.change("model_version", sorted(catalog.keys("model_version"))[0], rng)
    catalog.remove("compression_task", sorted(catalog.keys("compression_task"))[0])
    catalog.add("model_set", rng)
    return catalog


def _hashes_cleared(table: Table, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Migration 0009: alive preset sets without a creation time lose their answer hash, so
    that the next run describes them (the code before never asked for the time)."""
    at = {c.name: i for i, c in enumerate(table.columns)}
    out = []
    for row in rows:
        if row[at["is_system"]] and row[at["create_time"]] is None and \
                row[at["deleted_at"]] is None:
            row = (*row[:at["raw_hash"]], "", *row[at["raw_hash"] + 1:])
        out.append(row)
    assert out != rows  # the fixture has such sets
    return sorted(out, key=repr)


@pytest.mark.empty_database
def test_a_database_from_before_accounts_upgrades_in_place(db_url: str) -> None:
    engine = db.create_engine_for(db_url)
    try:
        with engine.connect() as conn:
            db.upgrade(conn, "0006")
            counts = _load_fixture(conn)
            conn.commit()
            meta = MetaData()
            old = {name: Table(name, meta, autoload_with=conn) for name in counts}
            before = {
                name: sorted((tuple(r) for r in conn.execute(select(t))), key=repr)
                for name, t in old.items()
            }
            db.upgrade(conn)
            assert db.schema_state(conn) == "current"
            for name, rows in before.items():
                table = Table(name, MetaData(), autoload_with=conn)
                columns = [table.c[c.name] for c in old[name].columns]
                kept = sorted((tuple(r) for r in conn.execute(select(*columns))), key=repr)
                if name == "model_sets":
                    rows = _hashes_cleared(old[name], rows)
                assert kept == rows, name  # every row as it was
                if "account" not in old[name].c and "account" in table.c:
                    got = set(conn.execute(select(table.c.account).distinct()).scalars())
                    assert got <= {"default"}, name  # ... and now the default account's
    finally:
        engine.dispose()
    assert counts["changes"] > 0 and counts["model_versions_history"] > counts["model_versions"]
    assert_consistent(db_url)
    # The old catalog goes on syncing as account 'default': its source binding, keys and
    # history carry over, so an unchanged catalog gives a run that changes nothing but what
    # the code of then never asked for: each preset set's creation time, learnt once.
    catalog = _fixture_catalog()
    presets = sorted(k for k in catalog.keys("model_set") if catalog.is_preset_set(k))
    assert presets
    with fake_console(catalog) as server:
        summary = sync(db_url, server)
    assert summary.status == "success"
    assert sum(c.inserted + c.updated + c.deleted for c in summary.kinds.values()) == \
        summary.kinds["model_set"].updated == len(presets), summary.line()
    engine = db.create_engine_for(db_url)
    try:
        with engine.connect() as conn:
            learnt = conn.execute(
                select(changes.c.kind, changes.c.entity_id, changes.c.field, changes.c.old_value)
                .where(changes.c.run_id == summary.run_id).order_by(changes.c.entity_id)
            ).all()
    finally:
        engine.dispose()
    assert [tuple(r) for r in learnt] == [("model_set", k, "create_time", None) for k in presets]
    assert [r["account"] for r in run_rows(db_url)] == ["default"] * 3


# -- several processes at once -----------------------------------------------------------------


def _argv(db_url: str, server: Any, account: str, *extra: str) -> list[str]:
    return sync_argv(db_url, server, "--account", account, "--lock-timeout", "60", *extra)


def _overlap(rows: list[dict[str, Any]]) -> bool:
    finished = [r for r in rows if r["finished_at"] is not None]
    return any(a["started_at"] < b["finished_at"] and b["started_at"] < a["finished_at"]
               for i, a in enumerate(finished) for b in finished[i + 1:])


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_three_accounts_sync_side_by_side_and_a_killed_one_repairs_alone(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if backend == "sqlite":
        db_url = f"sqlite:///{tmp_path}/catalog.db"
    else:
        db_url = request.getfixturevalue("pg_url")
    names = ("a", "b", "c")
    catalogs = {name: small(seed=51 + i) for i, name in enumerate(names)}
    keys = {name: (f"ak-{name}-0123456789", f"sk-{name}-0123456789") for name in names}
    envs = {name: cli_env(*keys[name]) for name in names}
    with FakeServer(catalogs["a"], *keys["a"], latency=0.01) as a, \
            FakeServer(catalogs["b"], *keys["b"], latency=0.01) as b, \
            FakeServer(catalogs["c"], *keys["c"], latency=0.01) as c:
        servers = {"a": a, "b": b, "c": c}
        # a is held at its third call (it holds its lock by then) while a fourth process for a
        # starts: that one exits 7 at once. The others go on meanwhile.
        gate = Gate(a, at=3)
        procs = {n: popen_cli(_argv(db_url, s, n, "--workers", "2"), env=envs[n])
                 for n, s in servers.items()}
        _wait(gate, procs["a"])
        fourth = run_cli(_argv(db_url, a, "a", "--lock-timeout", "0"), env=envs["a"])
        assert fourth.returncode == ExitCode.LOCKED, fourth.stderr[-2000:]
        assert "another sync of account 'a' is running" in fourth.stderr
        gate.open()
        for name, proc in procs.items():
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, (name, err[-2000:])
        first = run_rows(db_url)
        assert sorted(r["account"] for r in first) == ["a", "b", "c"]  # the fourth: no row
        if backend == "postgresql":
            assert _overlap(first), "the three runs did not run side by side"
        totals: dict[str, int] = {}
        for name, catalog in catalogs.items():
            stored = stored_rows(db_url, account=name)
            assert stored == tracked_only(expected_rows(catalog))
            for kind, rows in stored.items():
                totals[kind] = totals.get(kind, 0) + len(rows)
        engine = db.create_engine_for(db_url)
        try:
            with engine.connect() as conn:
                for kind, spec in SPECS.items():  # the whole table is the sum of the three
                    count = conn.execute(select(func.count()).select_from(spec.table))
                    assert count.scalar_one() == totals[kind], kind
        finally:
            engine.dispose()
        # Second runs, every task changed; c is SIGKILLed after its first commit while a and b
        # go on.
        rng = random.Random(9)
        for catalog in catalogs.values():
            for key in sorted(catalog.keys("compression_task")):
                catalog.change("compression_task", key, rng)
        procs = {
            "a": popen_cli(_argv(db_url, a, "a", "--workers", "2"), env=envs["a"]),
            "c": popen_cli(_argv(db_url, c, "c", "--workers", "1", "--batch-size", "2",
                                 "--commit-interval", "0"), env={**envs["c"], KILL_AT:
                                                                 "batch_committed"}),
            "b": popen_cli(_argv(db_url, b, "b", "--workers", "2"), env=envs["b"]),
        }
        results = {name: proc.communicate(timeout=120) for name, proc in procs.items()}
        assert procs["c"].returncode == -signal.SIGKILL, results["c"][1][-2000:]
        for name in ("a", "b"):
            assert procs[name].returncode == 0, (name, results[name][1][-2000:])
        after_others = {n: account_rows(db_url, n) for n in ("a", "b")}
        statuses = {(r["account"], r["status"]) for r in run_rows(db_url)[3:]}
        assert statuses == {("a", "success"), ("b", "success"), ("c", "running")}
        # c's next run marks its own dead run aborted and completes; a's and b's rows stay.
        again = popen_cli(_argv(db_url, c, "c"), env=envs["c"])
        out, err = again.communicate(timeout=120)
        assert again.returncode == 0, err[-2000:]
        assert {n: account_rows(db_url, n) for n in ("a", "b")} == after_others
    by_account: dict[str, list[str]] = {}
    for row in run_rows(db_url):
        by_account.setdefault(row["account"], []).append(row["status"])
    assert by_account == {"a": ["success"] * 2, "b": ["success"] * 2,
                          "c": ["success", "aborted", "success"]}
    for name, catalog in catalogs.items():
        assert stored_rows(db_url, account=name) == tracked_only(expected_rows(catalog))
    assert_consistent(db_url)


# -- the command line and the config file -----------------------------------------------------


def test_account_tables_in_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    database = f"sqlite:///{tmp_path}/catalog.db"
    monkeypatch.delenv("QIANFAN_ACCESS_KEY", raising=False)
    monkeypatch.delenv("QIANFAN_SECRET_KEY", raising=False)
    with fake_console(small()) as prod, fake_console(small(seed=32)) as dev:
        config = tmp_path / "qianfan-catalog.toml"
        config.write_text(
            f'database-url = "{database}"\nqps = 0\ninclude-system = true\n'
            f'[accounts.prod]\nbase-url = "{prod.url}"\n'
            'access-key-env = "PROD_AK"\nsecret-key-env = "PROD_SK"\n'
            f'[accounts.dev]\nbase-url = "{dev.url}"\n'
            'access-key-env = "DEV_AK"\nsecret-key-env = "DEV_SK"\n',
            encoding="utf-8",
        )
        env = {"PROD_AK": AK, "PROD_SK": SK, "DEV_AK": AK, "DEV_SK": SK,
               # A key exported for another account must not win over the account's own.
               "QIANFAN_ACCESS_KEY": "someone-else", "QIANFAN_SECRET_KEY": "nope"}
        runner = CliRunner()
        for account in ("prod", "dev"):
            result = runner.invoke(cli, ["--config", str(config), "sync", "--account", account],
                                   env=env)
            assert result.exit_code == 0, result.output
            assert f"success (account {account}): " in result.output
        result = runner.invoke(cli, ["--config", str(config), "runs", "--format", "csv"])
        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        assert lines[0].split(",")[:2] == ["run_id", "account"]
        assert sorted(line.split(",")[1] for line in lines[1:]) == ["dev", "prod"]
        table = runner.invoke(cli, ["--config", str(config), "runs"])
        assert "account" in table.output.splitlines()[0]  # two accounts: the table says whose
        only = runner.invoke(cli, ["--config", str(config), "--account", "dev", "runs",
                                   "--format", "csv"])
        assert [line.split(",")[1] for line in only.output.splitlines()[1:]] == ["dev"]
        # The account's variable missing: one line naming it, exit 4, nothing written.
        result = runner.invoke(cli, ["--config", str(config), "sync", "--account", "prod"],
                               env={"PROD_AK": AK, "PROD_SK": ""})
        assert result.exit_code == ExitCode.CONFIG
        assert "PROD_SK" in result.output and "secret-key-env" in result.output
        assert SK not in result.output
        # A typo in an account table fails at once, naming the key.
        config.write_text('[accounts.prod]\nbase-ulr = "x"\n', encoding="utf-8")
        result = runner.invoke(cli, ["--config", str(config), "runs"])
        assert result.exit_code == ExitCode.CONFIG and "accounts.prod.base-ulr" in result.output


def test_reads_filter_by_account_and_say_when_an_id_is_ambiguous(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path}/catalog.db"
    catalog = small()
    with fake_console(catalog) as server:
        sync(database, server, account="a")
        sync(database, server, account="b")
    version = sorted(catalog.keys("model_version"))[0]
    runner = CliRunner()
    base = ["--database-url", database]
    result = runner.invoke(cli, [*base, "lineage", version])
    assert result.exit_code == ExitCode.FAILED
    assert "exists in accounts a, b" in result.output and "--account" in result.output
    result = runner.invoke(cli, [*base, "lineage", version, "--account", "b", "--format", "csv"])
    assert result.exit_code == 0 and version in result.output
    result = runner.invoke(cli, [*base, "history", "model_version", version, "--format", "csv"])
    assert sorted(line.split(",")[0] for line in result.output.splitlines()[1:]) == ["a", "b"]
    result = runner.invoke(cli, [*base, "history", "model_version", version, "--account", "c"])
    assert result.exit_code == ExitCode.FAILED and "in account 'c'" in result.output
    result = runner.invoke(cli, [*base, "as-of", "2999-01-01", "model_set", "--format", "csv"],
                           env={"CATALOG_ACCOUNT": "a"})
    assert {line.split(",")[0] for line in result.output.splitlines()[1:]} == {"a"}
    result = runner.invoke(cli, [*base, "report", "exports", "--format", "csv", "--account", "b"])
    assert {line.split(",")[0] for line in result.output.splitlines()[1:]} == {"b"}
    html = tmp_path / "r.html"
    result = runner.invoke(cli, [*base, "report", "--html", str(html), "--account", "a"])
    assert result.exit_code == 0, result.output
    page = html.read_text(encoding="utf-8")
    assert "account a" in page and 'data-account="b"' not in page and 'data-account="a"' in page
