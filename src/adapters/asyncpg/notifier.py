"""Telling every instance's LISTEN which users committed, after the commits.

A NOTIFY inside a write transaction makes its COMMIT take PostgreSQL's one
notification-queue lock and hold it through the commit's WAL flush: every
notifying commit on the server then flushes alone, in turn, and group
commit is lost (in pgbench the update function ran at about 2,160 calls/s
with its NOTIFY and 3,120 without). Here the writes commit without it,
and the users they changed go out afterwards, many to a NOTIFY: each batch
gathers for a few milliseconds, and one store has at most one NOTIFY in
flight, so under load a batch grows instead of the number of NOTIFYs.

A wake-up is a hint, never data: a waiter re-reads the feed when woken and
at the end of its wait anyway. So a batch that cannot be sent (the database
is away), or that a crash loses between a commit and its NOTIFY, makes
other instances' waiters answer at the end of their wait, not wrongly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator

from adapters.asyncpg.connections import fetch_alone
from adapters.asyncpg.pool import PgPool

log = logging.getLogger("taskvault.storage")

CHANNEL = "taskvault_changes"
"""PostgreSQL's NOTIFY channel of commits."""

SEPARATOR = "\n"
"""Between the user ids of one payload: no user id holds a control character
(``domain.task.check_owner``)."""

PAYLOAD_MAX_BYTES = 7_900
"""PostgreSQL refuses a payload of 8,000 bytes or more."""

WINDOW_S = 0.005
"""How long the first commit of a batch waits for others to join it."""

# A transaction of its own that writes nothing: it takes no transaction id,
# so its commit writes and flushes no WAL.
_SEND = "SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload"


def payloads(users: Iterable[str]) -> Iterator[str]:
    """``users`` joined by ``SEPARATOR`` into payloads PostgreSQL accepts."""
    batch: list[str] = []
    size = 0
    for user in users:
        length = len(user.encode()) + len(SEPARATOR)
        if batch and size + length > PAYLOAD_MAX_BYTES:
            yield SEPARATOR.join(batch)
            batch, size = [], 0
        batch.append(user)
        size += length
    if batch:
        yield SEPARATOR.join(batch)


def users_in(payload: str) -> list[str]:
    """The users a payload names (one, from a NOTIFY of an older release)."""
    return payload.split(SEPARATOR)


class CommitNotifier:
    """Sends the users whose commits ``committed`` is told of, in batches."""

    def __init__(self, pool: PgPool) -> None:
        self._pool = pool
        self._pending: dict[str, None] = {}
        self._sender: asyncio.Task[None] | None = None

    def committed(self, user: str) -> None:
        """``user``'s transaction committed a change; other instances will hear."""
        self._pending[user] = None
        if self._sender is None:
            self._sender = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        try:
            while self._pending:
                await asyncio.sleep(WINDOW_S)
                users, self._pending = list(self._pending), {}
                try:
                    await fetch_alone(self._pool, _SEND, CHANNEL, list(payloads(users)))
                except Exception as error:
                    log.warning(
                        "could not tell other instances of %d users' commits: %s",
                        len(users),
                        type(error).__name__,
                    )
        finally:
            self._sender = None

    async def flush(self) -> None:
        """Return once what is pending has been sent (or given up on)."""
        if self._sender is not None:
            await asyncio.shield(self._sender)
