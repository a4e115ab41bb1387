"""SQLite's fast path: ``sqlite3`` on the event loop, and a commit on a thread."""

from adapters.sqlite.storage import SqliteStorage

__all__ = ["SqliteStorage"]
