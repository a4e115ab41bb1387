"""A stop signal wakes waiting feed requests, then reaches the handler that was there."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from types import FrameType

import pytest

from application.signals import ChangeSignals
from entrypoints.http.shutdown import answering_waiters_on_stop


@pytest.fixture
def received() -> Iterator[list[int]]:
    """SIGTERM handled by a function of the test's (as uvicorn's would be), for the test."""
    signals: list[int] = []

    def handler(signum: int, _frame: FrameType | None) -> None:
        signals.append(signum)

    before = signal.signal(signal.SIGTERM, handler)
    try:
        yield signals
    finally:
        signal.signal(signal.SIGTERM, before)


async def test_sigterm_wakes_the_waiters_and_reaches_the_servers_handler(
    received: list[int],
) -> None:
    before = signal.getsignal(signal.SIGTERM)
    signals = ChangeSignals()
    with answering_waiters_on_stop(signals):
        async with signals.subscribe("alice", after=3) as subscription:
            waiting = asyncio.create_task(subscription.wait(30))
            await asyncio.sleep(0)
            signal.raise_signal(signal.SIGTERM)
            assert await asyncio.wait_for(waiting, timeout=2) is True
        assert received == [signal.SIGTERM]
        assert signals.closed
    assert signal.getsignal(signal.SIGTERM) is before


async def test_a_signal_with_its_default_action_keeps_it() -> None:
    before = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        with answering_waiters_on_stop(ChangeSignals()):
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, before)
