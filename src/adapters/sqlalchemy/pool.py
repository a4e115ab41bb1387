"""PostgreSQL connections for units of work: an asyncpg pool beside the engine.

The engine stays the source of the URL and the connection settings (and of
SQLAlchemy connections for whoever wants one); requests take their
connections from asyncpg's own pool, whose checkout and return cost a third
of SQLAlchemy's (``bench/storage_paths.py``): no greenlet, no wrapper
objects, no events.
"""

from __future__ import annotations

import asyncio

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.sqlalchemy.engine import pg_connect_args
from application.ports import PoolStatus


async def _keep(_connection: asyncpg.Connection) -> None:
    """Nothing to reset on return: a unit of work gives a connection back
    outside any transaction, or terminates it (postgres.py)."""


class PgPool:
    """Up to ``size`` connections, opened on demand and kept open."""

    def __init__(self, engine: AsyncEngine) -> None:
        args, params = engine.dialect.create_connect_args(engine.url)
        pool = engine.sync_engine.pool
        self._size: int = pool.size()  # type: ignore[attr-defined]
        self._timeout_s: float = pool.timeout()  # type: ignore[attr-defined]
        self._args = args
        self._params = {**params, **pg_connect_args(self._timeout_s)}
        self._pool: asyncpg.Pool | None = None
        self._opening: asyncio.Lock | None = None

    async def acquire(self) -> asyncpg.Connection:
        """A connection, waiting at most the engine's pool timeout for one."""
        pool = self._pool or await self._open()
        connection: asyncpg.Connection = await pool.acquire(timeout=self._timeout_s)
        return connection

    async def release(self, connection: asyncpg.Connection) -> None:
        assert self._pool is not None
        await self._pool.release(connection)

    def status(self) -> PoolStatus:
        pool = self._pool
        if pool is None:
            return PoolStatus(size=self._size, in_use=0)
        return PoolStatus(size=self._size, in_use=pool.get_size() - pool.get_idle_size())

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            # Connections still lent out are waited for, but not forever.
            await asyncio.wait_for(pool.close(), self._timeout_s)
        except TimeoutError:
            pool.terminate()

    async def _open(self) -> asyncpg.Pool:
        # Created at first use, inside the event loop that will use it; the
        # lock makes the first concurrent requests share one pool.
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    *self._args,
                    **self._params,
                    # Opened as requests need them and never closed for
                    # being idle, like the engine's own pool.
                    min_size=0,
                    max_size=self._size,
                    max_inactive_connection_lifetime=0,
                    reset=_keep,
                )
            return self._pool
