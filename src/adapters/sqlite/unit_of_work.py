"""One owner's transaction on the process's writing connection."""

from __future__ import annotations

from types import TracebackType

from adapters.sql.idempotency import SqlIdempotencyStore
from adapters.sql.repository import OwnersWrites, SqlTaskRepository
from adapters.sqlite.connection import unavailable
from adapters.sqlite.writer import Writer


class SqliteUnitOfWork:
    """A writer's savepoint in its group's transaction, begun once it is this
    unit of work's turn and the write lock is held (``Writer``), so its
    statements never wait.

    The owner's next change number is taken by its first statement that
    writes (``OwnersWrites``); writers run one at a time, so idempotency keys
    need no lock of their own.
    """

    tasks: SqlTaskRepository
    idempotency: SqlIdempotencyStore

    def __init__(self, writer: Writer, owner: str) -> None:
        self._writer = writer
        self._owner = owner
        self._ended = False

    async def __aenter__(self) -> SqliteUnitOfWork:
        await self._writer.begin()
        conn = self._writer.connection
        self._writes = writes = OwnersWrites(conn, self._owner)
        self.tasks = SqlTaskRepository(conn, self._owner, writes)
        self.idempotency = SqlIdempotencyStore(conn, self._owner, writes)
        return self

    async def commit(self) -> None:
        await self._writes.flushed()
        # The writer hands the turn on whether or not the commit succeeds.
        self._ended = True
        await self._writer.commit()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._ended:
            self._writer.abandon()
        if isinstance(exc, Exception):
            mapped = unavailable(exc)
            if mapped is not exc:
                raise mapped from exc
