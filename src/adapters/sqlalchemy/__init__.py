"""The SQLAlchemy async store: SQLite through aiosqlite, or PostgreSQL, on an ``AsyncEngine``."""

from adapters.sqlalchemy.storage import SqlAlchemyStorage

__all__ = ["SqlAlchemyStorage"]
