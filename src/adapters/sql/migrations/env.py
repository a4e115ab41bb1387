"""Alembic environment: runs on the connection ``adapters.sql.migrate`` passes."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from adapters.sql.distribution import distribute
from adapters.sql.migrate import migration_engine
from adapters.sql.tables import metadata

# Any fixed number: every taskvault instance that starts at once waits on it,
# so exactly one of them migrates.
_MIGRATION_LOCK = 7_362_941


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        context.run_migrations()
        # After every revision, not in one: the tables a later revision adds
        # are distributed too (adapters.sql.distribution).
        distribute(connection, metadata)


async def _run_standalone() -> None:
    engine = migration_engine(context.config.get_main_option("sqlalchemy.url") or "")
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


shared = context.config.attributes.get("connection")
if shared is not None:
    _run(shared)
else:
    asyncio.run(_run_standalone())
