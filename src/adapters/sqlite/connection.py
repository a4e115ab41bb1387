"""``sqlite3`` connections as the shared repository's ``Connection``, run on the event loop.

A statement runs inline, with no hand-off to a thread: a read in WAL mode
takes no lock that waits, and a writer's statements run only once it holds
the write lock (``writer.py``), which they then never wait on. What can
wait (another process's write lock, the fsync of a commit) is handled
where it happens, off the loop or by polling.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.sql import Executable

from adapters.sql.sqlite import PRAGMAS
from adapters.sqlite.statements import DIALECT, compiled
from application.errors import StorageUnavailable

STATEMENT_CACHE = 256
"""Prepared statements each connection keeps: every list shape in use, and the rest."""


def connect(database: str, *, timeout_s: float) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are begun explicitly) that
    never waits in SQLite's busy handler once it serves: busy is answered at
    once and retried by the caller, on the loop (``busy.Deadline``).

    Only its setup waits there, up to ``timeout_s``: workers started together
    switch the file to WAL at once, which takes the database's lock, and a
    worker refused it would fail to start. Nothing is served yet.
    """
    raw = sqlite3.connect(
        database,
        timeout=timeout_s,
        isolation_level=None,
        check_same_thread=False,
        cached_statements=STATEMENT_CACHE,
        uri=database.startswith("file:"),
    )
    for pragma in PRAGMAS:
        raw.execute(pragma)
    raw.execute("PRAGMA busy_timeout = 0")
    return raw


def database_of(path: str | None) -> str:
    """The database file of a URL's path, its directory created; one file only."""
    if not path or path == ":memory:" or "mode=memory" in path:
        # Each connection would see a database of its own.
        raise ValueError("an in-memory SQLite database has no shared file: use memory://")
    if not path.startswith("file:"):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    return path


def is_busy(error: sqlite3.Error) -> bool:
    """Another connection holds the lock this one needs (SQLITE_BUSY, SQLITE_LOCKED)."""
    return getattr(error, "sqlite_errorcode", 0) & 0xFF in (
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
    )


def unavailable(error: Exception) -> Exception:
    """``StorageUnavailable`` for a lock not granted in time or a failing file,
    else ``error`` itself."""
    if isinstance(error, sqlite3.OperationalError | OSError):
        return StorageUnavailable(type(error).__name__)
    return error


class Result:
    """A statement's rows, converted, or the count of rows it changed."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[tuple[Any, ...]], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def first(self) -> tuple[Any, ...] | None:
        return self._rows[0] if self._rows else None

    def all(self) -> list[tuple[Any, ...]]:
        return self._rows

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self._rows)


class SqliteConnection:
    """One ``sqlite3`` connection; a statement with a list of parameter sets is
    an ``executemany``."""

    __slots__ = ("raw",)

    def __init__(self, raw: sqlite3.Connection) -> None:
        self.raw = raw

    @property
    def dialect(self) -> Dialect:
        return DIALECT

    async def execute(self, statement: Executable, parameters: Any = None, /) -> Result:
        statement_ = compiled(statement)
        if isinstance(parameters, list):
            cursor = self.raw.executemany(statement_.text, [statement_.args(p) for p in parameters])
            return Result([], cursor.rowcount)
        params: Mapping[str, Any] = parameters or {}
        cursor = self.raw.execute(statement_.text, statement_.args(params))
        raw_rows: Sequence[Any] = cursor.fetchall()
        rows = [statement_.row(row) for row in raw_rows] if statement_.results else []
        return Result(rows, cursor.rowcount)
