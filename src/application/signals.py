"""Requests of this process that wait for a user's next change (the feed's ``wait``).

Waiting costs an event and a timer per request, nothing per tick: commits in
this process wake their user's waiters directly; a store's watch
(``Storage.watch``) reports commits made elsewhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING

from application.sync import ChangeNumber

if TYPE_CHECKING:
    from application.ports import TaskStore


class Subscription:
    """One waiting request: woken by a change of its user past ``after``."""

    __slots__ = ("_event", "_signals", "after", "user", "wakes")

    def __init__(self, signals: ChangeSignals, user: str, after: int) -> None:
        self._signals = signals
        self._event = asyncio.Event()
        self.user = user
        self.after = after
        self.wakes = 0

    async def __aenter__(self) -> Subscription:
        self._signals._add(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._signals._remove(self)

    def wake(self) -> None:
        self.wakes += 1
        self._event.set()

    def rearm(self, after: int, wakes_seen: int) -> None:
        """Wait again, for a change past ``after``, unless a wake came after
        ``wakes_seen`` (during the read that found nothing): then at once."""
        self.after = after
        if self.wakes == wakes_seen:
            self._event.clear()

    async def wait(self, timeout_s: float) -> bool:
        """True when woken before ``timeout_s`` (or at shutdown)."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._event.wait()
        except TimeoutError:
            return False
        return True


class ChangeSignals:
    """Waiting requests by user. Closed at shutdown: every waiter wakes, and
    later ones do not wait."""

    def __init__(self) -> None:
        self._by_user: dict[str, set[Subscription]] = {}
        self._closed = False

    def subscribe(self, user: str, after: int) -> Subscription:
        return Subscription(self, user, after)

    def publish(self, user: str, head: int | None = None) -> None:
        """``user`` committed a change (numbered up to ``head``, when known)."""
        for subscription in self._by_user.get(user, ()):
            if head is None or head > subscription.after:
                subscription.wake()

    def waiting(self) -> dict[str, int]:
        """Each user with waiters, and the lowest change number they have seen."""
        return {user: min(s.after for s in subs) for user, subs in self._by_user.items()}

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
        for subscriptions in self._by_user.values():
            for subscription in subscriptions:
                subscription.wake()

    def _add(self, subscription: Subscription) -> None:
        self._by_user.setdefault(subscription.user, set()).add(subscription)
        if self._closed:
            subscription.wake()

    def _remove(self, subscription: Subscription) -> None:
        subscriptions = self._by_user.get(subscription.user)
        if subscriptions is None:
            return
        subscriptions.discard(subscription)
        if not subscriptions:
            del self._by_user[subscription.user]


async def poll_heads(
    store: TaskStore,
    signals: ChangeSignals,
    *,
    interval_s: float,
    changed: Callable[[], Awaitable[bool]] | None = None,
) -> None:
    """Watch a store that cannot push: every ``interval_s``, while requests
    wait, read each waiting user's head and wake those past what they saw.

    ``changed``: a cheap probe that says whether anything at all committed
    since its last call; when it says no, no head is read.
    """
    while True:
        await asyncio.sleep(interval_s)
        waiting = signals.waiting()
        if not waiting or (changed is not None and not await changed()):
            continue
        for user, after in waiting.items():
            read = await store.reader(user).changes(ChangeNumber.after_all_of(after), 0)
            if read.head > after:
                signals.publish(user, read.head)
