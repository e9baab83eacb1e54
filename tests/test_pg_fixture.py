"""The database fixtures themselves: both dialects work, each use is a database of its own, empty
when marked so and at the schema's head with no row otherwise."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from tests.pg import PostgresServer

metadata = sa.MetaData()
probe = sa.Table(
    "fixture_probe",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
)

UNICODE_NAME = "文心一言 ERNIE-4.0 — «模型» ✓ 🚀"
# Not UTC on purpose: PostgreSQL must keep the instant.
SEEN_AT = datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=timezone(timedelta(hours=8)))

_urls_seen: set[str] = set()


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    eng = sa.create_engine(db_url)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.mark.empty_database
def test_roundtrip_unicode_and_aware_datetime(engine: sa.Engine) -> None:
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(probe.insert().values(id=1, name=UNICODE_NAME, seen_at=SEEN_AT))
    with engine.connect() as conn:
        row = conn.execute(sa.select(probe)).one()
    assert row.id == 1
    assert row.name == UNICODE_NAME
    if engine.dialect.name == "postgresql":
        assert row.seen_at.tzinfo is not None
        assert row.seen_at == SEEN_AT  # same instant
        assert row.seen_at.utcoffset() == timedelta(0)  # the server runs with timezone=UTC
        assert engine.dialect.server_version_info is not None
        assert engine.dialect.server_version_info >= (12,)
    else:
        assert engine.dialect.name == "sqlite"
        # SQLite has no time zone type: SQLAlchemy stores the wall clock and drops the offset.
        # (Application code must normalize to UTC before writing; see catalog/normalize.py.)
        assert row.seen_at == SEEN_AT.replace(tzinfo=None)


@pytest.mark.empty_database
@pytest.mark.parametrize("attempt", [1, 2])
def test_each_use_is_an_isolated_empty_database(engine: sa.Engine, attempt: int) -> None:
    # Both attempts create the same table; whichever runs second would fail if they shared a db.
    url = engine.url.render_as_string(hide_password=False)
    assert url not in _urls_seen
    _urls_seen.add(url)
    assert sa.inspect(engine).get_table_names() == []
    metadata.create_all(engine, checkfirst=False)
    with engine.begin() as conn:
        conn.execute(probe.insert().values(id=attempt, name=f"attempt {attempt}", seen_at=SEEN_AT))
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(probe)).scalar_one() == 1


def test_db_url_and_single_dialect_fixtures_are_distinct(
    db_url: str, sqlite_url: str, request: pytest.FixtureRequest
) -> None:
    assert db_url != sqlite_url
    if db_url.startswith("postgresql"):
        pg_url: str = request.getfixturevalue("pg_url")
        assert pg_url.startswith("postgresql+psycopg://postgres@127.0.0.1:")
        assert pg_url != db_url


@pytest.mark.postgresql
def test_pg_databases_are_dropped_after_each_test(pg_server: PostgresServer, pg_url: str) -> None:
    # Earlier PG tests in this session created test_* databases; only this test's must remain.
    current = pg_url.rsplit("/", 1)[1]
    leftovers = [d for d in pg_server.list_databases() if d.startswith("test_")]
    assert leftovers == [current]


@pytest.mark.postgresql
def test_pg_server_settings(pg_server: PostgresServer, pg_url: str) -> None:
    eng = sa.create_engine(pg_url)
    try:
        with eng.connect() as conn:
            settings: dict[str, str] = dict(
                conn.execute(
                    sa.text(
                        "SELECT name, setting FROM pg_settings WHERE name IN "
                        "('fsync', 'listen_addresses', 'server_encoding', 'TimeZone')"
                    )
                ).all()
            )
    finally:
        eng.dispose()
    assert settings == {
        "fsync": "off",
        "listen_addresses": "127.0.0.1",
        "server_encoding": "UTF8",
        "TimeZone": "UTC",
    }


def test_db_url_is_at_the_schema_head_with_no_row_and_its_own(db_url: str) -> None:
    """Unmarked, a test's database is a copy of one migrated once: at head, with no row in any
    table, and written to by this test alone."""
    from catalog import db

    assert db_url not in _urls_seen
    _urls_seen.add(db_url)
    engine = db.create_engine_for(db_url)
    try:
        with engine.connect() as conn:
            assert db.schema_state(conn) == "current"
            tables = set(sa.inspect(conn).get_table_names()) - {"alembic_version"}
            assert "model_sets" in tables
            for name in sorted(tables):
                table = sa.Table(name, sa.MetaData(), autoload_with=conn)
                count = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
                assert count == 0, name
    finally:
        engine.dispose()
