"""One owner's transaction on an asyncpg connection, with row-level security set for it."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from types import TracebackType
from typing import Any

import asyncpg
from sqlalchemy.sql import ClauseElement

from adapters.asyncpg import statements as compiled_sql
from adapters.asyncpg.connections import Lease
from adapters.asyncpg.notifier import CommitNotifier
from adapters.asyncpg.pool import PgPool
from adapters.sql import statements as sql
from adapters.sql.rows import outcome_from, outcome_row, task_from, task_row
from application.errors import ForeignTask
from application.ports import IdempotentOutcome
from application.queries import TaskQuery
from domain.task import Task


class _Transaction:
    """The unit of work's connection, in its transaction once a statement needs one.

    The user's next change number is claimed by the first statement that
    writes or locks a row, not at BEGIN: a repeat of an Idempotency-Key still
    in flight must reach its non-blocking key lock and answer 409, not queue
    behind the first request's lock on the head. The only locks taken before
    the head are those non-blocking ones, so writers never wait in a cycle.

    New tasks are inserted together, just before the next statement or the
    commit: nothing reads an insert's result, and a batch's creates then
    cost one round trip, not one each. When they are all the transaction
    holds (a create), they go out at the commit as one statement that sets
    the user, claims the number and inserts in a transaction of its own: one
    round trip instead of three (not on Citus, as ``begin_as_user``).
    """

    __slots__ = ("_citus", "_inserts", "_owner", "connection", "numbered", "open")

    def __init__(self, connection: asyncpg.Connection, owner: str, *, citus: bool) -> None:
        self.connection = connection
        self.open = False
        self.numbered = False
        self._owner = owner
        self._citus = citus
        self._inserts: list[dict[str, Any]] = []

    async def insert_later(self, task: Task) -> None:
        """Queue ``task``'s insert; in a transaction begun already, with the change
        number claimed now."""
        if self.open:
            await self._open(numbered=True)
        self._inserts.append(task_row(task))

    async def commit(self) -> bool:
        """Commit; True when the transaction claimed a change number (it changed
        the user's tasks)."""
        if not self.open and self._inserts and not self._citus:
            await self._send_inserts(compiled_sql.CREATE_ALONE, compiled_sql.CREATE_MANY_ALONE)
            return True
        conn = await self.begun(numbered=bool(self._inserts))
        await conn.execute("COMMIT")
        return self.numbered

    async def _send_inserts(self, one: ClauseElement, many: ClauseElement) -> None:
        """The queued inserts, with ``one``'s statement or, for several, ``many``'s
        arrays."""
        rows, self._inserts = self._inserts, []
        if len(rows) == 1:
            statement, params = one, {"owner": self._owner, **rows[0]}
        else:
            statement, params = many, sql.insert_tasks_params(self._owner, rows)
        compiled = compiled_sql.compiled(statement)
        status = await self.connection.execute(compiled.text, *compiled.args(params))
        sql.check_inserted(int(status.rsplit(" ", 1)[1]), len(rows))

    @property
    def pending(self) -> bool:
        return bool(self._inserts)

    async def flushed(self) -> asyncpg.Connection:
        """The connection, with the queued inserts sent."""
        if self._inserts:
            await self._send_inserts(sql.INSERT_TASK, sql.INSERT_TASKS_POSTGRESQL)
        return self.connection

    async def begun(self, *, numbered: bool = False) -> asyncpg.Connection:
        """The connection inside the transaction, begun now (with the user set) if
        need be; ``numbered`` (or with inserts queued), with the change number
        claimed too; the queued inserts sent."""
        await self._open(numbered=numbered or bool(self._inserts))
        return await self.flushed()

    async def _open(self, *, numbered: bool) -> None:
        if not self.open:
            # Marked first: should the batch fail after its BEGIN, the
            # connection is rolled back before it goes back to the pool.
            self.open = True
            self.numbered = numbered
            if not self._citus:
                await self.connection.execute(compiled_sql.begin_as_user(self._owner, numbered))
                return
            # Citus hands the workers the whole text of the batch a SET LOCAL
            # came in, where a BEGIN would warn and the claim's INSERT run
            # again and fail: there each takes a round trip of its own.
            await self.connection.execute("BEGIN")
            await self.connection.execute(compiled_sql.as_user(self._owner, numbered=False))
            if numbered:
                await self.connection.execute(compiled_sql.CLAIM)
        elif numbered and not self.numbered:
            self.numbered = True
            await self.connection.execute(compiled_sql.CLAIM)

    async def execute(
        self, statement: ClauseElement, params: Mapping[str, Any], *, numbered: bool = True
    ) -> str:
        conn = await self.begun(numbered=numbered)
        compiled = compiled_sql.compiled(statement)
        status: str = await conn.execute(compiled.text, *compiled.args(params))
        return status

    async def fetchrow(
        self, statement: ClauseElement, params: Mapping[str, Any], *, numbered: bool = True
    ) -> asyncpg.Record | None:
        conn = await self.begun(numbered=numbered)
        compiled = compiled_sql.compiled(statement)
        return await conn.fetchrow(compiled.text, *compiled.args(params))


class PgTaskRepository:
    """One owner's tasks in the unit of work's transaction."""

    def __init__(self, transaction: _Transaction, owner: str) -> None:
        self._tx = transaction
        self._owner = owner

    async def add(self, task: Task) -> None:
        if task.user_id != self._owner:
            raise ForeignTask(str(task.id))
        await self._tx.insert_later(task)

    async def get(self, task_id: uuid.UUID) -> Task | None:
        params = {"owner": self._owner, "task_id": task_id}
        row = await self._tx.fetchrow(sql.SELECT_TASK_FOR_UPDATE, params)
        return None if row is None else task_from(row)

    async def list(self, query: TaskQuery) -> list[Task]:
        conn = await self._tx.begun()
        compiled = compiled_sql.compiled(sql.list_statement(sql.ListShape.of(query)))
        rows = await conn.fetch(compiled.text, *compiled.args(sql.list_params(self._owner, query)))
        return [task_from(row) for row in rows]

    async def update(self, task: Task, *, expected_version: int) -> bool:
        if task.user_id != self._owner:
            raise ForeignTask(str(task.id))
        params = sql.update_params(self._owner, task, expected_version)
        return await self._tx.execute(sql.UPDATE_TASK, params) == "UPDATE 1"

    async def delete(
        self, task_id: uuid.UUID, *, expected_version: int, deleted_at: datetime
    ) -> bool:
        params = {
            "owner": self._owner,
            "task_id": task_id,
            "expected_version": expected_version,
            "deleted_at": deleted_at,
        }
        status = await self._tx.execute(sql.DELETE_LEAVING_TOMBSTONE_POSTGRESQL, params)
        return status == "INSERT 0 1"

    async def purge_tombstones(self, *, deleted_before: datetime, limit: int) -> int:
        params = {"owner": self._owner, "deleted_before": deleted_before, "limit": limit}
        status = await self._tx.execute(sql.PURGE_TOMBSTONES, params)
        return int(status.rsplit(" ", 1)[1])


class PgIdempotencyStore:
    """One owner's outcomes; a key is held by a transaction-scoped advisory lock."""

    def __init__(self, transaction: _Transaction, owner: str) -> None:
        self._tx = transaction
        self._owner = owner

    async def claim(self, key: str) -> bool:
        params = sql.key_lock_params(self._owner, key)
        row = await self._tx.fetchrow(sql.TRY_LOCK_KEY, params, numbered=False)
        return row is not None and bool(row[0])

    async def find(self, key: str) -> IdempotentOutcome | None:
        params = {"owner": self._owner, "key": key}
        row = await self._tx.fetchrow(sql.SELECT_OUTCOME, params, numbered=False)
        return None if row is None else outcome_from(row)

    async def save(self, key: str, outcome: IdempotentOutcome, *, expire_before: datetime) -> None:
        expired = {"owner": self._owner, "expire_before": expire_before}
        await self._tx.execute(sql.DELETE_EXPIRED_OUTCOMES, expired)
        await self._tx.execute(
            sql.UPSERT_OUTCOME_POSTGRESQL, outcome_row(self._owner, key, outcome)
        )


class PgUnitOfWork:
    """One transaction for one owner, with row-level security set for exactly it.

    BEGIN and the user go out just before the first statement.
    """

    tasks: PgTaskRepository
    idempotency: PgIdempotencyStore

    def __init__(self, pool: PgPool, owner: str, notifier: CommitNotifier) -> None:
        self._lease = Lease(pool)
        self._pool = pool
        self._owner = owner
        self._notifier = notifier
        self._tx: _Transaction | None = None

    async def __aenter__(self) -> PgUnitOfWork:
        connection = await self._lease.acquire()
        tx = self._tx = _Transaction(connection, self._owner, citus=bool(self._pool.citus))
        self.tasks = PgTaskRepository(tx, self._owner)
        self.idempotency = PgIdempotencyStore(tx, self._owner)
        return self

    async def connection(self) -> asyncpg.Connection:
        """The connection, in this unit of work's transaction (tests prove what RLS
        enforces with it)."""
        assert self._tx is not None
        return await self._tx.begun()

    async def commit(self) -> None:
        tx = self._tx
        assert tx is not None
        changed = await tx.commit() if tx.open or tx.pending else False
        # Only now: a COMMIT that failed or timed out leaves the connection in
        # doubt, and ``__aexit__`` must not return it to the pool as it is.
        tx.open = False
        if changed:
            self._notifier.committed(self._owner)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tx, self._tx = self._tx, None
        assert tx is not None
        await self._lease.release(exc, in_transaction=tx.open)
