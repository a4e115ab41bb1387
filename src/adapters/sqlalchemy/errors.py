"""Which database errors mean "unavailable now, retry later" (503)."""

from __future__ import annotations

import asyncpg
from sqlalchemy import exc as sa_exc

from application.errors import StorageUnavailable

# SQLSTATE classes that mean the database cannot serve us now: connection
# exceptions, insufficient resources (too many clients), operator
# intervention (shutdown, cannot connect now, query canceled by timeout).
_UNAVAILABLE_SQLSTATES = ("08", "53", "57")

_UNAVAILABLE_TYPES = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    OSError,
    TimeoutError,
)


def is_unavailable(error: BaseException) -> bool:
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    sqlstate = getattr(error, "sqlstate", None) or getattr(
        getattr(error, "orig", None), "sqlstate", None
    )
    if isinstance(sqlstate, str) and sqlstate.startswith(_UNAVAILABLE_SQLSTATES):
        return True
    return isinstance(error, _UNAVAILABLE_TYPES)


def unavailable(error: Exception) -> Exception:
    """``StorageUnavailable`` for an outage, else ``error`` itself."""
    if isinstance(error, StorageUnavailable) or not is_unavailable(error):
        return error
    return StorageUnavailable(type(error).__name__)
