"""The IdempotencyStore contract: outcomes kept per owner and key, with their transaction.

Every test runs on every store through ``storage``.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from application.ports import IdempotentOutcome, Storage
from tests.contract.reference import ALICE, BASE, BOB, make_task
from tests.support import SequentialIds


def _outcome(
    ids: SequentialIds, *, owner: str = ALICE, age: timedelta = timedelta(0)
) -> IdempotentOutcome:
    task = make_task(ids.new_id(), owner=owner, title="Once", due_at=BASE + timedelta(days=1))
    return IdempotentOutcome(fingerprint="f" * 64, task=task, created_at=BASE - age)


async def _save(storage: Storage, owner: str, key: str, outcome: IdempotentOutcome) -> None:
    async with storage.unit_of_work(owner) as uow:
        assert await uow.idempotency.claim(key)
        await uow.idempotency.save(key, outcome, expire_before=BASE - timedelta(days=1))
        await uow.commit()


async def _find(storage: Storage, owner: str, key: str) -> IdempotentOutcome | None:
    async with storage.unit_of_work(owner) as uow:
        return await uow.idempotency.find(key)


async def test_an_unknown_key_has_no_outcome(storage: Storage) -> None:
    assert await _find(storage, ALICE, "never used") is None


async def test_a_saved_outcome_is_found_in_its_transaction_and_after_commit(
    storage: Storage, ids: SequentialIds
) -> None:
    outcome = _outcome(ids)
    async with storage.unit_of_work(ALICE) as uow:
        assert await uow.idempotency.claim("k")
        await uow.idempotency.save("k", outcome, expire_before=BASE - timedelta(days=1))
        assert await uow.idempotency.find("k") == outcome
        await uow.commit()
    assert await _find(storage, ALICE, "k") == outcome


async def test_an_outcome_not_committed_is_forgotten(storage: Storage, ids: SequentialIds) -> None:
    async with storage.unit_of_work(ALICE) as uow:
        assert await uow.idempotency.claim("k")
        await uow.idempotency.save("k", _outcome(ids), expire_before=BASE)
    assert await _find(storage, ALICE, "k") is None


async def test_keys_are_scoped_to_their_owner(storage: Storage, ids: SequentialIds) -> None:
    alices, bobs = _outcome(ids), _outcome(ids, owner=BOB)
    await _save(storage, ALICE, "same key", alices)
    assert await _find(storage, BOB, "same key") is None
    await _save(storage, BOB, "same key", bobs)
    assert await _find(storage, ALICE, "same key") == alices
    assert await _find(storage, BOB, "same key") == bobs


async def test_saving_drops_the_owners_expired_outcomes_only(
    storage: Storage, ids: SequentialIds
) -> None:
    old, fresh = _outcome(ids, age=timedelta(days=2)), _outcome(ids)
    bobs_old = _outcome(ids, owner=BOB, age=timedelta(days=2))
    await _save(storage, ALICE, "old", old)
    await _save(storage, BOB, "old", bobs_old)
    await _save(storage, ALICE, "fresh", fresh)

    assert await _find(storage, ALICE, "old") is None
    assert await _find(storage, ALICE, "fresh") == fresh
    assert await _find(storage, BOB, "old") == bobs_old


async def test_an_expired_outcome_is_replaced_under_its_key(
    storage: Storage, ids: SequentialIds
) -> None:
    first = _outcome(ids, age=timedelta(hours=30))
    second = _outcome(ids)
    async with storage.unit_of_work(ALICE) as uow:
        assert await uow.idempotency.claim("k")
        await uow.idempotency.save("k", first, expire_before=BASE - timedelta(days=2))
        await uow.commit()
    await _save(storage, ALICE, "k", second)
    assert await _find(storage, ALICE, "k") == second


async def test_a_claim_is_held_until_its_transaction_ends(
    storage: Storage, ids: SequentialIds
) -> None:
    """While one transaction holds a key, another's claim is refused at once, even
    after the first has written (its locks must not stand in the way); or, where
    writers take turns (SQLite, memory), the second waits and is granted once the
    first has ended."""
    first_ended = asyncio.Event()

    async def second_claim() -> tuple[bool, bool]:
        async with storage.unit_of_work(ALICE) as uow:
            return await uow.idempotency.claim("k"), first_ended.is_set()

    async with storage.unit_of_work(ALICE) as first:
        assert await first.idempotency.claim("k")
        assert await first.idempotency.claim("k"), "a transaction may claim its key again"
        await first.tasks.add(make_task(ids.new_id(), title="In flight"))
        turns = await _writers_take_turns(storage)
        second = asyncio.create_task(second_claim())
        await asyncio.sleep(0.2)
        first_ended.set()
    granted, after_first = await asyncio.wait_for(second, timeout=10)
    assert (granted, after_first) == ((True, True) if turns else (False, False))

    async with storage.unit_of_work(ALICE) as later:
        assert await later.idempotency.claim("k")


@pytest.mark.parametrize("owner", [ALICE, BOB])
async def test_a_claim_of_one_owner_leaves_the_others_keys_free(
    storage: Storage, owner: str
) -> None:
    other = BOB if owner == ALICE else ALICE

    async def claim_as_other() -> bool:
        async with storage.unit_of_work(other) as uow:
            return await uow.idempotency.claim("k")

    async with storage.unit_of_work(owner) as uow:
        assert await uow.idempotency.claim("k")
        if not await _writers_take_turns(storage):
            assert await asyncio.wait_for(claim_as_other(), timeout=10)
    assert await claim_as_other()


async def _writers_take_turns(storage: Storage) -> bool:
    """Whether a second unit of work waits for the first to end (SQLite, memory)."""

    async def enter() -> None:
        async with storage.unit_of_work("probe"):
            pass

    probe = asyncio.create_task(enter())
    await asyncio.sleep(0.5)
    if probe.done():
        return False
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    return True
