"""``Storage`` and ``UnitOfWork`` over an async SQLAlchemy engine."""

from __future__ import annotations

from types import TracebackType

from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from adapters.sqlalchemy.engine import WRITE_OPTION
from adapters.sqlalchemy.idempotency import SqlIdempotencyStore
from adapters.sqlalchemy.repository import SqlTaskRepository
from adapters.sqlalchemy.row_security import USER_SETTING
from application.errors import StorageUnavailable

_ROLE_BYPASSES_RLS = text(
    "SELECT rolname, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
)
_SET_USER = text(f"SELECT set_config('{USER_SETTING}', :user_id, true)")

_UNAVAILABLE = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    OSError,
    TimeoutError,
)


# SQLSTATE classes that mean "the database cannot serve you now": connection
# exceptions, insufficient resources (too many clients), operator
# intervention (shutdown, cannot connect now, query canceled by timeout).
_UNAVAILABLE_SQLSTATES = ("08", "53", "57")


def _is_unavailable(error: BaseException) -> bool:
    if isinstance(error, sa_exc.DBAPIError):
        sqlstate = getattr(error.orig, "sqlstate", None) or ""
        if error.connection_invalidated or sqlstate.startswith(_UNAVAILABLE_SQLSTATES):
            return True
    return isinstance(error, _UNAVAILABLE)


class SqlUnitOfWork:
    """One transaction on one pooled connection, for one user.

    On PostgreSQL the user is also set for row-level security, for exactly
    this transaction (``set_config(..., true)``).
    """

    tasks: SqlTaskRepository
    idempotency: SqlIdempotencyStore

    def __init__(self, engine: AsyncEngine, user_id: str, *, write: bool) -> None:
        self._engine = engine
        self._user_id = user_id
        self._write = write
        self._conn: AsyncConnection | None = None

    async def __aenter__(self) -> SqlUnitOfWork:
        try:
            conn = await self._engine.connect()
        except Exception as error:
            if _is_unavailable(error):
                raise StorageUnavailable(type(error).__name__) from error
            raise
        self._conn = conn
        try:
            if self._write:
                await conn.execution_options(**{WRITE_OPTION: True})
            await conn.begin()
            if self._engine.dialect.name == "postgresql":
                await conn.execute(_SET_USER, {"user_id": self._user_id})
        except BaseException as error:
            await self._release()
            if isinstance(error, Exception) and _is_unavailable(error):
                raise StorageUnavailable(type(error).__name__) from error
            raise
        self.tasks = SqlTaskRepository(conn)
        self.idempotency = SqlIdempotencyStore(conn)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._release()
        if exc is not None and _is_unavailable(exc):
            raise StorageUnavailable(type(exc).__name__) from exc

    @property
    def connection(self) -> AsyncConnection:
        """The transaction's connection, for tests that prove what RLS enforces."""
        assert self._conn is not None
        return self._conn

    async def commit(self) -> None:
        await self.connection.commit()

    async def _release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            await conn.close()
        except Exception:
            # Closing a broken connection rolls back or invalidates it; the
            # error that broke it is the one worth reporting.
            await conn.invalidate()


class SqlStorage:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    def unit_of_work(self, user_id: str, *, write: bool) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.engine, user_id, write=write)

    async def ping(self) -> None:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as error:
            raise StorageUnavailable(type(error).__name__) from error

    async def close(self) -> None:
        await self.engine.dispose()

    async def warnings(self) -> list[str]:
        if self.engine.dialect.name != "postgresql":
            return []
        try:
            async with self.engine.connect() as conn:
                row = (await conn.execute(_ROLE_BYPASSES_RLS)).first()
        except Exception as error:
            return [f"could not check the database role: {type(error).__name__}"]
        if row is not None and (row.rolsuper or row.rolbypassrls):
            return [
                f"database role {row.rolname!r} is a superuser or has BYPASSRLS: "
                "row-level security does not apply to it; connect as an ordinary role"
            ]
        return []
