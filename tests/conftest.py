"""Shared fixtures: every database test runs on SQLite and on a real PostgreSQL server.

Fixtures
--------
``pg_server``  (session)  a started :class:`tests.pg.PostgresServer`; started lazily, only when a
                          PostgreSQL test runs. Skipped when the server binaries are missing,
                          except with ``CI=true``, where that is a failure.
``db_url``     (function) parametrized ``sqlite`` / ``postgresql``: a SQLAlchemy URL to an empty
                          database of its own (a file in ``tmp_path``, or ``CREATE DATABASE``
                          dropped WITH (FORCE) after the test).
``sqlite_url`` (function) the SQLite half only (a different file from ``db_url``'s).
``pg_url``     (function) the PostgreSQL half only (a different database from ``db_url``'s).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pg import PostgresServer, find_bindir

PG_MISSING = "PostgreSQL server binaries (initdb) not found; install Debian's postgresql"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "postgresql: runs against the test suite's PostgreSQL server"
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


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)],
    ids=["sqlite", "postgresql"],
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield _sqlite_url(tmp_path)
        return
    # Looked up here, not declared as an argument, so SQLite-only runs never start a server.
    server: PostgresServer = request.getfixturevalue("pg_server")
    with server.fresh_database() as url:
        yield url
