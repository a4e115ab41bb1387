"""Which asyncpg errors mean "unavailable now, retry later" (503)."""

from __future__ import annotations

import asyncpg

from adapters.sql.unavailable import is_unavailable_sqlstate
from application.errors import StorageUnavailable

_UNAVAILABLE_TYPES = (
    asyncpg.InterfaceError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    OSError,
    TimeoutError,
)


def unavailable(error: Exception, connection: asyncpg.Connection | None = None) -> Exception:
    """``StorageUnavailable`` for an outage, else ``error`` itself.

    Any error on a connection that is now closed is an outage: the server
    went away mid-statement, which asyncpg sometimes reports as an
    ``InternalClientError`` about its protocol state.
    """
    if isinstance(error, StorageUnavailable):
        return error
    lost = connection is not None and connection.is_closed()
    if lost or is_unavailable_sqlstate(getattr(error, "sqlstate", None)):
        return StorageUnavailable(type(error).__name__)
    if isinstance(error, _UNAVAILABLE_TYPES):
        return StorageUnavailable(type(error).__name__)
    return error
