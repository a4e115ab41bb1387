"""The TaskWriter contract: one conditional update, committed on its own, on every store."""

from __future__ import annotations

import asyncio

import pytest

from application.errors import ForeignTask
from application.ports import Storage
from domain.task import Priority, Task
from tests.contract.reference import ALICE, BASE, BOB, fetch, make_task, store
from tests.support import SequentialIds


def _changed(task: Task, **changes: object) -> Task:
    return task._replace(version=task.version + 1, **changes)  # type: ignore[arg-type]


async def _head(storage: Storage, owner: str = ALICE) -> int:
    return (await storage.reader(owner).changes(None, 10)).head


async def test_an_update_at_the_expected_version_is_stored_committed_and_numbered(
    storage: Storage, ids: SequentialIds
) -> None:
    task = make_task(ids.new_id(), title="Before", description="old")
    await store(storage, task)
    head = await _head(storage)
    changed = _changed(
        task,
        title="After",
        description=None,
        completed=True,
        completed_at=BASE,
        priority=Priority.HIGH,
        due_at=BASE,
        updated_at=BASE.replace(hour=11),
    )

    assert await storage.writer(ALICE).update(changed, expected_version=task.version)

    assert await fetch(storage, ALICE, task.id) == changed
    read = await storage.reader(ALICE).changes(None, 10)
    assert read.head == head + 1
    assert [(c.item, c.number.seq) for c in read.changes] == [(changed, head + 1)]


async def test_an_update_at_another_version_changes_nothing(
    storage: Storage, ids: SequentialIds
) -> None:
    task = make_task(ids.new_id(), title="Kept")
    await store(storage, task)
    head = await _head(storage)

    stale = _changed(task, title="Lost")
    assert not await storage.writer(ALICE).update(stale, expected_version=task.version + 1)

    assert await fetch(storage, ALICE, task.id) == task
    # Not even a change number: nothing of the attempt is left.
    assert await _head(storage) == head


async def test_an_update_of_a_missing_task_stores_nothing(
    storage: Storage, ids: SequentialIds
) -> None:
    absent = make_task(ids.new_id())
    assert not await storage.writer(ALICE).update(_changed(absent), expected_version=1)
    assert await fetch(storage, ALICE, absent.id) is None


async def test_another_users_task_is_not_there_to_update(
    storage: Storage, ids: SequentialIds
) -> None:
    bobs = make_task(ids.new_id(), owner=BOB, title="Bob's")
    await store(storage, bobs)
    # The same id, claimed as Alice's: her writer finds no such task of hers.
    as_alices = _changed(bobs._replace(user_id=ALICE), title="Taken")
    assert not await storage.writer(ALICE).update(as_alices, expected_version=bobs.version)
    assert await fetch(storage, BOB, bobs.id) == bobs
    assert await fetch(storage, ALICE, bobs.id) is None


async def test_a_writer_refuses_a_task_of_another_owner(
    storage: Storage, ids: SequentialIds
) -> None:
    bobs = make_task(ids.new_id(), owner=BOB)
    await store(storage, bobs)
    with pytest.raises(ForeignTask):
        await storage.writer(ALICE).update(_changed(bobs), expected_version=bobs.version)
    assert await fetch(storage, BOB, bobs.id) == bobs


async def test_of_concurrent_updates_from_one_version_exactly_one_lands(
    storage: Storage, ids: SequentialIds
) -> None:
    task = make_task(ids.new_id())
    await store(storage, task)
    head = await _head(storage)
    rivals = [_changed(task, title=f"Rival {n}") for n in range(8)]

    landed = await asyncio.gather(
        *(storage.writer(ALICE).update(rival, expected_version=task.version) for rival in rivals)
    )

    assert sum(landed) == 1
    winner = rivals[landed.index(True)]
    assert await fetch(storage, ALICE, task.id) == winner
    assert await _head(storage) == head + 1
