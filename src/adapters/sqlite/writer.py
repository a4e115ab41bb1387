"""The one writing connection of a process, taken in turns, with a thread for its commits."""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor

from adapters.sqlite.busy import Deadline
from adapters.sqlite.connection import SqliteConnection, connect, is_busy, unavailable
from application.errors import StorageUnavailable


class Writer:
    """SQLite admits one writer at a time: a process's writers take turns here, in
    order of arrival, on one connection.

    A turn and the write lock are both awaited within the database timeout:
    the lock is tried without waiting, then again after short pauses on the
    event loop, so a writer in another process delays this one's requests
    but never the loop. The commit, which waits on the disk (``synchronous
    =FULL``) and may run a checkpoint, is the one step run on a thread of
    the writer's own.
    """

    def __init__(self, database: str, *, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        # Never SQLite's own wait, on the loop: busy is answered at once.
        self.connection = SqliteConnection(connect(database, busy_timeout_s=0))
        self._turns = asyncio.Lock()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="taskvault-sqlite-commit")
        self._committing: asyncio.Future[None] | None = None

    @property
    def busy(self) -> bool:
        return self._turns.locked()

    async def begin(self) -> None:
        """Wait for this process's turn and the database's write lock, then BEGIN."""
        deadline = Deadline(self._timeout_s)
        try:
            async with asyncio.timeout_at(deadline.at):
                await self._turns.acquire()
        except TimeoutError as error:
            raise StorageUnavailable("TimeoutError") from error
        try:
            await self._lock(deadline)
        except BaseException:
            self._turns.release()
            raise

    async def _lock(self, deadline: Deadline) -> None:
        while True:
            try:
                # IMMEDIATE: the write lock now, not at the first write, where
                # a deferred transaction could fail instead of waiting.
                self.connection.raw.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as error:
                if not is_busy(error):
                    raise unavailable(error) from error
                await deadline.pause(error)

    async def commit(self) -> None:
        loop = asyncio.get_running_loop()
        committing = loop.run_in_executor(self._thread, self._commit)
        self._committing = committing
        try:
            # Shielded: a cancelled request must not hand the connection on
            # while the thread still commits on it (``release``).
            await asyncio.shield(committing)
        except sqlite3.Error as error:
            raise unavailable(error) from error

    def _commit(self) -> None:
        self.connection.raw.execute("COMMIT")

    def release(self) -> None:
        """End the turn, rolling back what was not committed.

        After a cancelled commit, only once the commit's thread is done with
        the connection.
        """
        committing, self._committing = self._committing, None
        if committing is not None and not committing.done():
            committing.add_done_callback(lambda _: self._end())
        else:
            self._end()

    def _end(self) -> None:
        try:
            if self.connection.raw.in_transaction:
                self.connection.raw.execute("ROLLBACK")
        except sqlite3.Error:
            # A rollback that fails leaves nothing to undo: SQLite has already
            # rolled back, or the connection is broken and fails its next BEGIN.
            pass
        finally:
            self._turns.release()

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        self.connection.raw.close()
