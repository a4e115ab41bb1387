"""A ``Storage`` for every adapter: the contract tests run once per store."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from adapters.memory import MemoryStorage
from adapters.sqlalchemy import SqlStorage
from adapters.sqlalchemy.engine import create_engine
from application.ports import Storage
from tests.support import SequentialIds


def build_storage(url: str) -> Storage:
    """The store behind ``url``: in memory, or SQLAlchemy for SQLite and PostgreSQL."""
    if url == "memory://":
        return MemoryStorage()
    return SqlStorage(create_engine(url))


@pytest.fixture
async def storage(database_url: str) -> AsyncIterator[Storage]:
    """An empty, migrated store of the parametrized kind, closed after the test."""
    store = build_storage(database_url)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def ids() -> SequentialIds:
    return SequentialIds()
