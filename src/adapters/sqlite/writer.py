"""The one writing connection of a process: writers take turns on it, and their
work is made durable in groups, one COMMIT (and one fsync) for several."""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor

from adapters.sqlite.busy import Deadline
from adapters.sqlite.connection import SqliteConnection, connect, is_busy, unavailable
from application.errors import StorageUnavailable

GROUP_LIMIT = 32
"""Most writers one COMMIT makes durable together: a bound on how long the
first of them waits for the others."""

_SAVEPOINT = "unit_of_work"


class Writer:
    """SQLite admits one writer at a time: a process's writers take turns here, in
    order of arrival, each in a savepoint of the transaction its group shares.

    A writer that commits releases its savepoint and hands the turn on; the
    group's COMMIT goes to a thread of the writer's own once no writer waits
    for a turn (or ``GROUP_LIMIT`` have joined), and each writer returns when
    it is on disk (``synchronous=FULL``). With one COMMIT per write, writers
    queued behind each fsync and the event loop's turn to see it done; now
    those queued during one COMMIT share the next. A writer that does not
    commit rolls back its savepoint only.

    A turn, the previous group's COMMIT and the database's write lock are all
    awaited within the database timeout: the lock is tried without waiting,
    then again after short pauses on the event loop, so a writer in another
    process delays this one's requests but never the loop.
    """

    def __init__(self, database: str, *, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self.connection = SqliteConnection(connect(database, timeout_s=timeout_s))
        self._turns = asyncio.Lock()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="taskvault-sqlite-commit")
        self._group: list[asyncio.Future[None]] = []
        self._committing: asyncio.Future[None] | None = None
        self._queued = 0
        """Writers waiting for a turn, those woken and not yet running too."""

    @property
    def busy(self) -> bool:
        return self._turns.locked()

    async def begin(self) -> None:
        """Wait for this process's turn and the database's write lock, then
        start this writer's savepoint (and, first in a group, BEGIN)."""
        deadline = Deadline(self._timeout_s)
        self._queued += 1
        try:
            async with asyncio.timeout_at(deadline.at):
                await self._turns.acquire()
        except TimeoutError as error:
            raise StorageUnavailable("TimeoutError") from error
        finally:
            self._queued -= 1
            self._commit_if_idle()
        try:
            await self._committed(deadline)
            raw = self.connection.raw
            if not raw.in_transaction:
                await self._lock(deadline)
            raw.execute(f"SAVEPOINT {_SAVEPOINT}")
        except BaseException:
            self._hand_on()
            raise

    async def _committed(self, deadline: Deadline) -> None:
        """Until the previous group's COMMIT is done with the connection."""
        committing = self._committing
        if committing is None:
            return
        left = deadline.at - asyncio.get_running_loop().time()
        done, _ = await asyncio.wait([committing], timeout=max(left, 0))
        if not done:
            raise StorageUnavailable("TimeoutError")

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
        """Keep this writer's work, hand the turn on, and return once the
        group's COMMIT is on disk; the turn is handed on even if this fails."""
        try:
            self.connection.raw.execute(f"RELEASE {_SAVEPOINT}")
        except sqlite3.Error as error:
            self.abandon()
            raise unavailable(error) from error
        durable = asyncio.get_running_loop().create_future()
        self._group.append(durable)
        self._hand_on()
        # Shielded: a cancelled request's work is committed with its group.
        await asyncio.shield(durable)

    def abandon(self) -> None:
        """Undo this writer's work, not its group's, and hand the turn on."""
        raw = self.connection.raw
        try:
            if raw.in_transaction:
                raw.execute(f"ROLLBACK TO {_SAVEPOINT}")
                raw.execute(f"RELEASE {_SAVEPOINT}")
        except sqlite3.Error:
            # SQLite rolled the whole transaction back itself, or the
            # connection is broken: ``_hand_on`` tells the group.
            pass
        self._hand_on()

    def _hand_on(self) -> None:
        raw = self.connection.raw
        if self._group and not raw.in_transaction:
            # A full disk or an I/O error rolls back the whole transaction.
            self._settle(self._group, StorageUnavailable("transaction rolled back"))
            self._group = []
        if len(self._group) >= GROUP_LIMIT:
            self._start_commit()
        elif not self._group and self._committing is None and raw.in_transaction:
            # Nothing to keep: free the write lock for other processes.
            self._rollback()
        self._turns.release()
        if self._group:
            # After the writers already queued have taken their turns.
            asyncio.get_running_loop().call_soon(self._commit_if_idle)

    def _commit_if_idle(self) -> None:
        idle = not self._turns.locked() and not self._queued
        if self._group and self._committing is None and idle:
            self._start_commit()

    def _start_commit(self) -> None:
        group, self._group = self._group, []
        committing = asyncio.get_running_loop().run_in_executor(self._thread, self._commit)
        self._committing = committing

        def done(future: asyncio.Future[None]) -> None:
            self._committing = None
            error = future.exception()
            if isinstance(error, Exception):
                self._rollback()
                error = unavailable(error)
            self._settle(group, error)

        committing.add_done_callback(done)

    def _commit(self) -> None:
        self.connection.raw.execute("COMMIT")

    def _rollback(self) -> None:
        try:
            if self.connection.raw.in_transaction:
                self.connection.raw.execute("ROLLBACK")
        except sqlite3.Error:
            # A rollback that fails leaves nothing to undo, or a broken
            # connection, which fails its next BEGIN.
            pass

    @staticmethod
    def _settle(group: list[asyncio.Future[None]], error: BaseException | None) -> None:
        for durable in group:
            if durable.done():
                continue
            if error is None:
                durable.set_result(None)
            else:
                durable.set_exception(error)

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        self.connection.raw.close()
