"""A ``Storage`` of every adapter: the contract tests run once per store.

SQLite and PostgreSQL are each served by two adapters: the one the service
uses (``sqlite3`` on the event loop; asyncpg), and the SQLAlchemy one, which
must pass the same contract; on Citus too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from adapters.asyncpg import PgStorage
from adapters.memory import MemoryStorage
from adapters.sqlalchemy import SqlAlchemyStorage
from adapters.sqlite import SqliteStorage
from application.ports import Storage
from tests.support import SequentialIds

ADAPTERS = [
    pytest.param("memory", marks=pytest.mark.memory),
    pytest.param("sqlite", marks=pytest.mark.sqlite),
    pytest.param("sqlalchemy-sqlite", marks=pytest.mark.sqlite),
    pytest.param("asyncpg", marks=pytest.mark.postgres),
    pytest.param("sqlalchemy-postgres", marks=pytest.mark.postgres),
    pytest.param("asyncpg-citus", marks=pytest.mark.citus),
    pytest.param("sqlalchemy-citus", marks=pytest.mark.citus),
]


@pytest.fixture(params=ADAPTERS)
def adapter(request: pytest.FixtureRequest) -> tuple[str, str]:
    """The adapter under test and the URL of its empty, migrated database."""
    if request.param == "memory":
        return "memory", "memory://"
    database = request.param.rpartition("-")[2]
    fixture = {"sqlite": "sqlite_url", "citus": "citus_url"}.get(database, "postgres_url")
    url: str = request.getfixturevalue(fixture)
    return request.param, url


def build_storage(adapter: str, url: str) -> Storage:
    if adapter == "memory":
        return MemoryStorage()
    if adapter == "sqlite":
        return SqliteStorage(url)
    return PgStorage(url) if adapter.startswith("asyncpg") else SqlAlchemyStorage(url)


@pytest.fixture
async def storage(adapter: tuple[str, str]) -> AsyncIterator[Storage]:
    """A store of the parametrized adapter, closed after the test."""
    store = build_storage(*adapter)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def ids() -> SequentialIds:
    return SequentialIds()
