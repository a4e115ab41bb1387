"""PostgreSQL's fast path: asyncpg connections, statements compiled once, RLS in each."""

from adapters.asyncpg.storage import PgStorage

__all__ = ["PgStorage"]
