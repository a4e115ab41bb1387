"""Plain reads, each one statement on the event loop's own connection."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from adapters.sql.connection import Connection
from adapters.sql.repository import get_task, list_changes, list_tasks
from adapters.sqlite.busy import Deadline
from adapters.sqlite.connection import SqliteConnection, connect, is_busy, unavailable
from application.queries import TaskQuery
from application.sync import ChangeNumber, Changes
from domain.task import Task

T = TypeVar("T")


class Reads:
    """The connection reads run on, inline: in WAL mode a statement outside a
    transaction reads one snapshot and waits on no writer.

    SQLite may still answer busy for a moment (another process recovering
    the WAL after a crash): the read is then tried again after short pauses,
    up to the database timeout, as a writer tries for its lock.
    """

    def __init__(self, database: str, *, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self.connection = SqliteConnection(connect(database, timeout_s=timeout_s))

    async def run(self, read: Callable[[Connection], Awaitable[T]]) -> T:
        deadline: Deadline | None = None
        while True:
            try:
                return await read(self.connection)
            except sqlite3.OperationalError as error:
                if not is_busy(error):
                    raise unavailable(error) from error
                deadline = deadline or Deadline(self._timeout_s)
                await deadline.pause(error)

    def close(self) -> None:
        self.connection.raw.close()


class SqliteTaskReader:
    """One owner's committed tasks, each read one statement."""

    __slots__ = ("_owner", "_reads")

    def __init__(self, reads: Reads, owner: str) -> None:
        self._reads = reads
        self._owner = owner

    async def get(self, task_id: uuid.UUID) -> Task | None:
        return await self._reads.run(lambda conn: get_task(conn, self._owner, task_id))

    async def list(self, query: TaskQuery) -> list[Task]:
        return await self._reads.run(lambda conn: list_tasks(conn, self._owner, query))

    async def changes(self, after: ChangeNumber | None, limit: int) -> Changes:
        return await self._reads.run(lambda conn: list_changes(conn, self._owner, after, limit))
