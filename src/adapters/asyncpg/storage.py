"""``Storage`` on PostgreSQL through asyncpg, with row-level security in every statement."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from adapters.asyncpg.connections import fetch_alone
from adapters.asyncpg.notifier import CHANNEL, CommitNotifier, users_in
from adapters.asyncpg.pool import PgPool
from adapters.asyncpg.reader import PgTaskReader
from adapters.asyncpg.unit_of_work import PgUnitOfWork
from adapters.asyncpg.writer import PgTaskWriter
from adapters.sql.row_security import ROLE_BYPASSES_RLS, bypass_warnings
from application.errors import StorageUnavailable
from application.ports import PoolStatus
from application.signals import ChangeSignals, poll_heads
from application.writer import UnitOfWorkWriter

POLL_INTERVAL_S = 0.5
"""Behind a transaction pooler, which cannot LISTEN: how often waiting users' heads are read."""


def dsn_of(url: str) -> str:
    """asyncpg's DSN for a ``postgresql+asyncpg://`` URL (the settings' form)."""
    scheme, _, rest = url.partition("://")
    return f"{scheme.split('+')[0]}://{rest}"


class PgStorage:
    """Tasks in PostgreSQL on a pool of asyncpg connections of its own.

    ``pooled_by_transaction``: the URL is a pooler in transaction mode
    (PgBouncer, and the poolers of Supabase, Neon or RDS Proxy), which may
    hand each transaction another server connection; no prepared statement
    is then kept beyond the exchange that runs it.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 5.0,
        pool_size: int = 10,
        pooled_by_transaction: bool = False,
    ) -> None:
        self._dsn = dsn_of(url)
        self._timeout_s = timeout_s
        self._pooled_by_transaction = pooled_by_transaction
        self.pool = PgPool(
            self._dsn,
            size=pool_size,
            timeout_s=timeout_s,
            statement_cache=not pooled_by_transaction,
        )
        self.notifier = CommitNotifier(self.pool)
        """Tells other instances of this one's commits; flushed at ``close``."""

    def reader(self, owner: str) -> PgTaskReader:
        return PgTaskReader(self.pool, owner)

    def writer(self, owner: str) -> PgTaskWriter | UnitOfWorkWriter:
        if self.pool.citus is False:
            return PgTaskWriter(self.pool, owner, self.notifier)
        # Citus would run the function on the coordinator, whose set_config
        # reaches no worker; until the first connection, whether it is Citus
        # is not known.
        return UnitOfWorkWriter(self.unit_of_work, owner)

    def unit_of_work(self, owner: str) -> PgUnitOfWork:
        return PgUnitOfWork(self.pool, owner, self.notifier)

    async def ping(self) -> None:
        await self._fetchrow("SELECT 1")

    async def close(self) -> None:
        await self.notifier.flush()
        await self.pool.close()

    def pool_status(self) -> PoolStatus:
        return self.pool.status()

    async def watch(self, signals: ChangeSignals) -> None:
        """LISTEN for every instance's commits on a connection of its own, and
        wake their users' waiters; behind a transaction pooler, poll instead.

        A lost connection ends the watch with its error (the caller starts it
        again); waiters are woken once it listens, for what it may have missed.
        """
        if self._pooled_by_transaction:
            await poll_heads(self, signals, interval_s=POLL_INTERVAL_S)
            return
        connection = await asyncpg.connect(self._dsn, timeout=self._timeout_s)
        lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_notification(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            for user in users_in(payload):
                signals.publish(user)

        def on_lost(_conn: Any) -> None:
            if not lost.done():
                lost.set_exception(StorageUnavailable("LISTEN connection lost"))

        try:
            connection.add_termination_listener(on_lost)
            await connection.add_listener(CHANNEL, on_notification)
            for user in signals.waiting():
                signals.publish(user)
            await lost
        finally:
            connection.terminate()

    async def warnings(self) -> list[str]:
        try:
            row = await self._fetchrow(ROLE_BYPASSES_RLS)
        except Exception as error:
            return [f"could not check the database role: {type(error).__name__}"]
        return bypass_warnings(row)

    async def _fetchrow(self, query: str) -> dict[str, object] | None:
        """The first row of a query outside any transaction; any failure is
        ``StorageUnavailable``."""
        try:
            rows = await fetch_alone(self.pool, query)
        except StorageUnavailable:
            raise
        except Exception as error:
            raise StorageUnavailable(type(error).__name__) from error
        return dict(rows[0]) if rows else None
