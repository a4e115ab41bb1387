"""The TaskRepository / UnitOfWork contract: reads, writes, versions, owners, transactions.

Every test runs on every store (memory, SQLite, PostgreSQL) through ``storage``.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from application.errors import ForeignTask
from application.ports import Storage
from application.queries import TaskQuery
from domain.task import DESCRIPTION_MAX_LENGTH, TITLE_MAX_LENGTH, Priority, Task
from tests.contract.reference import (
    ALICE,
    BASE,
    BOB,
    fetch,
    fetch_all,
    make_task,
    store,
)
from tests.support import SequentialIds


class Boom(Exception):
    """An error raised inside a unit of work."""


# ---------------------------------------------------------------- add and get


async def test_add_then_get_in_the_same_unit_of_work_and_after_commit(
    storage: Storage, ids: SequentialIds
) -> None:
    task = make_task(ids.new_id(), title="Write the report")
    async with storage.unit_of_work(ALICE) as uow:
        await uow.tasks.add(task)
        assert await uow.tasks.get(task.id) == task
        assert await uow.tasks.list(TaskQuery()) == [task]
        await uow.commit()

    assert await fetch(storage, ALICE, task.id) == task
    assert await fetch_all(storage, ALICE) == [task]


async def test_many_adds_in_one_unit_of_work_are_all_read_back_and_stored(
    storage: Storage, ids: SequentialIds
) -> None:
    """A batch's creates (which a store may send together) each land, in the
    transaction's later reads and after the commit."""
    tasks = [make_task(ids.new_id(), title=f"Task {n}") for n in range(5)]
    async with storage.unit_of_work(ALICE) as uow:
        for task in tasks[:3]:
            await uow.tasks.add(task)
        assert await uow.tasks.get(tasks[1].id) == tasks[1]
        for task in tasks[3:]:
            await uow.tasks.add(task)
        assert _by_id(await uow.tasks.list(TaskQuery(limit=10))) == tasks
        await uow.commit()

    assert _by_id(await fetch_all(storage, ALICE)) == tasks


def _by_id(tasks: list[Task]) -> list[Task]:
    return sorted(tasks, key=lambda task: task.id)


async def test_adds_not_committed_are_rolled_back_together(
    storage: Storage, ids: SequentialIds
) -> None:
    with contextlib.suppress(Boom):
        async with storage.unit_of_work(ALICE) as uow:
            for n in range(3):
                await uow.tasks.add(make_task(ids.new_id(), title=f"Task {n}"))
            raise Boom

    assert await fetch_all(storage, ALICE) == []


async def test_get_returns_none_for_a_missing_id(storage: Storage, ids: SequentialIds) -> None:
    task = make_task(ids.new_id())
    await store(storage, task)

    assert await fetch(storage, ALICE, ids.new_id()) is None
    async with storage.unit_of_work(ALICE) as uow:
        assert await uow.tasks.get(ids.new_id()) is None


async def test_get_is_scoped_to_the_owner(storage: Storage, ids: SequentialIds) -> None:
    alices = make_task(ids.new_id(), owner=ALICE, title="Alice's")
    await store(storage, alices)

    assert await fetch(storage, BOB, alices.id) is None
    async with storage.unit_of_work(BOB) as uow:
        assert await uow.tasks.get(alices.id) is None

    # Bob may hold a task with the very same id: each owner sees only their own.
    bobs = alices._replace(user_id=BOB, title="Bob's", priority=Priority.LOW)
    await store(storage, bobs)

    assert await fetch(storage, ALICE, alices.id) == alices
    assert await fetch(storage, BOB, alices.id) == bobs
    assert await fetch_all(storage, ALICE) == [alices]
    assert await fetch_all(storage, BOB) == [bobs]


# ---------------------------------------------------------------- transactions


async def _add(storage: Storage, task: Task, *, fail: bool) -> None:
    async with storage.unit_of_work(task.user_id) as uow:
        await uow.tasks.add(task)
        assert await uow.tasks.get(task.id) == task
        if fail:
            raise Boom


async def _update(storage: Storage, task: Task, *, fail: bool) -> None:
    async with storage.unit_of_work(task.user_id) as uow:
        assert await uow.tasks.update(task, expected_version=task.version - 1)
        assert await uow.tasks.get(task.id) == task
        if fail:
            raise Boom


async def _delete(storage: Storage, task: Task, *, fail: bool) -> None:
    async with storage.unit_of_work(task.user_id) as uow:
        assert await uow.tasks.delete(task.id, expected_version=task.version, deleted_at=BASE)
        assert await uow.tasks.get(task.id) is None
        if fail:
            raise Boom


@pytest.mark.parametrize("fail", [False, True], ids=["no-commit", "exception"])
async def test_uncommitted_add_is_rolled_back(
    storage: Storage, ids: SequentialIds, fail: bool
) -> None:
    task = make_task(ids.new_id())
    if fail:
        with pytest.raises(Boom):
            await _add(storage, task, fail=True)
    else:
        await _add(storage, task, fail=False)

    assert await fetch(storage, ALICE, task.id) is None
    assert await fetch_all(storage, ALICE) == []
    # The id is free again: the rolled-back row left nothing behind.
    await store(storage, task)
    assert await fetch(storage, ALICE, task.id) == task


@pytest.mark.parametrize("fail", [False, True], ids=["no-commit", "exception"])
async def test_uncommitted_update_is_rolled_back(
    storage: Storage, ids: SequentialIds, fail: bool
) -> None:
    original = make_task(ids.new_id(), title="Before")
    await store(storage, original)
    changed = original._replace(
        title="After", version=2, updated_at=original.updated_at + timedelta(seconds=1)
    )
    if fail:
        with pytest.raises(Boom):
            await _update(storage, changed, fail=True)
    else:
        await _update(storage, changed, fail=False)

    assert await fetch(storage, ALICE, original.id) == original


@pytest.mark.parametrize("fail", [False, True], ids=["no-commit", "exception"])
async def test_uncommitted_delete_is_rolled_back(
    storage: Storage, ids: SequentialIds, fail: bool
) -> None:
    task = make_task(ids.new_id())
    await store(storage, task)
    if fail:
        with pytest.raises(Boom):
            await _delete(storage, task, fail=True)
    else:
        await _delete(storage, task, fail=False)

    assert await fetch(storage, ALICE, task.id) == task


async def test_uncommitted_writes_are_invisible_to_other_units_of_work(
    storage: Storage, ids: SequentialIds
) -> None:
    kept = make_task(ids.new_id(), title="Kept")
    await store(storage, kept)
    added = make_task(ids.new_id(), title="Added", created_at=BASE + timedelta(seconds=1))
    async with storage.unit_of_work(ALICE) as writer:
        await writer.tasks.add(added)
        assert await writer.tasks.delete(kept.id, expected_version=1, deleted_at=BASE)

        assert await fetch(storage, ALICE, added.id) is None
        assert await fetch(storage, ALICE, kept.id) == kept
        assert await fetch_all(storage, ALICE) == [kept]
        await writer.commit()

    assert await fetch(storage, ALICE, added.id) == added
    assert await fetch(storage, ALICE, kept.id) is None


# ---------------------------------------------------------------- update


def _edited(task: Task, title: str, seconds: int = 1) -> Task:
    return task._replace(
        title=title,
        priority=Priority.HIGH,
        updated_at=task.updated_at + timedelta(seconds=seconds),
        version=task.version + 1,
    )


async def test_update_with_the_expected_version_stores_the_task(
    storage: Storage, ids: SequentialIds
) -> None:
    original = make_task(ids.new_id(), title="Draft")
    await store(storage, original)
    changed = _edited(original, "Final")

    async with storage.unit_of_work(ALICE) as uow:
        assert await uow.tasks.update(changed, expected_version=1) is True
        assert await uow.tasks.get(original.id) == changed
        await uow.commit()

    assert await fetch(storage, ALICE, original.id) == changed
    assert await fetch_all(storage, ALICE) == [changed]


async def test_update_with_a_stale_version_changes_nothing(
    storage: Storage, ids: SequentialIds
) -> None:
    original = make_task(ids.new_id(), title="Draft")
    await store(storage, original)
    second = _edited(original, "Second")
    async with storage.unit_of_work(ALICE) as uow:
        assert await uow.tasks.update(second, expected_version=1) is True
        await uow.commit()

    for stale in (1, 3, 0):
        third = _edited(second, f"Stale {stale}")._replace(version=stale + 1)
        async with storage.unit_of_work(ALICE) as uow:
            assert await uow.tasks.update(third, expected_version=stale) is False
            assert await uow.tasks.get(original.id) == second
            await uow.commit()
        assert await fetch(storage, ALICE, original.id) == second


async def test_update_of_a_missing_task_is_refused(storage: Storage, ids: SequentialIds) -> None:
    ghost = make_task(ids.new_id(), title="Ghost", version=2)
    async with storage.unit_of_work(ALICE) as uow:
        assert await uow.tasks.update(ghost, expected_version=1) is False
        await uow.commit()

    assert await fetch(storage, ALICE, ghost.id) is None
    assert await fetch_all(storage, ALICE) == []


async def test_update_naming_another_owner_never_touches_their_row(
    storage: Storage, ids: SequentialIds
) -> None:
    alices = make_task(ids.new_id(), owner=ALICE, title="Alice's")
    await store(storage, alices)
    hijacked = _edited(alices, "Hijacked")

    # Alice's task, handed to Bob's unit of work: refused.
    with pytest.raises(ForeignTask):
        async with storage.unit_of_work(BOB) as uow:
            await uow.tasks.update(hijacked, expected_version=1)
    async with storage.unit_of_work(BOB) as uow:
        # The same task relabelled as Bob's: Bob has no such task.
        relabelled = hijacked._replace(user_id=BOB)
        assert await uow.tasks.update(relabelled, expected_version=1) is False
        await uow.commit()
    assert await fetch(storage, ALICE, alices.id) == alices
    assert await fetch(storage, BOB, alices.id) is None

    # Bob's own task with the same id: his update changes his row only.
    bobs = alices._replace(user_id=BOB, title="Bob's")
    await store(storage, bobs)
    bobs_changed = _edited(bobs, "Bob's, edited")
    async with storage.unit_of_work(BOB) as uow:
        assert await uow.tasks.update(bobs_changed, expected_version=1) is True
        await uow.commit()
    assert await fetch(storage, BOB, alices.id) == bobs_changed
    assert await fetch(storage, ALICE, alices.id) == alices


# ---------------------------------------------------------------- delete


async def test_delete_with_the_expected_version_removes_the_task(
    storage: Storage, ids: SequentialIds
) -> None:
    doomed = make_task(ids.new_id(), title="Doomed", version=4)
    kept = make_task(ids.new_id(), title="Kept")
    await store(storage, doomed, kept)

    async with storage.unit_of_work(ALICE) as uow:
        assert await uow.tasks.delete(doomed.id, expected_version=4, deleted_at=BASE) is True
        assert await uow.tasks.get(doomed.id) is None
        await uow.commit()

    assert await fetch(storage, ALICE, doomed.id) is None
    assert await fetch(storage, ALICE, kept.id) == kept
    assert await fetch_all(storage, ALICE) == [kept]
    # Deleting it again finds nothing.
    async with storage.unit_of_work(ALICE) as uow:
        assert await uow.tasks.delete(doomed.id, expected_version=4, deleted_at=BASE) is False
        await uow.commit()


async def test_delete_with_a_stale_version_changes_nothing(
    storage: Storage, ids: SequentialIds
) -> None:
    task = make_task(ids.new_id(), version=2)
    await store(storage, task)

    for stale in (1, 3):
        async with storage.unit_of_work(ALICE) as uow:
            assert await uow.tasks.delete(task.id, expected_version=stale, deleted_at=BASE) is False
            assert await uow.tasks.get(task.id) == task
            await uow.commit()
        assert await fetch(storage, ALICE, task.id) == task


async def test_delete_of_a_missing_task_is_refused(storage: Storage, ids: SequentialIds) -> None:
    async with storage.unit_of_work(ALICE) as uow:
        assert await uow.tasks.delete(ids.new_id(), expected_version=1, deleted_at=BASE) is False
        await uow.commit()


async def test_delete_naming_another_owner_never_touches_their_row(
    storage: Storage, ids: SequentialIds
) -> None:
    alices = make_task(ids.new_id(), owner=ALICE, title="Alice's")
    await store(storage, alices)

    async with storage.unit_of_work(BOB) as uow:
        assert await uow.tasks.delete(alices.id, expected_version=1, deleted_at=BASE) is False
        await uow.commit()
    assert await fetch(storage, ALICE, alices.id) == alices

    # Bob's own task with the same id: his delete removes his row only.
    bobs = alices._replace(user_id=BOB, title="Bob's")
    await store(storage, bobs)
    async with storage.unit_of_work(BOB) as uow:
        assert await uow.tasks.delete(alices.id, expected_version=1, deleted_at=BASE) is True
        await uow.commit()
    assert await fetch(storage, BOB, alices.id) is None
    assert await fetch(storage, ALICE, alices.id) == alices


# ---------------------------------------------------------------- round trip

_IST = timezone(timedelta(hours=5, minutes=30))
_LONG_DESCRIPTION_UNIT = "Zeile mit Umlauten äöü ß, emoji 🎉👩‍💻, CJK 漢字\n\tindented\r\n"


def _long_description() -> str:
    text = _LONG_DESCRIPTION_UNIT * (DESCRIPTION_MAX_LENGTH // len(_LONG_DESCRIPTION_UNIT) + 1)
    return text[:DESCRIPTION_MAX_LENGTH]


def _round_trip_tasks(ids: SequentialIds) -> list[Task]:
    long_title = ("Ünïcödé 🎉 " * TITLE_MAX_LENGTH)[: TITLE_MAX_LENGTH - 1].strip() + "!"
    moment = datetime(2026, 11, 26, 10, 0, 0, 123456, tzinfo=UTC)
    return [
        make_task(ids.new_id(), title="Plain ASCII", priority=Priority.LOW),
        make_task(
            ids.new_id(),
            title="Café crème — naïve façade",
            description="",
            priority=Priority.MEDIUM,
            due_at=datetime(2026, 12, 1, 17, 0, tzinfo=UTC),
            created_at=moment,
        ),
        make_task(
            ids.new_id(),
            title="emoji 🎉👩‍💻 and astral \U0001d518 and CJK 漢字 and e\u0301",
            description="line one\nline two\n\nline four\r\n\ttab",
            priority=Priority.HIGH,
            due_at=datetime(2027, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
            created_at=moment + timedelta(microseconds=1),
            updated_at=moment + timedelta(days=3, microseconds=999_998),
            version=7,
        ),
        make_task(
            ids.new_id(),
            title=long_title,
            description=_long_description(),
            completed=True,
            priority=Priority.HIGH,
            due_at=datetime(2026, 11, 30, 23, 59, 59, 999_999, tzinfo=UTC),
            created_at=datetime(2026, 1, 2, 3, 4, 5, 678_901, tzinfo=UTC),
            updated_at=datetime(2026, 6, 7, 8, 9, 10, 111_213, tzinfo=UTC),
            version=2,
        ),
        make_task(
            ids.new_id(),
            title="Completed with a due date given in another offset",
            completed=True,
            priority=Priority.LOW,
            # The domain stores it in UTC: 2026-12-24T13:00:15.25Z.
            due_at=datetime(2026, 12, 24, 18, 30, 15, 250_000, tzinfo=_IST),
        ),
    ]


def _assert_utc(task: Task) -> None:
    for name in ("due_at", "completed_at", "created_at", "updated_at"):
        value = getattr(task, name)
        if value is None:
            continue
        assert isinstance(value, datetime)
        assert value.tzinfo is not None, f"{name} is naive: {value!r}"
        assert value.utcoffset() == timedelta(0), f"{name} is not UTC: {value!r}"


async def test_every_field_round_trips(storage: Storage, ids: SequentialIds) -> None:
    tasks = _round_trip_tasks(ids)
    long_title = tasks[3].title
    assert len(long_title) == TITLE_MAX_LENGTH
    assert len(tasks[3].description or "") == DESCRIPTION_MAX_LENGTH
    assert {task.priority for task in tasks} == set(Priority)
    assert any(task.due_at is None for task in tasks)
    assert any(task.completed_at is not None for task in tasks)
    await store(storage, *tasks)

    for task in tasks:
        loaded = await fetch(storage, ALICE, task.id)
        assert loaded is not None
        for name in Task._fields:
            assert getattr(loaded, name) == getattr(task, name), f"{name} differs"
        assert loaded == task
        assert type(loaded.priority) is Priority
        assert isinstance(loaded.id, uuid.UUID)
        _assert_utc(loaded)

    listed = await fetch_all(storage, ALICE)
    assert sorted(listed, key=lambda t: t.id) == sorted(tasks, key=lambda t: t.id)
    for task in listed:
        _assert_utc(task)


async def test_updated_fields_round_trip(storage: Storage, ids: SequentialIds) -> None:
    original = make_task(ids.new_id(), title="Before", due_at=BASE + timedelta(days=1))
    await store(storage, original)
    changed = original._replace(
        title="Nachher 🎉 ünïcödé",
        description=_long_description(),
        completed=True,
        priority=Priority.LOW,
        due_at=None,
        completed_at=BASE + timedelta(hours=5, microseconds=42),
        updated_at=BASE + timedelta(hours=5, microseconds=42),
        version=2,
    )
    async with storage.unit_of_work(ALICE) as uow:
        assert await uow.tasks.update(changed, expected_version=1)
        await uow.commit()

    loaded = await fetch(storage, ALICE, original.id)
    assert loaded == changed
    assert loaded.created_at == original.created_at
    _assert_utc(loaded)


# ---------------------------------------------------------------- concurrency


# How long a writer that has read the task waits for its rival to read it too. On
# stores that serialize writers (memory, SQLite's BEGIN IMMEDIATE) the rival cannot
# start before the first writer finishes, so the wait simply runs out.
RIVAL_READ_WAIT_S = 0.3


async def test_concurrent_updates_with_the_same_version_let_exactly_one_win(
    storage: Storage, ids: SequentialIds
) -> None:
    original = make_task(ids.new_id(), title="Contested")
    await store(storage, original)
    candidates = [_edited(original, "First writer"), _edited(original, "Second writer", 2)]
    start = asyncio.Barrier(len(candidates))
    reads: list[int] = []
    all_read = asyncio.Event()

    async def attempt(candidate: Task) -> bool:
        await start.wait()  # both units of work begin together
        async with storage.unit_of_work(ALICE) as uow:
            # Read, then write: the usual shape of a use case.
            current = await uow.tasks.get(candidate.id)
            assert current is not None
            reads.append(current.version)
            if len(reads) == len(candidates):
                all_read.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_read.wait(), RIVAL_READ_WAIT_S)
            updated = await uow.tasks.update(candidate, expected_version=1)
            await uow.commit()
        return updated

    async with asyncio.timeout(30):
        results = await asyncio.gather(*(attempt(c) for c in candidates))

    assert sorted(results) == [False, True]
    winner = candidates[results.index(True)]
    assert await fetch(storage, ALICE, original.id) == winner
    assert await fetch_all(storage, ALICE) == [winner]


async def test_a_locking_read_waits_for_the_concurrent_writer(
    storage: Storage, ids: SequentialIds
) -> None:
    original = make_task(ids.new_id(), title="Contested")
    await store(storage, original)
    candidates = [_edited(original, "First writer"), _edited(original, "Second writer", 2)]
    start = asyncio.Barrier(len(candidates))
    reads: list[int] = []

    async def attempt(candidate: Task) -> Task | None:
        await start.wait()
        async with storage.unit_of_work(ALICE) as uow:
            current = await uow.tasks.get(candidate.id)
            assert current is not None
            reads.append(current.version)
            # Give the rival every chance to read too; a lock must stop it.
            await asyncio.sleep(RIVAL_READ_WAIT_S)
            written = candidate._replace(version=current.version + 1)
            updated = await uow.tasks.update(written, expected_version=current.version)
            await uow.commit()
        return written if updated else None

    async with asyncio.timeout(30):
        results = await asyncio.gather(*(attempt(c) for c in candidates))

    # The second reader saw the first one's write, so both writes apply in turn.
    assert reads == [1, 2]
    written = [task for task in results if task is not None]
    assert sorted(task.version for task in written) == [2, 3]
    last = max(written, key=lambda task: task.version)
    assert await fetch(storage, ALICE, original.id) == last


# ---------------------------------------------------------------- health


async def test_ping_succeeds_on_a_live_store(storage: Storage) -> None:
    await storage.ping()
    # The store still works after a ping.
    assert await fetch_all(storage, ALICE) == []
