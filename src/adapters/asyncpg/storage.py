"""``Storage`` on PostgreSQL through asyncpg, with row-level security in every statement."""

from __future__ import annotations

from adapters.asyncpg.connections import fetch_alone
from adapters.asyncpg.pool import PgPool
from adapters.asyncpg.reader import PgTaskReader
from adapters.asyncpg.unit_of_work import PgUnitOfWork
from adapters.sql.row_security import ROLE_BYPASSES_RLS, bypass_warnings
from application.errors import StorageUnavailable
from application.ports import PoolStatus


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
        self.pool = PgPool(
            dsn_of(url),
            size=pool_size,
            timeout_s=timeout_s,
            statement_cache=not pooled_by_transaction,
        )

    def reader(self, owner: str) -> PgTaskReader:
        return PgTaskReader(self.pool, owner)

    def unit_of_work(self, owner: str) -> PgUnitOfWork:
        return PgUnitOfWork(self.pool, owner)

    async def ping(self) -> None:
        await self._fetchrow("SELECT 1")

    async def close(self) -> None:
        await self.pool.close()

    def pool_status(self) -> PoolStatus:
        return self.pool.status()

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
