"""Which errors from SQLAlchemy and its drivers mean "unavailable now" (503)."""

from __future__ import annotations

import asyncpg
from sqlalchemy import exc as sa_exc

from adapters.sql.unavailable import is_unavailable_sqlstate
from application.errors import StorageUnavailable

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
    return is_unavailable_sqlstate(sqlstate) or isinstance(error, _UNAVAILABLE_TYPES)


def unavailable(error: Exception) -> Exception:
    """``StorageUnavailable`` for an outage, else ``error`` itself."""
    if isinstance(error, StorageUnavailable) or not is_unavailable(error):
        return error
    return StorageUnavailable(type(error).__name__)
