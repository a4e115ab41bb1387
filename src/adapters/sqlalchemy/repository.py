"""``TaskRepository`` executed through SQLAlchemy (SQLite); every statement names the owner."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.sqlalchemy import statements as sql
from application.queries import TaskQuery
from domain.task import Task


class SqlTaskRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._conn = connection

    async def add(self, owner: str, task: Task) -> None:
        if task.user_id != owner:
            raise ValueError("task owner does not match")
        await self._conn.execute(sql.INSERT_TASK, sql.task_row(task))

    async def get(self, owner: str, task_id: uuid.UUID, *, for_update: bool = False) -> Task | None:
        stmt = sql.SELECT_TASK_FOR_UPDATE if for_update else sql.SELECT_TASK
        row = (await self._conn.execute(stmt, {"owner": owner, "task_id": task_id})).first()
        return None if row is None else sql.task_from(row._mapping)

    async def list(self, owner: str, query: TaskQuery) -> list[Task]:
        stmt = sql.list_statement(sql.ListShape.of(query))
        result = await self._conn.execute(stmt, sql.list_params(owner, query))
        return [sql.task_from(row._mapping) for row in result]

    async def update(self, owner: str, task: Task, *, expected_version: int) -> bool:
        if task.user_id != owner:
            return False
        params = sql.update_params(owner, task, expected_version)
        result = await self._conn.execute(sql.UPDATE_TASK, params)
        return bool(result.rowcount == 1)

    async def delete(self, owner: str, task_id: uuid.UUID, *, expected_version: int) -> bool:
        params = {"owner": owner, "task_id": task_id, "expected_version": expected_version}
        result = await self._conn.execute(sql.DELETE_TASK, params)
        return bool(result.rowcount == 1)
