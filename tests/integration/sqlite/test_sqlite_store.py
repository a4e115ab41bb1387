"""The SQLite store on ``sqlite3``: statements on the event loop, a commit on a
thread, writers in turns, and no wait on a lock past the database timeout.
Writers' order and completeness are checked on both SQLite stores."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from adapters.sql.connection import Connection
from adapters.sqlalchemy import SqlAlchemyStorage
from adapters.sqlite import SqliteStorage
from adapters.sqlite.writer import Writer
from application.errors import StorageUnavailable
from application.queries import TaskQuery
from domain.task import Task, TaskFields

TIMEOUT_S = 0.5


@pytest.fixture
async def storage(sqlite_url: str) -> AsyncIterator[SqliteStorage]:
    store = SqliteStorage(sqlite_url, timeout_s=TIMEOUT_S)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def database(sqlite_url: str) -> str:
    path = make_url(sqlite_url).database
    assert path is not None
    return path


@contextmanager
def other_process_writing(database: str) -> Iterator[sqlite3.Connection]:
    """Another process's connection, holding SQLite's write lock."""
    other = sqlite3.connect(database, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield other
        if other.in_transaction:
            other.execute("ROLLBACK")
    finally:
        other.close()


def _task(title: str) -> Task:
    return Task.new(
        task_id=uuid.uuid4(), owner="alice", fields=TaskFields(title), now=datetime.now(UTC)
    )


async def _create(storage: SqliteStorage | SqlAlchemyStorage, title: str) -> None:
    async with storage.unit_of_work("alice") as uow:
        await uow.tasks.add(_task(title))
        await uow.commit()


async def _titles(storage: SqliteStorage | SqlAlchemyStorage) -> list[str]:
    return sorted(task.title for task in await storage.reader("alice").list(TaskQuery(limit=200)))


@pytest.fixture(params=[SqliteStorage, SqlAlchemyStorage])
async def either_store(
    request: pytest.FixtureRequest, sqlite_url: str
) -> AsyncIterator[SqliteStorage | SqlAlchemyStorage]:
    """Each SQLite store: the service's, and SQLAlchemy's on aiosqlite."""
    # The production timeout: the fortieth writer waits for 39 turns, longer
    # than TIMEOUT_S on a loaded machine, and these tests are about order and loss.
    store = request.param(sqlite_url, timeout_s=5.0)
    try:
        yield store
    finally:
        await store.close()


async def test_writers_are_served_in_order_of_arrival(
    either_store: SqliteStorage | SqlAlchemyStorage,
) -> None:
    entered: list[int] = []
    async with either_store.unit_of_work("alice") as first:

        async def write(n: int) -> None:
            async with either_store.unit_of_work("alice") as uow:
                entered.append(n)
                await uow.tasks.add(_task(f"task {n}"))
                await uow.commit()

        writers = []
        for n in range(5):
            writers.append(asyncio.create_task(write(n)))
            await asyncio.sleep(0.01)
        await first.commit()
    await asyncio.gather(*writers)
    assert entered == [0, 1, 2, 3, 4]


async def test_many_concurrent_writes_all_land(
    either_store: SqliteStorage | SqlAlchemyStorage,
) -> None:
    await asyncio.gather(*(_create(either_store, f"task {n}") for n in range(40)))
    assert await _titles(either_store) == sorted(f"task {n}" for n in range(40))


async def test_statements_run_on_the_loop_and_only_the_commit_on_a_thread(
    storage: SqliteStorage,
) -> None:
    sent: list[tuple[str, bool]] = []
    loop_thread = threading.get_ident()

    def record(statement: str) -> None:
        sent.append((" ".join(statement.split()[:3]).upper(), threading.get_ident() == loop_thread))

    for connection in (storage._writer.connection.raw, storage._reads.connection.raw):
        connection.set_trace_callback(record)
    async with storage.unit_of_work("alice") as uow:
        await uow.tasks.add(_task("one"))
        await uow.tasks.add(_task("two"))
        await uow.commit()
    # The user's next change number first (the change feed's order), then the
    # tasks, one executemany; the commit waits on the disk, off the loop.
    assert sent == [
        ("BEGIN IMMEDIATE", True),
        ("SAVEPOINT UNIT_OF_WORK", True),
        ("INSERT INTO SYNC_HEADS", True),
        ("INSERT INTO TASKS", True),
        ("INSERT INTO TASKS", True),
        ("RELEASE UNIT_OF_WORK", True),
        ("COMMIT", False),
    ]
    sent.clear()
    assert await _titles(storage) == ["one", "two"]
    assert sent == [("SELECT TASKS.ID, TASKS.USER_ID,", True)]


async def test_readers_do_not_wait_for_a_writer(storage: SqliteStorage, database: str) -> None:
    await _create(storage, "kept")
    with other_process_writing(database) as other:
        other.execute("UPDATE tasks SET title = 'not yet committed'")
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await _titles(storage) == ["kept"]
        assert loop.time() - started < TIMEOUT_S / 5


async def test_a_writer_waits_for_another_process_without_blocking_the_loop(
    storage: SqliteStorage, database: str
) -> None:
    """Another process holds the write lock past the timeout: the write fails
    (503) at the timeout, while the loop goes on serving reads."""
    await _create(storage, "kept")
    loop = asyncio.get_running_loop()
    with other_process_writing(database):
        started = loop.time()
        blocked = asyncio.create_task(_create(storage, "blocked"))
        reads = 0
        while not blocked.done():
            assert await _titles(storage) == ["kept"]
            reads += 1
            await asyncio.sleep(0.01)
        with pytest.raises(StorageUnavailable):
            await blocked
        waited = loop.time() - started
    assert TIMEOUT_S * 0.9 <= waited < TIMEOUT_S * 1.5
    assert reads >= 10
    await _create(storage, "after")  # the turn was given back
    assert await _titles(storage) == ["after", "kept"]


async def test_a_writer_gets_the_lock_soon_after_another_process_lets_go(
    storage: SqliteStorage, database: str
) -> None:
    loop = asyncio.get_running_loop()
    with other_process_writing(database) as other:
        write = asyncio.create_task(_create(storage, "waited"))
        await asyncio.sleep(TIMEOUT_S / 5)
        other.execute("COMMIT")
        released = loop.time()
        await write
    # The pauses between tries are short (busy.PAUSES_S), not SQLite's up to 100 ms.
    assert loop.time() - released < 0.05
    assert await _titles(storage) == ["waited"]


async def test_the_turn_and_the_lock_share_one_timeout(
    storage: SqliteStorage, database: str
) -> None:
    """A writer that waited for its turn most of the timeout, then meets
    another process's lock, gives up at the timeout, not a timeout after its
    turn came."""
    loop = asyncio.get_running_loop()
    turns = storage._writer._turns
    with other_process_writing(database):
        await turns.acquire()
        started = loop.time()
        queued = asyncio.create_task(_create(storage, "queued"))
        await asyncio.sleep(TIMEOUT_S * 0.6)
        turns.release()
        with pytest.raises(StorageUnavailable):
            await queued
        waited = loop.time() - started
    assert TIMEOUT_S * 0.9 <= waited < TIMEOUT_S * 1.3


async def test_a_cancelled_commit_finishes_before_the_next_writer(
    storage: SqliteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The thread's COMMIT is not abandoned half-way: the next writer waits for
    it, and the cancelled write is either wholly there or not at all."""
    commit = Writer._commit
    committing = threading.Event()

    def slow_commit(writer: Writer) -> None:
        committing.set()
        threading.Event().wait(0.2)
        commit(writer)

    monkeypatch.setattr(Writer, "_commit", slow_commit)
    first = asyncio.create_task(_create(storage, "cancelled"))
    assert await asyncio.to_thread(committing.wait, 5)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    monkeypatch.setattr(Writer, "_commit", commit)
    await _create(storage, "next")
    assert await _titles(storage) == ["cancelled", "next"]


async def test_writers_queued_during_a_commit_share_the_next(
    storage: SqliteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One COMMIT (one fsync) for the writers that queued while the previous one
    ran, each returning only once its own work is on disk."""
    commits: list[str] = []
    committing = threading.Event()
    commit = Writer._commit

    def slow(writer: Writer) -> None:
        committing.set()
        threading.Event().wait(0.1)
        commit(writer)
        commits.append("done")

    monkeypatch.setattr(Writer, "_commit", slow)

    async def create(n: int) -> int:
        await _create(storage, f"task {n}")
        return len(commits)

    first = asyncio.create_task(create(0))
    assert await asyncio.to_thread(committing.wait, 5)
    queued = await asyncio.gather(*(create(n) for n in range(1, 11)))
    assert await first == 1
    assert queued == [2] * 10
    assert commits == ["done", "done"]
    assert await _titles(storage) == sorted(f"task {n}" for n in range(11))


async def test_a_writer_that_does_not_commit_undoes_only_its_own_work(
    storage: SqliteStorage,
) -> None:
    async def fail_after_writing() -> None:
        async with storage.unit_of_work("alice") as uow:
            await uow.tasks.add(_task("undone"))
            await uow.tasks.list(TaskQuery())  # sends the insert
            raise RuntimeError("changed its mind")

    results = await asyncio.gather(
        _create(storage, "one"),
        fail_after_writing(),
        _create(storage, "two"),
        return_exceptions=True,
    )
    assert [type(r) for r in results] == [type(None), RuntimeError, type(None)]
    assert await _titles(storage) == ["one", "two"]


async def test_a_failed_commit_fails_every_writer_of_its_group(
    storage: SqliteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(writer: Writer) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(Writer, "_commit", failing)
    results = await asyncio.gather(
        *(_create(storage, f"lost {n}") for n in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, StorageUnavailable) for r in results), results
    monkeypatch.undo()
    await _create(storage, "after")
    assert await _titles(storage) == ["after"]


def _busy() -> sqlite3.OperationalError:
    error = sqlite3.OperationalError("database is locked")
    error.sqlite_errorcode = sqlite3.SQLITE_BUSY
    return error


async def test_a_read_that_sqlite_answers_busy_is_tried_again(storage: SqliteStorage) -> None:
    """Busy on a read is rare in WAL mode (another process recovering the WAL):
    the read is tried again after short pauses, then is a 503 at the timeout."""
    tries = 0

    async def busy_twice(connection: Connection) -> str:
        nonlocal tries
        tries += 1
        if tries <= 2:
            raise _busy()
        return "read"

    async def always_busy(connection: Connection) -> str:
        raise _busy()

    assert await storage._reads.run(busy_twice) == "read"
    assert tries == 3
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(StorageUnavailable):
        await storage._reads.run(always_busy)
    assert TIMEOUT_S * 0.9 <= loop.time() - started < TIMEOUT_S * 1.5


def test_an_in_memory_database_is_refused() -> None:
    with pytest.raises(ValueError, match="memory://"):
        SqliteStorage("sqlite+aiosqlite:///:memory:")


async def test_a_store_opens_while_another_process_holds_the_file(tmp_path: Path) -> None:
    """Workers started together switch the file to WAL at once, which takes the
    database's lock: a worker must wait for it then, within the timeout, and
    not fail to start (seen under ``--workers 2``). Once open, its connections
    never wait in SQLite's busy handler."""
    database = tmp_path / "starting.db"
    # Released from a timer thread while the store waits on this one.
    other = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE t (x)")
    other.execute("BEGIN EXCLUSIVE")
    release = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    release.start()
    try:
        store = SqliteStorage(f"sqlite+aiosqlite:///{database}", timeout_s=5)
    finally:
        release.join()
        other.close()
    try:
        for connection in (store._reads.connection, store._writer.connection):
            assert connection.raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            assert connection.raw.execute("PRAGMA busy_timeout").fetchone() == (0,)
    finally:
        await store.close()
