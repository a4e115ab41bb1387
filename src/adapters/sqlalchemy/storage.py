"""``Storage`` on a SQLAlchemy ``AsyncEngine``: SQLite, or PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool

from adapters.sql.row_security import ROLE_BYPASSES_RLS, bypass_warnings
from adapters.sql.sqlite import PROBE_INTERVAL_S, data_version
from adapters.sqlalchemy.engine import create_engine
from adapters.sqlalchemy.unit_of_work import SqlTaskReader, SqlUnitOfWork
from application.errors import StorageUnavailable
from application.ports import PoolStatus
from application.signals import ChangeSignals, poll_heads
from application.writer import UnitOfWorkWriter

WATCH_INTERVAL_S = 0.25
"""How often, while requests wait, this store reads their users' heads (PostgreSQL)."""


class SqlAlchemyStorage:
    """Tasks through SQLAlchemy's engine, pool and execution, on any URL it serves."""

    def __init__(self, url: str, *, timeout_s: float = 5.0, pool_size: int = 10) -> None:
        self.engine: AsyncEngine = create_engine(url, timeout_s=timeout_s, pool_size=pool_size)
        self._timeout_s = timeout_s
        # SQLite admits one writer at a time: they queue here, in order.
        self._writers = asyncio.Lock() if self.engine.dialect.name == "sqlite" else None

    def reader(self, owner: str) -> SqlTaskReader:
        return SqlTaskReader(self.engine, owner)

    def writer(self, owner: str) -> UnitOfWorkWriter:
        return UnitOfWorkWriter(self.unit_of_work, owner)

    def unit_of_work(self, owner: str) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.engine, owner, timeout_s=self._timeout_s, writers=self._writers)

    async def ping(self) -> None:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as error:
            raise StorageUnavailable(type(error).__name__) from error

    async def close(self) -> None:
        await self.engine.dispose()

    def pool_status(self) -> PoolStatus:
        pool = self.engine.pool
        if isinstance(pool, QueuePool):
            return PoolStatus(size=pool.size(), in_use=pool.checkedout())
        # NullPool and StaticPool keep no count of their own.
        return PoolStatus(size=0, in_use=0)

    async def watch(self, signals: ChangeSignals) -> None:
        """Poll for other processes' commits while requests wait.

        SQLite: one pooled connection is kept for ``PRAGMA data_version``,
        which changes when any other connection commits; heads are read only
        then. An in-memory database has no other process to watch.
        """
        if self.engine.dialect.name != "sqlite":
            await poll_heads(self, signals, interval_s=WATCH_INTERVAL_S)
            return
        if self.engine.url.database in (None, "", ":memory:"):
            return
        # A connection of its own, outside the pool the requests share.
        probe = sqlite3.connect(self.engine.url.database, check_same_thread=False)
        try:
            await poll_heads(
                self, signals, interval_s=PROBE_INTERVAL_S, changed=data_version(probe)
            )
        finally:
            probe.close()

    async def warnings(self) -> list[str]:
        if self.engine.dialect.name != "postgresql":
            return []
        try:
            async with self.engine.connect() as conn:
                row = (await conn.execute(text(ROLE_BYPASSES_RLS))).mappings().first()
        except Exception as error:
            return [f"could not check the database role: {type(error).__name__}"]
        return bypass_warnings(None if row is None else dict(row))
