"""What the asyncpg store's units of work send PostgreSQL, statement by statement."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from adapters.asyncpg import PgStorage
from application.queries import TaskQuery
from domain.task import Task, TaskFields

pytestmark = pytest.mark.postgres


@pytest.fixture
async def storage(postgres_url: str) -> AsyncIterator[PgStorage]:
    # One connection, so the one the test listens on is the one the unit of work gets.
    store = PgStorage(postgres_url, timeout_s=5.0, pool_size=1)
    try:
        yield store
    finally:
        await store.close()


async def _listening(storage: PgStorage) -> list[str]:
    sent: list[str] = []
    connection = await storage.pool.acquire()

    def record(query: asyncpg.connection.LoggedQuery) -> None:
        sent.append(" ".join(query.query.split()[:3]).upper())

    connection.add_query_logger(record)
    storage.pool.release(connection)
    return sent


async def test_a_transactions_new_tasks_go_out_as_one_insert(storage: PgStorage) -> None:
    sent = await _listening(storage)
    now = datetime.now(UTC)
    async with storage.unit_of_work("alice") as uow:
        for title in ("one", "two", "three"):
            await uow.tasks.add(
                Task.new(task_id=uuid.uuid4(), owner="alice", fields=TaskFields(title), now=now)
            )
        await uow.commit()
    assert [statement for statement in sent if statement.startswith("INSERT INTO TASKS")] == [
        "INSERT INTO TASKS"
    ]
    stored = await storage.reader("alice").list(TaskQuery())
    assert sorted(task.title for task in stored) == ["one", "three", "two"]
