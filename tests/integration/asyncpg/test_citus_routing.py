"""Citus: every statement of the asyncpg store reaches one shard of each table it
reads or writes, the one that holds its user, as the ordinary role.

Proven from the commands the coordinator sends to the workers
(``citus.log_remote_commands``): a statement Citus could not route by its
constant ``user_id`` filter would go to every shard of its tables.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import asyncpg
import pytest

from adapters.asyncpg import PgStorage
from application.ports import IdempotentOutcome
from application.queries import Sort, SortField, Status, TaskFilter, TaskQuery
from application.sync import ChangeNumber, Tombstone
from domain.task import Task, TaskFields

pytestmark = pytest.mark.citus

# A shard by its qualified name: an alias the coordinator writes may end in a number too.
_SHARD = re.compile(r"\bpublic\.(tasks|sync_heads|task_tombstones|idempotency_keys)_(\d+)\b")


class RemoteCommands:
    """The commands the store's one connection had the coordinator send to workers."""

    def __init__(self) -> None:
        self.issued: list[str] = []

    def __call__(self, _connection: Any, message: Any) -> None:
        if message.message.startswith("issuing "):
            self.issued.append(message.message)

    async def of(self, operation: Callable[[], Awaitable[object]]) -> dict[str, set[str]]:
        """The shards, by table, of the commands ``operation`` had sent."""
        self.issued.clear()
        await operation()
        shards: dict[str, set[str]] = {}
        for command in self.issued:
            for table, shard in _SHARD.findall(command):
                shards.setdefault(table, set()).add(shard)
        return shards


@pytest.fixture
async def store(citus_app_role_url: str) -> AsyncIterator[tuple[PgStorage, RemoteCommands]]:
    """The asyncpg store on one connection, which logs its remote commands to us."""
    storage = PgStorage(citus_app_role_url, pool_size=1)
    commands = RemoteCommands()
    connection: asyncpg.Connection = await storage.pool.acquire()
    await connection.execute("SET citus.log_remote_commands = on")
    await connection.execute("SET client_min_messages = log")
    connection.add_log_listener(commands)
    storage.pool.release(connection)
    try:
        yield storage, commands
    finally:
        await storage.close()


def _one_shard_each(shards: dict[str, set[str]], *tables: str) -> None:
    assert set(shards) == set(tables), shards
    for table, found in shards.items():
        assert len(found) == 1, f"{table}: {len(found)} shards"


async def test_every_write_and_read_of_a_user_goes_to_that_users_shard(
    store: tuple[PgStorage, RemoteCommands],
) -> None:
    storage, commands = store
    now = datetime.now(UTC)
    task = Task.new(task_id=uuid.uuid4(), owner="alice", fields=TaskFields("a"), now=now)

    async def create() -> None:
        async with storage.unit_of_work("alice") as uow:
            await uow.tasks.add(task)
            await uow.commit()

    async def update() -> None:
        async with storage.unit_of_work("alice") as uow:
            found = await uow.tasks.get(task.id)
            assert found is not None
            changed = found.with_fields(TaskFields("b"), now + timedelta(seconds=1))
            assert await uow.tasks.update(changed, expected_version=found.version)
            await uow.commit()

    async def delete() -> None:
        async with storage.unit_of_work("alice") as uow:
            assert await uow.tasks.delete(task.id, expected_version=2, deleted_at=now)
            await uow.commit()

    async def purge() -> None:
        async with storage.unit_of_work("alice") as uow:
            purged = await uow.tasks.purge_tombstones(
                deleted_before=now + timedelta(seconds=1), limit=10
            )
            assert purged == 1
            await uow.commit()

    async def remember() -> None:
        outcome = IdempotentOutcome(fingerprint="f", task=task, created_at=now)
        async with storage.unit_of_work("alice") as uow:
            assert await uow.idempotency.claim("k")
            assert await uow.idempotency.find("k") is None
            await uow.idempotency.save("k", outcome, expire_before=now - timedelta(days=1))
            await uow.commit()

    async def create_several() -> None:
        # A batch's creates: one INSERT of arrays.
        async with storage.unit_of_work("alice") as uow:
            for title in ("c", "d", "e"):
                await uow.tasks.add(
                    Task.new(task_id=uuid.uuid4(), owner="alice", fields=TaskFields(title), now=now)
                )
            await uow.commit()

    async def list_in_a_transaction() -> None:
        async with storage.unit_of_work("alice") as uow:
            assert await uow.tasks.list(TaskQuery()) != []

    _one_shard_each(await commands.of(create), "sync_heads", "tasks")
    _one_shard_each(await commands.of(create_several), "sync_heads", "tasks")
    _one_shard_each(await commands.of(list_in_a_transaction), "tasks")
    _one_shard_each(await commands.of(update), "sync_heads", "tasks")
    _one_shard_each(await commands.of(remember), "sync_heads", "idempotency_keys")

    reader = storage.reader("alice")
    queries = [
        TaskQuery(),
        TaskQuery(sort=Sort(SortField.TITLE, descending=False), limit=1),
        TaskQuery(filter=TaskFilter(status=Status.PENDING, text="b")),
    ]
    for query in queries:
        _one_shard_each(await commands.of(partial(reader.list, query)), "tasks")
    _one_shard_each(await commands.of(lambda: reader.get(task.id)), "tasks")
    first = await commands.of(lambda: reader.changes(None, 10))
    _one_shard_each(first, "sync_heads", "tasks")

    _one_shard_each(await commands.of(delete), "sync_heads", "tasks", "task_tombstones")
    after = ChangeNumber(seq=0, task_id=uuid.UUID(int=0))
    since = await commands.of(lambda: reader.changes(after, 10))
    _one_shard_each(since, "sync_heads", "tasks", "task_tombstones")
    changes = (await reader.changes(after, 10)).changes
    assert [c.item.id for c in changes if isinstance(c.item, Tombstone)] == [task.id]
    _one_shard_each(await commands.of(purge), "sync_heads", "task_tombstones")
