"""A task's conditional update as one statement, committed on its own."""

from __future__ import annotations

import asyncpg

from adapters.asyncpg import statements as compiled_sql
from adapters.asyncpg.connections import fetch_alone
from adapters.asyncpg.notifier import CommitNotifier
from adapters.asyncpg.pool import PgPool
from adapters.sql import statements as sql
from application.errors import ForeignTask
from domain.task import Task


class PgTaskWriter:
    """One owner's updates through ``taskvault_update_task`` (migrations 0005
    and 0006), which sets the user, claims the change number, updates if the
    version is still the expected one and commits: one round trip, where a
    unit of work takes four (BEGIN with the user and the claim, the locked
    read, the update, the COMMIT)."""

    __slots__ = ("_notifier", "_owner", "_pool")

    def __init__(self, pool: PgPool, owner: str, notifier: CommitNotifier) -> None:
        self._pool = pool
        self._owner = owner
        self._notifier = notifier

    async def update(self, task: Task, *, expected_version: int) -> bool:
        if task.user_id != self._owner:
            raise ForeignTask(str(task.id))
        compiled = compiled_sql.compiled(compiled_sql.UPDATE_ALONE)
        params = sql.update_params(self._owner, task, expected_version)
        try:
            await fetch_alone(self._pool, compiled.text, *compiled.args(params))
        except asyncpg.PostgresError as error:
            if error.sqlstate == compiled_sql.NOT_UPDATED:
                return False
            raise
        self._notifier.committed(self._owner)
        return True
