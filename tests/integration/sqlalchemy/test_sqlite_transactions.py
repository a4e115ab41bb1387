"""SQLite through the SQLAlchemy store: readers send no BEGIN, writers of one
process take turns (``engine.py``, ``unit_of_work.py``; their order and
completeness in ``tests/integration/sqlite``)."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import make_url

from adapters.sqlalchemy import SqlAlchemyStorage
from application.errors import StorageUnavailable
from application.ports import PoolStatus
from application.queries import TaskQuery
from domain.task import Task, TaskFields

TIMEOUT_S = 0.3


@pytest.fixture
async def storage(sqlite_url: str) -> AsyncIterator[SqlAlchemyStorage]:
    store = SqlAlchemyStorage(sqlite_url, timeout_s=TIMEOUT_S)
    try:
        yield store
    finally:
        await store.close()


def _task(title: str) -> Task:
    return Task.new(
        task_id=uuid.uuid4(), owner="alice", fields=TaskFields(title), now=datetime.now(UTC)
    )


async def _create(storage: SqlAlchemyStorage, title: str) -> None:
    async with storage.unit_of_work("alice") as uow:
        await uow.tasks.add(_task(title))
        await uow.commit()


async def test_a_writer_waits_no_longer_than_the_timeout(storage: SqlAlchemyStorage) -> None:
    loop = asyncio.get_running_loop()
    async with storage.unit_of_work("alice"):
        started = loop.time()
        with pytest.raises(StorageUnavailable):
            await _create(storage, "too late")
        assert TIMEOUT_S * 0.9 <= loop.time() - started < TIMEOUT_S * 5
    await _create(storage, "in time")  # the turn was given back


async def test_readers_do_not_wait_for_a_writer(storage: SqlAlchemyStorage) -> None:
    await _create(storage, "kept")
    async with storage.unit_of_work("alice") as writer:
        await writer.tasks.add(_task("not yet committed"))
        titles = [task.title for task in await storage.reader("alice").list(TaskQuery())]
        assert titles == ["kept"]
        await writer.commit()


async def test_a_read_sends_only_its_statement_and_a_write_begins_immediate(
    storage: SqlAlchemyStorage,
) -> None:
    sent: list[str] = []

    @event.listens_for(storage.engine.sync_engine, "before_cursor_execute")
    def _record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        sent.append(" ".join(statement.split()[:3]).upper())

    async with storage.unit_of_work("alice") as uow:
        await uow.tasks.add(_task("one"))
        await uow.commit()
    # The user's next change number first (the change feed's order), then the task.
    assert sent == ["BEGIN IMMEDIATE", "INSERT INTO SYNC_HEADS", "INSERT INTO TASKS"]
    sent.clear()
    await storage.reader("alice").list(TaskQuery())
    assert [statement.split()[0] for statement in sent] == ["SELECT"]


async def test_a_transactions_new_tasks_go_to_sqlite_in_one_call(
    storage: SqlAlchemyStorage,
) -> None:
    sent: list[tuple[str, bool, int]] = []

    @event.listens_for(storage.engine.sync_engine, "before_cursor_execute")
    def _record(
        _conn: object, _cursor: object, statement: str, params: Any, _ctx: object, many: bool
    ) -> None:
        sent.append((" ".join(statement.split()[:3]).upper(), many, len(params) if many else 1))

    async with storage.unit_of_work("alice") as uow:
        for title in ("one", "two", "three"):
            await uow.tasks.add(_task(title))
        await uow.commit()
    assert sent == [
        ("BEGIN IMMEDIATE", False, 1),
        ("INSERT INTO SYNC_HEADS", False, 1),
        ("INSERT INTO TASKS", True, 3),
    ]
    stored = await storage.reader("alice").list(TaskQuery())
    assert sorted(task.title for task in stored) == ["one", "three", "two"]


async def test_a_sqlite_file_keeps_a_fixed_set_of_connections(sqlite_url: str) -> None:
    storage = SqlAlchemyStorage(sqlite_url, timeout_s=TIMEOUT_S, pool_size=2)
    try:
        assert storage.pool_status() == PoolStatus(size=2, in_use=0)
        async with storage.engine.connect(), storage.engine.connect():
            assert storage.pool_status() == PoolStatus(size=2, in_use=2)
            with pytest.raises(StorageUnavailable):
                await storage.reader("alice").list(TaskQuery())
    finally:
        await storage.close()


async def test_a_writer_that_cannot_begin_gives_its_turn_back(
    storage: SqlAlchemyStorage, sqlite_url: str
) -> None:
    """Another process holds SQLite's write lock past the timeout: this write
    fails with a 503, and the next one, once the lock is free, goes through."""
    database = make_url(sqlite_url).database
    assert database is not None
    other_process = sqlite3.connect(database, isolation_level=None)
    try:
        other_process.execute("BEGIN IMMEDIATE")
        with pytest.raises(StorageUnavailable):
            await _create(storage, "blocked")
        other_process.execute("ROLLBACK")
    finally:
        other_process.close()
    await _create(storage, "after")
