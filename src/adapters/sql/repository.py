"""Tasks on a ``Connection`` (SQLAlchemy's, or the SQLite store's): every statement
names the owner it was built for."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from adapters.sql import statements as sql
from adapters.sql.connection import Connection
from adapters.sql.rows import changes_from, task_from, task_row
from application.errors import ForeignTask
from application.queries import TaskQuery
from application.sync import ChangeNumber, Changes
from domain.task import Task


async def get_task(conn: Connection, owner: str, task_id: uuid.UUID) -> Task | None:
    row = (await conn.execute(sql.SELECT_TASK, {"owner": owner, "task_id": task_id})).first()
    return None if row is None else task_from(row)


async def list_tasks(conn: Connection, owner: str, query: TaskQuery) -> list[Task]:
    statement = sql.list_statement(sql.ListShape.of(query))
    result = await conn.execute(statement, sql.list_params(owner, query))
    return [task_from(row) for row in result]


async def list_changes(
    conn: Connection, owner: str, after: ChangeNumber | None, limit: int
) -> Changes:
    statement = sql.changes_statement(sql.FeedShape(first=after is None))
    result = await conn.execute(statement, sql.changes_params(owner, after, limit))
    return changes_from(result.all())


class OwnersWrites:
    """What a unit of work's writes share: the owner's next change number,
    claimed once per transaction by its first statement that writes or locks a
    row, and the new tasks not yet sent.

    The claim is not at BEGIN: a repeat of an Idempotency-Key still in flight
    must reach its non-blocking key lock and answer 409, not queue behind the
    first request's lock on the head. The only locks taken before the head
    are those non-blocking ones, so writers never wait in a cycle.

    New tasks go out together just before the next statement or the commit:
    nothing reads an insert's result, and a batch's creates then cost the
    driver one call, not one each.
    """

    def __init__(self, connection: Connection, owner: str) -> None:
        self._conn = connection
        self._owner = owner
        self._claimed = False
        self._inserts: list[dict[str, Any]] = []

    async def numbered(self) -> Connection:
        """The connection, with the change number claimed and new tasks sent."""
        await self._claim()
        return await self.flushed()

    async def insert_later(self, task: Task) -> None:
        await self._claim()
        self._inserts.append(task_row(task))

    async def _claim(self) -> None:
        if not self._claimed:
            sqlite = self._conn.dialect.name == "sqlite"
            claim = sql.CLAIM_HEAD_SQLITE if sqlite else sql.CLAIM_HEAD_POSTGRESQL
            await self._conn.execute(claim, {"owner": self._owner})
            self._claimed = True

    async def flushed(self) -> Connection:
        """The connection, with the new tasks sent."""
        if self._inserts:
            rows, self._inserts = self._inserts, []
            if len(rows) > 1 and self._conn.dialect.name == "postgresql":
                # asyncpg's executemany counts no rows; one statement of arrays does.
                params = sql.insert_tasks_params(self._owner, rows)
                result = await self._conn.execute(sql.INSERT_TASKS_POSTGRESQL, params)
            else:
                result = await self._conn.execute(sql.INSERT_TASK, rows)
            sql.check_inserted(result.rowcount, len(rows))
        return self._conn


class SqlTaskRepository:
    """One owner's tasks in the unit of work's transaction."""

    def __init__(self, connection: Connection, owner: str, writes: OwnersWrites) -> None:
        self._conn = connection
        self._owner = owner
        self._writes = writes

    async def add(self, task: Task) -> None:
        if task.user_id != self._owner:
            raise ForeignTask(str(task.id))
        await self._writes.insert_later(task)

    async def get(self, task_id: uuid.UUID) -> Task | None:
        await self._writes.numbered()
        params = {"owner": self._owner, "task_id": task_id}
        row = (await self._conn.execute(sql.SELECT_TASK_FOR_UPDATE, params)).first()
        return None if row is None else task_from(row)

    async def list(self, query: TaskQuery) -> list[Task]:
        return await list_tasks(await self._writes.flushed(), self._owner, query)

    async def update(self, task: Task, *, expected_version: int) -> bool:
        if task.user_id != self._owner:
            raise ForeignTask(str(task.id))
        await self._writes.numbered()
        params = sql.update_params(self._owner, task, expected_version)
        result = await self._conn.execute(sql.UPDATE_TASK, params)
        return bool(result.rowcount == 1)

    async def delete(
        self, task_id: uuid.UUID, *, expected_version: int, deleted_at: datetime
    ) -> bool:
        params = {"owner": self._owner, "task_id": task_id, "expected_version": expected_version}
        await self._writes.numbered()
        result = await self._conn.execute(sql.DELETE_TASK, params)
        if result.rowcount != 1:
            return False
        await self._conn.execute(
            sql.INSERT_TOMBSTONE_SQLITE
            if self._conn.dialect.name == "sqlite"
            else sql.INSERT_TOMBSTONE_POSTGRESQL,
            {"owner": self._owner, "task_id": task_id, "deleted_at": deleted_at},
        )
        return True

    async def purge_tombstones(self, *, deleted_before: datetime, limit: int) -> int:
        await self._writes.numbered()
        params = {"owner": self._owner, "deleted_before": deleted_before, "limit": limit}
        result = await self._conn.execute(sql.PURGE_TOMBSTONES, params)
        return int(result.rowcount)
