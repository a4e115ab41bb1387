"""The change feed's port on every store: numbers, tombstones, the head, the purge."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from application.ports import Storage
from application.sync import ChangeNumber, Tombstone
from domain.task import Task
from tests.contract.reference import ALICE, BASE, BOB, make_task, store
from tests.support import SequentialIds

START = ChangeNumber(0, ChangeNumber.after_all_of(0).task_id)


async def _update(storage: Storage, task: Task, **changes: object) -> Task:
    changed = task._replace(version=task.version + 1, **changes)  # type: ignore[arg-type]
    async with storage.unit_of_work(task.user_id) as uow:
        assert await uow.tasks.update(changed, expected_version=task.version)
        await uow.commit()
    return changed


async def _delete(storage: Storage, task: Task, at: timedelta = timedelta(0)) -> None:
    async with storage.unit_of_work(task.user_id) as uow:
        assert await uow.tasks.delete(task.id, expected_version=task.version, deleted_at=BASE + at)
        await uow.commit()


async def test_a_first_sync_lists_live_tasks_in_change_order_without_tombstones(
    storage: Storage, ids: SequentialIds
) -> None:
    first, second, third = (make_task(ids.new_id(), title=f"t{n}") for n in range(3))
    for task in (first, second, third):
        await store(storage, task)
    await _delete(storage, second)
    renamed = await _update(storage, first, title="renamed")

    read = await storage.reader(ALICE).changes(None, 10)
    assert [change.item for change in read.changes] == [third, renamed]
    numbers = [change.number for change in read.changes]
    assert numbers == sorted(numbers)
    assert read.head == 5
    assert all(n.seq <= read.head for n in numbers)


async def test_changes_after_a_number_are_each_task_once_in_its_latest_state(
    storage: Storage, ids: SequentialIds
) -> None:
    kept, doomed = make_task(ids.new_id()), make_task(ids.new_id())
    await store(storage, kept, doomed)
    point = ChangeNumber.after_all_of((await storage.reader(ALICE).changes(None, 10)).head)
    kept = await _update(storage, kept, title="once")
    kept = await _update(storage, kept, title="twice")
    await _delete(storage, doomed, timedelta(seconds=5))

    read = await storage.reader(ALICE).changes(point, 10)
    assert [change.item for change in read.changes] == [
        kept,
        Tombstone(doomed.id, BASE + timedelta(seconds=5)),
    ]
    assert all(change.number > point for change in read.changes)
    assert (
        await storage.reader(ALICE).changes(ChangeNumber.after_all_of(read.head), 10)
    ).changes == []


async def test_a_read_returns_one_more_change_than_its_limit_and_resumes_exactly(
    storage: Storage, ids: SequentialIds
) -> None:
    tasks = [make_task(ids.new_id(), title=f"t{n}") for n in range(5)]
    await store(storage, *tasks)  # one transaction: one number, ordered by id
    seen: list[Task] = []
    after: ChangeNumber | None = None
    while True:
        read = await storage.reader(ALICE).changes(after, 2)
        assert len(read.changes) <= 3
        page = read.changes[:2]
        seen += [change.item for change in page]  # type: ignore[misc]
        if len(read.changes) <= 2:
            break
        after = page[-1].number
    assert seen == sorted(tasks, key=lambda t: t.id)


async def test_a_rolled_back_unit_of_work_shows_no_change(
    storage: Storage, ids: SequentialIds
) -> None:
    await store(storage, make_task(ids.new_id()))
    before = await storage.reader(ALICE).changes(START, 10)
    async with storage.unit_of_work(ALICE) as uow:
        await uow.tasks.add(make_task(ids.new_id()))
    after = await storage.reader(ALICE).changes(START, 10)
    assert after.changes == before.changes


async def test_a_later_commit_always_has_a_greater_number(
    storage: Storage, ids: SequentialIds
) -> None:
    """Concurrent units of work of one owner commit in the order of their numbers."""

    async def add(n: int) -> None:
        async with storage.unit_of_work(ALICE) as uow:
            await uow.tasks.add(make_task(ids.new_id(), title=f"t{n}"))
            await asyncio.sleep(0)
            await uow.commit()

    await asyncio.gather(*(add(n) for n in range(8)))
    read = await storage.reader(ALICE).changes(None, 20)
    assert len({change.number.seq for change in read.changes}) == 8
    assert read.head == max(change.number.seq for change in read.changes)


async def test_each_owner_has_a_feed_of_their_own(storage: Storage, ids: SequentialIds) -> None:
    alices, bobs = make_task(ids.new_id(), owner=ALICE), make_task(ids.new_id(), owner=BOB)
    await store(storage, alices, bobs)
    await _delete(storage, bobs)
    assert [c.item for c in (await storage.reader(ALICE).changes(START, 10)).changes] == [alices]
    read = await storage.reader(BOB).changes(START, 10)
    assert [c.item for c in read.changes] == [Tombstone(bobs.id, BASE)]
    assert (await storage.reader("carol").changes(START, 10)).head == 0


async def test_a_purge_drops_at_most_its_limit_of_the_oldest_tombstones_only(
    storage: Storage, ids: SequentialIds
) -> None:
    tasks = [make_task(ids.new_id()) for _ in range(5)]
    await store(storage, *tasks)
    for age, task in enumerate(tasks):
        await _delete(storage, task, timedelta(days=age))
    async with storage.unit_of_work(ALICE) as uow:
        purged = await uow.tasks.purge_tombstones(deleted_before=BASE + timedelta(days=3), limit=2)
        await uow.commit()
    assert purged == 2
    left = (await storage.reader(ALICE).changes(START, 10)).changes
    assert [c.item.id for c in left] == [t.id for t in tasks[2:]]
    async with storage.unit_of_work(ALICE) as uow:
        assert await uow.tasks.purge_tombstones(deleted_before=BASE, limit=100) == 0
        await uow.commit()
