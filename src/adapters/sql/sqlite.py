"""What both SQLite stores set on a connection, and how they notice other processes' commits."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable

PRAGMAS = (
    # Readers never wait on the writer, nor it on them.
    "PRAGMA journal_mode=WAL",
    # A commit that returned is on disk, even after a power cut.
    "PRAGMA synchronous=FULL",
)

PROBE_INTERVAL_S = 0.1
"""How often, while requests wait, SQLite's commit counter is read: microseconds
each, and a tenth of a second leaves most of the one second a wake may take to
a loaded machine."""


def data_version(probe: sqlite3.Connection) -> Callable[[], Awaitable[bool]]:
    """A probe: has any other connection committed since the probe last ran?

    ``PRAGMA data_version`` reads shared memory, microseconds: run inline.
    """
    last = probe.execute("PRAGMA data_version").fetchone()[0]

    async def changed() -> bool:
        nonlocal last
        current = probe.execute("PRAGMA data_version").fetchone()[0]
        changed, last = current != last, current
        return bool(changed)

    return changed
