"""Shared fixtures: every database test runs on SQLite and on a real PostgreSQL server.

Fixtures
--------
``pg_server``  (session)  a started :class:`tests.pg.PostgresServer`; started lazily, only when a
                          PostgreSQL test runs. Skipped when the server binaries are missing,
                          except with ``CI=true``, where that is a failure.
``db_url``     (function) parametrized ``sqlite`` / ``postgresql``: a SQLAlchemy URL to a
                          database of its own whose schema is at head, with no row in it (a copy
                          of a template migrated once per worker: a file in ``tmp_path``, or
                          ``CREATE DATABASE ... TEMPLATE`` dropped WITH (FORCE) after the test).
                          A test marked ``@pytest.mark.empty_database`` gets an empty one
                          instead: for what a sync does to a new database (creating the schema
                          takes most of a second, which almost every test would pay).
``sqlite_url`` (function) the SQLite half only, empty (a different file from ``db_url``'s).
``pg_url``     (function) the PostgreSQL half only, empty (a different database from ``db_url``'s).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import create_schema
from tests.pg import PostgresServer, find_bindir

PG_MISSING = "PostgreSQL server binaries (initdb) not found; install Debian's postgresql"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "postgresql: runs against the test suite's PostgreSQL server"
    )
    config.addinivalue_line(
        "markers", "empty_database: db_url is an empty database, not one at the schema's head"
    )


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    bindir = find_bindir()
    if bindir is None:
        if _in_ci():
            pytest.fail(f"{PG_MISSING} (CI=true: PostgreSQL must be tested)", pytrace=False)
        pytest.skip(PG_MISSING)
    server = PostgresServer(bindir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def _sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/catalog.db"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    # Its own subdirectory, so a test using both sqlite_url and db_url gets two databases.
    directory = tmp_path / "sqlite_url"
    directory.mkdir()
    return _sqlite_url(directory)


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> Iterator[str]:
    with pg_server.fresh_database() as url:
        yield url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file at the schema's head, migrated once per worker."""
    url = _sqlite_url(tmp_path_factory.mktemp("template"))
    create_schema(url)
    return Path(url.removeprefix("sqlite:///"))


@pytest.fixture(scope="session")
def pg_template(pg_server: PostgresServer) -> str:
    """The name of a database at the schema's head, migrated once per server."""
    name = f"template_{uuid.uuid4().hex}"
    pg_server.create_database(name)
    create_schema(pg_server.url(name))
    return name


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)],
    ids=["sqlite", "postgresql"],
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    empty = request.node.get_closest_marker("empty_database") is not None
    # Looked up here, not declared as arguments, so SQLite-only runs never start a server.
    if request.param == "sqlite":
        url = _sqlite_url(tmp_path)
        if not empty:
            template: Path = request.getfixturevalue("sqlite_template")
            shutil.copyfile(template, url.removeprefix("sqlite:///"))
        yield url
        return
    server: PostgresServer = request.getfixturevalue("pg_server")
    with server.fresh_database(None if empty else request.getfixturevalue("pg_template")) as url:
        yield url
