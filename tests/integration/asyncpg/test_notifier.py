"""Other instances hear of commits after them, many users to a NOTIFY."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from adapters.asyncpg import PgStorage
from adapters.asyncpg.notifier import CHANNEL, users_in
from adapters.asyncpg.storage import dsn_of
from application.queries import TaskQuery
from domain.task import Task, TaskFields

pytestmark = pytest.mark.postgres


@pytest.fixture
async def heard(postgres_url: str) -> AsyncIterator[list[str]]:
    """The payloads another instance's LISTEN receives."""
    payloads: list[str] = []
    listener = await asyncpg.connect(dsn_of(postgres_url))

    def record(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
        payloads.append(payload)

    await listener.add_listener(CHANNEL, record)
    try:
        yield payloads
    finally:
        await listener.close()


async def _create(storage: PgStorage, owner: str) -> Task:
    task = Task.new(
        task_id=uuid.uuid4(), owner=owner, fields=TaskFields("t"), now=datetime.now(UTC)
    )
    async with storage.unit_of_work(owner) as uow:
        await uow.tasks.add(task)
        await uow.commit()
    return task


async def _sent_then_abandoned(storage: PgStorage, task: Task) -> None:
    async with storage.unit_of_work(task.user_id) as uow:
        await uow.tasks.add(task)
        await uow.tasks.list(TaskQuery())  # the insert goes out, the number claimed
        raise RuntimeError("rolled back")


async def _settled(payloads: list[str]) -> list[str]:
    # Delivered asynchronously on the listener's connection.
    await asyncio.sleep(0.2)
    return [user for payload in payloads for user in users_in(payload)]


async def test_concurrent_commits_are_told_in_fewer_notifies(
    postgres_url: str, heard: list[str]
) -> None:
    storage = PgStorage(postgres_url, pool_size=2)
    users = [f"user-{n}" for n in range(40)]
    try:
        await asyncio.gather(*(_create(storage, user) for user in users))
        await storage.notifier.flush()
    finally:
        await storage.close()
    assert sorted(set(await _settled(heard))) == sorted(users)
    assert len(heard) < len(users), heard


async def test_updates_and_deletes_are_told_and_writes_rolled_back_are_not(
    postgres_url: str, heard: list[str]
) -> None:
    storage = PgStorage(postgres_url, pool_size=1)
    try:
        task = await _create(storage, "alice")
        await storage.notifier.flush()
        changed = task.toggle(datetime.now(UTC))
        assert await storage.writer("alice").update(changed, expected_version=1)
        await storage.notifier.flush()
        assert not await storage.writer("alice").update(changed, expected_version=1)
        await storage.notifier.flush()
        async with storage.unit_of_work("alice") as uow:
            assert await uow.tasks.delete(task.id, expected_version=2, deleted_at=datetime.now(UTC))
            await uow.commit()
        await storage.notifier.flush()
        with pytest.raises(RuntimeError):
            await _sent_then_abandoned(storage, task)
        await storage.notifier.flush()
    finally:
        await storage.close()
    # The create, the update and the delete; not the stale update, whose
    # function raised and rolled back, nor the unit of work rolled back.
    assert await _settled(heard) == ["alice"] * 3


async def test_a_notify_that_cannot_be_sent_is_logged_not_raised(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    storage = PgStorage(postgres_url, pool_size=1)
    await storage.pool.close()
    with caplog.at_level(logging.WARNING, logger="taskvault.storage"):
        storage.notifier.committed("alice")
        await storage.notifier.flush()
    assert "could not tell other instances of 1 users' commits" in caplog.text
