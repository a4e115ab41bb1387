"""A small pool of asyncpg connections that serves waiters in order.

Checkout and return are a list operation when a connection is free, with no
task, timer or system call: SQLAlchemy's pool cost 44 us of CPU for the pair
and asyncpg's own 13-18 us (``asyncio.shield`` makes a task per release), on
a hot path that is CPU-bound.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import asyncpg

from adapters.sql.distribution import CITUS_INSTALLED
from application.ports import PoolStatus

_NEW_CONNECTION = None
"""What a waiter is handed instead of a connection: a free slot to open one in."""


class PgPool:
    """Up to ``size`` connections, opened on demand and kept open.

    When all are lent out, requests wait in order of arrival, each at most
    the pool timeout. A connection that comes back closed (lost, or
    terminated by its unit of work) frees its slot for a new one.
    """

    def __init__(
        self, dsn: str, *, size: int, timeout_s: float, statement_cache: bool = True
    ) -> None:
        self._size = size
        self._timeout_s = timeout_s
        self._dsn = dsn
        self._params: dict[str, Any] = {
            "timeout": timeout_s,
            "command_timeout": timeout_s,
            "server_settings": {"application_name": "taskvault"},
        }
        if not statement_cache:
            # No named prepared statement, so none can outlive a transaction:
            # each statement is parsed unnamed and run in the same exchange
            # with the server (asyncpg's Parse/Describe end with Flush, not
            # Sync), which a transaction-mode pooler keeps on one server.
            self._params["statement_cache_size"] = 0
        self._idle: list[asyncpg.Connection] = []
        self._waiters: deque[asyncio.Future[asyncpg.Connection | None]] = deque()
        self._count = 0  # connections open, lent out or being opened
        self._closed = False
        self.citus: bool | None = None
        """Whether the database is a Citus coordinator; known once a connection opened."""

    async def acquire(self) -> asyncpg.Connection:
        """A connection, waiting at most the pool timeout for one to be free."""
        if self._closed:
            raise asyncpg.InterfaceError("the connection pool is closed")
        while self._idle and not self._waiters:
            connection = self._idle.pop()
            if not connection.is_closed():
                return connection
            self._count -= 1
        if self._count < self._size and not self._waiters:
            self._count += 1
            return await self._open()
        connection = await self._wait()
        if connection is _NEW_CONNECTION:
            return await self._open()
        return connection

    def release(self, connection: asyncpg.Connection) -> None:
        """Take back a connection; the caller has ended any transaction on it."""
        if self._closed:
            connection.terminate()
        if connection.is_closed():
            self._count -= 1
            self._hand_over(_NEW_CONNECTION)
        else:
            self._hand_over(connection)

    def status(self) -> PoolStatus:
        return PoolStatus(size=self._size, in_use=self._count - len(self._idle))

    async def close(self) -> None:
        """Close the idle connections; those lent out close when they come back."""
        self._closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(asyncpg.InterfaceError("the connection pool is closed"))
        idle, self._idle = self._idle, []
        self._count -= len(idle)
        for connection in idle:
            try:
                await connection.close(timeout=self._timeout_s)
            except Exception:
                connection.terminate()

    async def _open(self) -> asyncpg.Connection:
        """Open a connection in a slot already counted as taken."""
        try:
            connection: asyncpg.Connection = await asyncpg.connect(self._dsn, **self._params)
            if self.citus is None:
                try:
                    self.citus = bool(await connection.fetchval(CITUS_INSTALLED))
                except BaseException:
                    connection.terminate()
                    raise
        except BaseException:
            self._count -= 1
            self._hand_over(_NEW_CONNECTION)
            raise
        return connection

    async def _wait(self) -> asyncpg.Connection | None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[asyncpg.Connection | None] = loop.create_future()
        self._waiters.append(waiter)
        expiry = loop.call_later(self._timeout_s, _expire, waiter)
        try:
            return await waiter
        except BaseException:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            # Cancelled after being handed a connection or a slot but before
            # resuming: give it on, or it would be lost to the pool.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                handed = waiter.result()
                if handed is _NEW_CONNECTION:
                    self._count -= 1
                    self._hand_over(_NEW_CONNECTION)
                else:
                    self.release(handed)
            raise
        finally:
            expiry.cancel()

    def _hand_over(self, handed: asyncpg.Connection | None) -> None:
        """Give a connection, or a slot for a new one, to the longest waiter."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                if handed is _NEW_CONNECTION:
                    self._count += 1
                waiter.set_result(handed)
                return
        if handed is not _NEW_CONNECTION:
            self._idle.append(handed)


def _expire(waiter: asyncio.Future[asyncpg.Connection | None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError("no database connection became free in time"))
