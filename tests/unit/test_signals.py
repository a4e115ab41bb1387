"""Waiting for a user's next change: wakes, missed wakes, shutdown, polling."""

from __future__ import annotations

import asyncio

from adapters.memory import MemoryStorage
from application.principal import Principal
from application.signals import ChangeSignals, poll_heads
from application.sync import FeedQuery
from application.task_service import TaskService
from domain.task import TaskFields
from tests.support import FixedClock, SequentialIds


async def test_a_publish_wakes_only_its_users_waiters_past_what_they_saw() -> None:
    signals = ChangeSignals()
    async with (
        signals.subscribe("alice", after=3) as alice,
        signals.subscribe("bob", after=3) as bob,
    ):
        signals.publish("alice", head=3)
        assert not await alice.wait(0.01)
        signals.publish("alice", head=4)
        assert await alice.wait(0.01)
        assert not await bob.wait(0.01)
        assert signals.waiting() == {"alice": 3, "bob": 3}
    assert signals.waiting() == {}


async def test_a_wake_during_the_read_is_not_lost_by_rearming() -> None:
    signals = ChangeSignals()
    async with signals.subscribe("alice", after=-1) as waiter:
        seen = waiter.wakes
        signals.publish("alice")  # lands while the read that found nothing ran
        waiter.rearm(after=7, wakes_seen=seen)
        assert await waiter.wait(0.01)
        waiter.rearm(after=7, wakes_seen=waiter.wakes)
        assert not await waiter.wait(0.01)


async def test_closing_wakes_every_waiter_and_later_ones_do_not_wait() -> None:
    signals = ChangeSignals()
    async with signals.subscribe("alice", after=0) as waiter:
        signals.close()
        assert await waiter.wait(5)
    async with signals.subscribe("bob", after=0) as later:
        assert await later.wait(5)


async def test_a_held_poll_answers_at_shutdown_with_what_it_has() -> None:
    signals = ChangeSignals()
    service = TaskService(MemoryStorage(), FixedClock(), SequentialIds(), signals=signals)
    alice = Principal("alice")
    first = await service.changes(alice, "me", FeedQuery())
    held = asyncio.create_task(service.changes(alice, "me", FeedQuery(first.next, wait_s=30)))
    await asyncio.sleep(0.05)
    signals.close()
    page = await asyncio.wait_for(held, 1)
    assert page.changes == []
    assert page.has_more is False


async def test_a_held_poll_returns_with_the_commit_that_woke_it() -> None:
    service = TaskService(MemoryStorage(), FixedClock(), SequentialIds())
    alice = Principal("alice")
    first = await service.changes(alice, "me", FeedQuery())
    held = asyncio.create_task(service.changes(alice, "me", FeedQuery(first.next, wait_s=30)))
    await asyncio.sleep(0.05)
    created = await service.create(alice, "me", TaskFields(title="wake"))
    page = await asyncio.wait_for(held, 1)
    assert [change.item for change in page.changes] == [created]


async def test_polling_wakes_a_user_whose_head_moved_elsewhere() -> None:
    """As a store that cannot push does: another process's commit shows in the head."""
    store = MemoryStorage()
    elsewhere = TaskService(store, FixedClock(), SequentialIds())  # signals of its own
    signals = ChangeSignals()
    polling = asyncio.create_task(poll_heads(store, signals, interval_s=0.01))
    try:
        async with signals.subscribe("alice", after=0) as waiter:
            await elsewhere.create(Principal("alice"), "me", TaskFields(title="far away"))
            assert await waiter.wait(1)
    finally:
        polling.cancel()
