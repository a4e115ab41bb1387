"""SQLAlchemy 2 async store: PostgreSQL through asyncpg, SQLite through aiosqlite."""

from adapters.sqlalchemy.storage import SqlStorage

__all__ = ["SqlStorage"]
