"""Borrowing a pooled connection, and giving it back fit for the next user."""

from __future__ import annotations

from typing import Any

import asyncpg

from adapters.asyncpg.errors import unavailable
from adapters.asyncpg.pool import PgPool
from application.errors import StorageUnavailable


async def fetch_alone(pool: PgPool, query: str, *args: Any) -> list[asyncpg.Record]:
    """The rows of one statement run outside any transaction, on a connection
    borrowed for it; an outage is ``StorageUnavailable``, the connection dropped."""
    lease = Lease(pool)
    connection = await lease.acquire()
    try:
        rows: list[asyncpg.Record] = await connection.fetch(query, *args)
    except BaseException as error:
        await lease.release(error, in_transaction=False)
        raise
    await lease.release(None, in_transaction=False)
    return rows


class Lease:
    """One connection from the pool, for one unit of work or one read."""

    __slots__ = ("_connection", "_pool")

    def __init__(self, pool: PgPool) -> None:
        self._pool = pool
        self._connection: asyncpg.Connection | None = None

    async def acquire(self) -> asyncpg.Connection:
        try:
            self._connection = await self._pool.acquire()
        except Exception as error:
            raise unavailable(error) from error
        return self._connection

    async def release(self, error: BaseException | None, *, in_transaction: bool) -> None:
        """Return the connection after ``error`` (None: success); raise it as a
        ``StorageUnavailable`` when it was an outage."""
        connection, self._connection = self._connection, None
        assert connection is not None
        mapped = unavailable(error, connection) if isinstance(error, Exception) else None
        reusable = _reusable_after(error, mapped)
        try:
            if reusable and in_transaction:
                reusable = await _rolled_back(connection)
        finally:
            # A connection left mid-transaction or dead must not go back to
            # the pool as it is: dropped at once, since a graceful close would
            # wait on a server that may not answer. The pool opens a new one.
            if not reusable:
                connection.terminate()
            self._pool.release(connection)
        if mapped is not None and mapped is not error:
            raise mapped from error


async def _rolled_back(connection: asyncpg.Connection) -> bool:
    try:
        await connection.execute("ROLLBACK")
    except Exception:
        return False
    return True


def _reusable_after(error: BaseException | None, mapped: Exception | None) -> bool:
    """False after an outage or a cancellation.

    The connection is then dead, or mid-statement after a timeout: a ROLLBACK
    would only wait on it again, up to another statement timeout, and it must
    not go back to the pool even when no transaction was open.
    """
    if error is None:
        return True
    return isinstance(error, Exception) and not isinstance(mapped, StorageUnavailable)
