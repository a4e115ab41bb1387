"""Units of work and readers on SQLAlchemy connections."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from adapters.sql import row_security
from adapters.sql.idempotency import SqlIdempotencyStore
from adapters.sql.repository import (
    OwnersWrites,
    SqlTaskRepository,
    get_task,
    list_changes,
    list_tasks,
)
from adapters.sqlalchemy.engine import WRITE_OPTION
from adapters.sqlalchemy.errors import unavailable
from application.errors import StorageUnavailable
from application.queries import TaskQuery
from application.sync import ChangeNumber, Changes
from domain.task import Task


async def set_user(conn: AsyncConnection, owner: str) -> None:
    """Row-level security's user for the transaction (PostgreSQL), one statement
    at a time: the driver prepares each, and a prepared statement is one."""
    for statement in row_security.user_statements(owner):
        await conn.exec_driver_sql(statement)


class SqlTaskReader:
    """Each read on a pooled connection of its own.

    SQLite: no BEGIN, so the statement reads one WAL snapshot on its own
    (``engine.py``). PostgreSQL: a transaction that sets row-level
    security's user first.
    """

    def __init__(self, engine: AsyncEngine, owner: str) -> None:
        self._engine = engine
        self._owner = owner

    async def get(self, task_id: uuid.UUID) -> Task | None:
        async with self._connection() as conn:
            return await get_task(conn, self._owner, task_id)

    async def list(self, query: TaskQuery) -> list[Task]:
        async with self._connection() as conn:
            return await list_tasks(conn, self._owner, query)

    async def changes(self, after: ChangeNumber | None, limit: int) -> Changes:
        async with self._connection() as conn:
            return await list_changes(conn, self._owner, after, limit)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self._engine.connect() as conn:
                await conn.begin()
                if conn.dialect.name == "postgresql":
                    await set_user(conn, self._owner)
                yield conn
        except Exception as error:
            mapped = unavailable(error)
            if mapped is error:
                raise
            raise mapped from error


class SqlUnitOfWork:
    """One transaction of one owner on one pooled connection.

    Writers of one process take turns on ``writers`` first, in order of
    arrival (SQLite): SQLite admits one writer at a time, and its own wait
    (the busy timeout) polls with growing sleeps, which left some writes
    waiting a second under load. Writers in other processes still meet that
    wait. PostgreSQL needs no turns; row-level security's user is set for
    the transaction. Either way the owner's next change number is taken
    before any row lock (``OwnersWrites``), so that writers of one owner never
    wait on each other in a cycle.
    """

    tasks: SqlTaskRepository
    idempotency: SqlIdempotencyStore

    def __init__(
        self,
        engine: AsyncEngine,
        owner: str,
        *,
        timeout_s: float,
        writers: asyncio.Lock | None,
    ) -> None:
        self._engine = engine
        self._owner = owner
        self._timeout_s = timeout_s
        self._writers = writers
        self._my_turn = False
        self._conn: AsyncConnection | None = None

    async def __aenter__(self) -> SqlUnitOfWork:
        await self._take_turn()
        try:
            self._conn = conn = await self._engine.connect()
            await conn.execution_options(**{WRITE_OPTION: True})
            await conn.begin()
            if conn.dialect.name == "postgresql":
                await set_user(conn, self._owner)
        except BaseException as error:
            await self._release()
            mapped = unavailable(error) if isinstance(error, Exception) else error
            if mapped is error:
                raise
            raise mapped from error
        self._writes = writes = OwnersWrites(conn, self._owner)
        self.tasks = SqlTaskRepository(conn, self._owner, writes)
        self.idempotency = SqlIdempotencyStore(conn, self._owner, writes)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._release()
        if isinstance(exc, Exception):
            mapped = unavailable(exc)
            if mapped is not exc:
                raise mapped from exc

    @property
    def connection(self) -> AsyncConnection:
        """The transaction's connection (tests prove with it what RLS enforces)."""
        assert self._conn is not None
        return self._conn

    async def commit(self) -> None:
        await self._writes.flushed()
        await self.connection.commit()

    async def _take_turn(self) -> None:
        if self._writers is None:
            return
        # As long as SQLite itself would wait for the write lock.
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._writers.acquire()
        except TimeoutError as error:
            raise StorageUnavailable("TimeoutError") from error
        self._my_turn = True

    async def _release(self) -> None:
        """Return the connection (ending any transaction), then the writer's turn."""
        try:
            await self._close_connection()
        finally:
            if self._my_turn:
                self._my_turn = False
                assert self._writers is not None
                self._writers.release()

    async def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            await conn.close()
        except Exception:
            # Closing a broken connection rolls back or invalidates it; the
            # error that broke it is the one worth reporting.
            await conn.invalidate()
