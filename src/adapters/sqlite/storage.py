"""``Storage`` on SQLite through the standard library's ``sqlite3``, on the event loop."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, literal_column, select
from sqlalchemy.engine import make_url

from adapters.sql.sqlite import PROBE_INTERVAL_S, data_version
from adapters.sqlite.connection import database_of
from adapters.sqlite.reader import Reads, SqliteTaskReader
from adapters.sqlite.unit_of_work import SqliteUnitOfWork
from adapters.sqlite.writer import Writer
from application.ports import PoolStatus
from application.signals import ChangeSignals, poll_heads
from application.writer import UnitOfWorkWriter

_SELECT_ONE: Select[Any] = select(literal_column("1"))


class SqliteStorage:
    """Tasks in one SQLite file: two connections a process, one for reads and
    one for writes, each statement run inline on the event loop.

    SQLAlchemy's engine on aiosqlite hands every statement to a thread and
    back; here only a commit goes to a thread (README, "Performance").
    """

    def __init__(self, url: str, *, timeout_s: float = 5.0) -> None:
        database = database_of(make_url(url).database)
        self._reads = Reads(database, timeout_s=timeout_s)
        self._writer = Writer(database, timeout_s=timeout_s)

    def reader(self, owner: str) -> SqliteTaskReader:
        return SqliteTaskReader(self._reads, owner)

    def writer(self, owner: str) -> UnitOfWorkWriter:
        return UnitOfWorkWriter(self.unit_of_work, owner)

    def unit_of_work(self, owner: str) -> SqliteUnitOfWork:
        return SqliteUnitOfWork(self._writer, owner)

    async def ping(self) -> None:
        await self._reads.run(lambda conn: conn.execute(_SELECT_ONE))

    async def close(self) -> None:
        self._writer.close()
        self._reads.close()

    def pool_status(self) -> PoolStatus:
        # The writing connection is the one requests can wait for.
        return PoolStatus(size=1, in_use=int(self._writer.busy))

    async def watch(self, signals: ChangeSignals) -> None:
        """Poll ``PRAGMA data_version`` of the reading connection, which changes
        when any other connection commits, while requests wait; heads are read
        only then."""
        changed = data_version(self._reads.connection.raw)
        await poll_heads(self, signals, interval_s=PROBE_INTERVAL_S, changed=changed)

    async def warnings(self) -> list[str]:
        return []
