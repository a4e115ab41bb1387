"""What the asyncpg store's units of work send PostgreSQL, statement by statement."""

from __future__ import annotations

import asyncio
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


NOTIFY = "SELECT PG_NOTIFY($1, PAYLOAD)"
"""The notifier's statement after a commit that changed tasks, in no transaction."""


async def _listening(storage: PgStorage) -> list[str]:
    await storage.notifier.flush()
    sent: list[str] = []
    connection = await storage.pool.acquire()

    def record(query: asyncpg.connection.LoggedQuery) -> None:
        sent.append(" ".join(query.query.split()[:3]).upper())

    connection.add_query_logger(record)
    storage.pool.release(connection)
    return sent


def _task(title: str) -> Task:
    return Task.new(
        task_id=uuid.uuid4(), owner="alice", fields=TaskFields(title), now=datetime.now(UTC)
    )


async def test_a_create_is_one_statement_in_a_transaction_of_its_own(storage: PgStorage) -> None:
    """The user set, the number claimed and the insert in one round trip, with
    no BEGIN or COMMIT; several creates too, as one insert of arrays. Other
    instances hear of it after the commit."""

    async def create(*titles: str) -> None:
        async with storage.unit_of_work("alice") as uow:
            for title in titles:
                await uow.tasks.add(_task(title))
            await uow.commit()
        await storage.notifier.flush()

    # asyncpg looks the array types up once per connection, at their first use.
    await create("zero", "again")
    sent = await _listening(storage)
    await create("one")
    await create("two", "three")
    await asyncio.sleep(0.05)  # asyncpg calls its query loggers later, on the loop
    assert sent == ["WITH OWNER AS", NOTIFY, "WITH OWNER AS", NOTIFY]
    stored = await storage.reader("alice").list(TaskQuery())
    assert sorted(task.title for task in stored) == ["again", "one", "three", "two", "zero"]
    changes = await storage.reader("alice").changes(None, 10)
    assert changes.head == 3


async def test_begin_goes_out_with_the_user_and_the_claim(storage: PgStorage) -> None:
    """A transaction's BEGIN, row-level security's user and the claim are one
    round trip; then the locking read, the update and the COMMIT."""
    async with storage.unit_of_work("alice") as uow:
        await uow.tasks.add(_task("one"))
        await uow.commit()
    stored = (await storage.reader("alice").list(TaskQuery()))[0]
    sent = await _listening(storage)
    async with storage.unit_of_work("alice") as uow:
        current = await uow.tasks.get(stored.id)
        assert current is not None
        changed = current.toggle(datetime.now(UTC))
        assert await uow.tasks.update(changed, expected_version=current.version)
        await uow.commit()
    await asyncio.sleep(0.05)
    assert sent == [
        "BEGIN; SET LOCAL",
        "SELECT TASKS.ID, TASKS.USER_ID,",
        "UPDATE TASKS SET",
        "COMMIT",
        NOTIFY,
    ]
