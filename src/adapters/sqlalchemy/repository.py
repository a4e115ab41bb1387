"""``TaskRepository`` over SQLAlchemy Core; every statement is scoped to an owner."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, delete, insert, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.sqlalchemy.tables import tasks
from application.queries import SortField, Status, TaskFilter, TaskQuery, search_key
from domain.task import Priority, Task

_SORT_COLUMNS = {
    SortField.CREATED_AT: tasks.c.created_at,
    SortField.UPDATED_AT: tasks.c.updated_at,
    SortField.DUE_AT: tasks.c.due_at,
    SortField.PRIORITY: tasks.c.priority,
    SortField.TITLE: tasks.c.title,
}


# Everything but search_text, which only the WHERE clause of ``q`` reads.
_TASK_COLUMNS = [column for column in tasks.c if column.name != "search_text"]


class SqlTaskRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._conn = connection

    async def add(self, owner: str, task: Task) -> None:
        if task.user_id != owner:
            raise ValueError("task owner does not match")
        await self._conn.execute(insert(tasks).values(_row(task)))

    async def get(self, owner: str, task_id: uuid.UUID, *, for_update: bool = False) -> Task | None:
        stmt = select(*_TASK_COLUMNS).where(tasks.c.user_id == owner, tasks.c.id == task_id)
        if for_update:
            stmt = stmt.with_for_update()
        row = (await self._conn.execute(stmt)).first()
        return None if row is None else _task(row)

    async def list(self, owner: str, query: TaskQuery) -> list[Task]:
        column = _SORT_COLUMNS[query.sort.field]
        desc = query.sort.descending
        conditions = [tasks.c.user_id == owner, *_filters(query.filter)]
        if query.after is not None:
            value, after_id = query.after.value, query.after.id
            id_beyond = tasks.c.id < after_id if desc else tasks.c.id > after_id
            if value is None:
                conditions += [column.is_(None), id_beyond]
            else:
                key = tuple_(column, tasks.c.id)
                beyond = key < tuple_(value, after_id) if desc else key > tuple_(value, after_id)
                # Only due_at is nullable; its missing values sort last both ways.
                conditions.append(
                    or_(beyond, column.is_(None)) if column is tasks.c.due_at else beyond
                )
        ordering = column.desc() if desc else column.asc()
        if column is tasks.c.due_at:
            ordering = ordering.nulls_last()
        stmt = (
            select(*_TASK_COLUMNS)
            .where(and_(*conditions))
            .order_by(ordering, tasks.c.id.desc() if desc else tasks.c.id.asc())
            .limit(query.limit + 1)
        )
        return [_task(row) for row in await self._conn.execute(stmt)]

    async def update(self, owner: str, task: Task, *, expected_version: int) -> bool:
        if task.user_id != owner:
            return False
        values = _row(task)
        del values["user_id"], values["id"], values["created_at"]
        stmt = (
            update(tasks)
            .where(
                tasks.c.user_id == owner,
                tasks.c.id == task.id,
                tasks.c.version == expected_version,
            )
            .values(values)
        )
        result = await self._conn.execute(stmt)
        return bool(result.rowcount == 1)

    async def delete(self, owner: str, task_id: uuid.UUID, *, expected_version: int) -> bool:
        stmt = delete(tasks).where(
            tasks.c.user_id == owner,
            tasks.c.id == task_id,
            tasks.c.version == expected_version,
        )
        result = await self._conn.execute(stmt)
        return bool(result.rowcount == 1)


def _filters(flt: TaskFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if flt.status is Status.PENDING:
        conditions.append(tasks.c.completed.is_(False))
    elif flt.status is Status.COMPLETED:
        conditions.append(tasks.c.completed.is_(True))
    if flt.priority is not None:
        conditions.append(tasks.c.priority == flt.priority.rank)
    needle = flt.folded_text
    if needle:
        # Folded in Python on both sides: the same answer whatever the
        # database's collation (ILIKE under "C" folds ASCII only).
        escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        conditions.append(tasks.c.search_text.like(f"%{escaped}%", escape="\\"))
    if flt.due_before is not None:
        conditions.append(tasks.c.due_at < flt.due_before)
    if flt.due_after is not None:
        conditions.append(tasks.c.due_at > flt.due_after)
    return conditions


def _row(task: Task) -> dict[str, Any]:
    return {
        "user_id": task.user_id,
        "id": task.id,
        "title": task.title,
        "description": task.description,
        "completed": task.completed,
        "priority": task.priority.rank,
        "due_at": task.due_at,
        "completed_at": task.completed_at,
        "created_at": task.created_at,
        "updated_at": task.updated_at,
        "version": task.version,
        "search_text": search_key(task.title, task.description),
    }


def _task(row: Row[Any]) -> Task:
    m = row._mapping
    return Task(
        id=m["id"],
        user_id=m["user_id"],
        title=m["title"],
        description=m["description"],
        completed=m["completed"],
        priority=Priority.from_rank(m["priority"]),
        due_at=m["due_at"],
        completed_at=m["completed_at"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        version=m["version"],
    )
