"""The owner is given once, to the unit of work or the reader, and every store honours it.

Each test hands a store an owner and then data or ids of another one.
"""

from __future__ import annotations

import pytest

from application.errors import ForeignTask
from application.ports import Storage
from application.queries import TaskQuery
from tests.contract.reference import ALICE, BASE, BOB, fetch, fetch_all, make_task, store
from tests.support import SequentialIds


async def test_a_unit_of_work_refuses_to_add_another_owners_task(
    storage: Storage, ids: SequentialIds
) -> None:
    alices = make_task(ids.new_id(), owner=ALICE)
    with pytest.raises(ForeignTask):
        async with storage.unit_of_work(BOB) as uow:
            await uow.tasks.add(alices)
    assert await fetch_all(storage, ALICE) == []
    assert await fetch_all(storage, BOB) == []


async def test_a_refused_task_rolls_back_what_the_unit_of_work_did_before(
    storage: Storage, ids: SequentialIds
) -> None:
    bobs = make_task(ids.new_id(), owner=BOB, title="Bob's")
    alices = make_task(ids.new_id(), owner=ALICE)

    async def add_both() -> None:
        async with storage.unit_of_work(BOB) as uow:
            await uow.tasks.add(bobs)
            await uow.tasks.add(alices)
            await uow.commit()

    with pytest.raises(ForeignTask):
        await add_both()
    assert await fetch_all(storage, BOB) == []


async def test_a_unit_of_work_refuses_to_update_another_owners_task(
    storage: Storage, ids: SequentialIds
) -> None:
    alices = make_task(ids.new_id(), owner=ALICE)
    bobs = alices._replace(user_id=BOB)
    await store(storage, alices, bobs)
    with pytest.raises(ForeignTask):
        async with storage.unit_of_work(BOB) as uow:
            await uow.tasks.update(alices._replace(title="Hijacked", version=2), expected_version=1)
    assert await fetch(storage, ALICE, alices.id) == alices
    assert await fetch(storage, BOB, bobs.id) == bobs


async def test_a_unit_of_work_reads_and_deletes_only_its_owners_tasks(
    storage: Storage, ids: SequentialIds
) -> None:
    alices = make_task(ids.new_id(), owner=ALICE, title="Alice's")
    bobs = make_task(ids.new_id(), owner=BOB, title="Bob's")
    await store(storage, alices, bobs)
    async with storage.unit_of_work(BOB) as uow:
        assert await uow.tasks.get(alices.id) is None
        assert await uow.tasks.list(TaskQuery()) == [bobs]
        assert await uow.tasks.delete(alices.id, expected_version=1, deleted_at=BASE) is False
        await uow.commit()
    assert await fetch(storage, ALICE, alices.id) == alices


async def test_a_reader_reads_only_its_owners_tasks(storage: Storage, ids: SequentialIds) -> None:
    alices = make_task(ids.new_id(), owner=ALICE, title="Alice's")
    bobs = alices._replace(user_id=BOB, title="Bob's")
    await store(storage, alices, bobs)
    reader = storage.reader(BOB)
    assert await reader.get(alices.id) == bobs
    assert await reader.list(TaskQuery()) == [bobs]
    assert await storage.reader("carol").get(alices.id) is None
    assert await storage.reader("carol").list(TaskQuery()) == []


async def test_a_reader_sees_only_committed_tasks(storage: Storage, ids: SequentialIds) -> None:
    task = make_task(ids.new_id())
    async with storage.unit_of_work(ALICE) as uow:
        await uow.tasks.add(task)
        assert await storage.reader(ALICE).get(task.id) is None
        assert await storage.reader(ALICE).list(TaskQuery()) == []
        await uow.commit()
    assert await storage.reader(ALICE).get(task.id) == task
