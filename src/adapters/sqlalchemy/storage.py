"""``Storage`` over an async SQLAlchemy engine: SQLite here, PostgreSQL in ``postgres.py``."""

from __future__ import annotations

import asyncio
from types import TracebackType

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import QueuePool

from adapters.sqlalchemy.engine import WRITE_OPTION
from adapters.sqlalchemy.errors import unavailable
from adapters.sqlalchemy.idempotency import SqlIdempotencyStore
from adapters.sqlalchemy.pool import PgPool
from adapters.sqlalchemy.postgres import PgUnitOfWork
from adapters.sqlalchemy.repository import SqlTaskRepository
from application.errors import StorageUnavailable
from application.ports import PoolStatus, UnitOfWork

_ROLE_BYPASSES_RLS = (
    "SELECT rolname, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
)


class SqlUnitOfWork:
    """One SQLAlchemy transaction on one pooled connection (SQLite); a reader's
    statements run without BEGIN, each on a snapshot of its own (engine.py).

    Writers of one process take turns on ``writers`` first, in order of
    arrival: SQLite admits one writer at a time, and its own wait (the busy
    timeout) polls with growing sleeps, which left some writes waiting a
    second under load. Writers in other processes still meet that wait.
    """

    tasks: SqlTaskRepository
    idempotency: SqlIdempotencyStore

    def __init__(self, engine: AsyncEngine, *, write: bool, writers: asyncio.Lock) -> None:
        self._engine = engine
        self._write = write
        self._writers = writers
        self._my_turn = False
        self._conn: AsyncConnection | None = None

    async def __aenter__(self) -> SqlUnitOfWork:
        if self._write:
            await self._take_turn()
        try:
            self._conn = conn = await self._engine.connect()
            if self._write:
                await conn.execution_options(**{WRITE_OPTION: True})
            await conn.begin()
        except BaseException as error:
            await self._release()
            if isinstance(error, Exception):
                raise unavailable(error) from error
            raise
        self.tasks = SqlTaskRepository(conn)
        self.idempotency = SqlIdempotencyStore(conn)
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
        assert self._conn is not None
        return self._conn

    async def commit(self) -> None:
        await self.connection.commit()

    async def _take_turn(self) -> None:
        # As long as SQLite itself would wait for the write lock.
        timeout_s = self._engine.sync_engine.pool.timeout()  # type: ignore[attr-defined]
        try:
            async with asyncio.timeout(timeout_s):
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


class SqlStorage:
    """Tasks in SQLite through the engine, or in PostgreSQL through ``PgPool``.

    ``engine`` serves SQLite's units of work; on PostgreSQL it only supplies
    the URL and settings, and SQLAlchemy connections to whoever wants one
    (tests, tools): requests never open it.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._pg = PgPool(engine) if engine.dialect.name == "postgresql" else None
        self._writers = asyncio.Lock()

    def unit_of_work(self, user_id: str, *, write: bool) -> UnitOfWork:
        if self._pg is not None:
            return PgUnitOfWork(self._pg, user_id, write=write)
        # SQLite has no row-level security; every statement names the owner.
        return SqlUnitOfWork(self.engine, write=write, writers=self._writers)

    async def ping(self) -> None:
        try:
            if self._pg is not None:
                # A unit of work drops a dead or silent connection at once.
                async with PgUnitOfWork(self._pg, "", write=False) as uow:
                    await uow.session()
                    return
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except StorageUnavailable:
            raise
        except Exception as error:
            raise StorageUnavailable(type(error).__name__) from error

    async def close(self) -> None:
        if self._pg is not None:
            await self._pg.close()
        await self.engine.dispose()

    def pool_status(self) -> PoolStatus:
        if self._pg is not None:
            return self._pg.status()
        pool = self.engine.pool
        if isinstance(pool, QueuePool):
            return PoolStatus(size=pool.size(), in_use=pool.checkedout())
        # NullPool and StaticPool keep no count of their own.
        return PoolStatus(size=0, in_use=0)

    async def warnings(self) -> list[str]:
        if self._pg is None:
            return []
        try:
            async with PgUnitOfWork(self._pg, "", write=False) as uow:
                row = await uow.driver.fetchrow(_ROLE_BYPASSES_RLS)
        except Exception as error:
            return [f"could not check the database role: {type(error).__name__}"]
        if row is not None and (row["rolsuper"] or row["rolbypassrls"]):
            return [
                f"database role {row['rolname']!r} is a superuser or has BYPASSRLS: "
                "row-level security does not apply to it; connect as an ordinary role"
            ]
        return []
