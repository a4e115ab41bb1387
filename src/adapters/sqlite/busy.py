"""Waiting for a lock another process holds, on the event loop, within the database timeout."""

from __future__ import annotations

import asyncio

from application.errors import StorageUnavailable

PAUSES_S = (0.0005, 0.005)
"""First and longest pause between two tries: SQLite's own busy handler
sleeps up to 100 ms between tries, and blocks its thread while it does."""


class Deadline:
    """The time left to a try that SQLite answered busy, from the first try on."""

    __slots__ = ("_at", "_pause")

    def __init__(self, timeout_s: float) -> None:
        self._at = asyncio.get_running_loop().time() + timeout_s
        self._pause = PAUSES_S[0]

    @property
    def at(self) -> float:
        return self._at

    async def pause(self, error: Exception) -> None:
        """Sleep before the next try; ``StorageUnavailable`` once the time is up."""
        left = self._at - asyncio.get_running_loop().time()
        if left <= 0:
            raise StorageUnavailable("database is locked") from error
        await asyncio.sleep(min(self._pause, left))
        self._pause = min(self._pause * 2, PAUSES_S[1])
