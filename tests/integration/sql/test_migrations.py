"""Alembic migrations: they apply, reverse, and match the tables the code uses."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from adapters.sql.migrate import downgrade, upgrade
from adapters.sql.tables import metadata
from adapters.sqlalchemy.engine import create_engine

SQL_STORES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=SQL_STORES)
def migrated_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(
        "sqlite_url" if request.param == "sqlite" else "postgres_url"
    )
    return url


def _schema_drift(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection)
    # Indexes live in the migrations only; tables and columns must agree.
    return [d for d in compare_metadata(context, metadata) if "index" not in str(d[0])]


def _indexes(connection: Connection) -> list[dict[str, Any]]:
    return [dict(index) for index in inspect(connection).get_indexes("tasks")]


def _primary_key(connection: Connection) -> list[str]:
    return list(inspect(connection).get_pk_constraint("tasks")["constrained_columns"])


async def test_migrated_schema_matches_the_tables(migrated_url: str) -> None:
    engine = create_engine(migrated_url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_schema_drift) == []
            assert await conn.run_sync(_primary_key) == ["user_id", "id"]
            indexes = await conn.run_sync(_indexes)
    finally:
        await engine.dispose()
    assert indexes, "the list orders need indexes"
    for index in indexes:
        assert index["column_names"][0] == "user_id", index
    sorted_columns = {index["column_names"][1] for index in indexes}
    assert {"created_at", "updated_at", "due_at", "priority", "title"} <= sorted_columns


async def test_downgrade_and_upgrade_again(migrated_url: str) -> None:
    await downgrade(migrated_url, "base")
    engine = create_engine(migrated_url)
    try:
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
        assert "tasks" not in tables
        await upgrade(migrated_url)
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM tasks"))).scalar_one() == 0
    finally:
        await engine.dispose()
