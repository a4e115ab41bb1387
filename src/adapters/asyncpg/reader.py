"""Plain reads as single statements, each on a connection of its own."""

from __future__ import annotations

import uuid

from adapters.asyncpg import statements as compiled_sql
from adapters.asyncpg.connections import fetch_alone
from adapters.asyncpg.pool import PgPool
from adapters.sql import statements as sql
from adapters.sql.rows import changes_from, task_from
from application.queries import TaskQuery
from application.sync import ChangeNumber, Changes
from domain.task import Task


class PgTaskReader:
    """One owner's tasks, one statement a read: no BEGIN, no COMMIT (``single_statement``).

    One round trip; two behind a transaction pooler, where each statement is
    parsed again (``PgPool``'s ``statement_cache``).
    """

    __slots__ = ("_owner", "_pool")

    def __init__(self, pool: PgPool, owner: str) -> None:
        self._pool = pool
        self._owner = owner

    async def get(self, task_id: uuid.UUID) -> Task | None:
        compiled = compiled_sql.single_statement(sql.select_task)
        params = {"owner": self._owner, "task_id": task_id}
        rows = await fetch_alone(self._pool, compiled.text, *compiled.args(params))
        return task_from(rows[0]) if rows else None

    async def list(self, query: TaskQuery) -> list[Task]:
        compiled = compiled_sql.single_statement(sql.list_tasks, sql.ListShape.of(query))
        params = sql.list_params(self._owner, query)
        rows = await fetch_alone(self._pool, compiled.text, *compiled.args(params))
        return [task_from(row) for row in rows]

    async def changes(self, after: ChangeNumber | None, limit: int) -> Changes:
        compiled = compiled_sql.single_statement(
            sql.list_changes, sql.FeedShape(first=after is None)
        )
        params = sql.changes_params(self._owner, after, limit)
        return changes_from(await fetch_alone(self._pool, compiled.text, *compiled.args(params)))
