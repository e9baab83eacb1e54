"""Alembic environment: the URL comes from the same place as the CLI's, or a connection is injected.

``catalog.db.upgrade`` passes its open connection in ``config.attributes["connection"]`` so that a
migration runs inside the caller's lock and transaction; the ``alembic`` command line falls back to
``CATALOG_DATABASE_URL`` (or the CLI's default).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from catalog.db import create_engine_for, resolve_database_url
from catalog.schema import metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run() -> None:
    injected = context.config.attributes.get("connection")
    if injected is not None:
        _configure(injected)
        return
    if context.is_offline_mode():
        context.configure(url=resolve_database_url(None), target_metadata=metadata,
                          literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    # SQLite's foreign keys off, as db.downgrade has them: a batch rebuild (copy, drop, rename)
    # drops tables that others refer to.
    engine = create_engine_for(resolve_database_url(None), foreign_keys=False)
    with engine.connect() as connection:
        _configure(connection)
    engine.dispose()


run()
