"""PostgreSQL units of work on the asyncpg connection beneath SQLAlchemy's pool.

SQLAlchemy owns the engine, the pool and the schema; the statements, built
once with SQLAlchemy Core (``statements.py``), are compiled once for asyncpg
and run on the driver connection. That skips SQLAlchemy's per-statement
execution machinery, which costs several times the query itself on this
service's hot path (see the README's performance section).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from types import TracebackType
from typing import Any

import asyncpg
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from adapters.sqlalchemy import statements as sql
from adapters.sqlalchemy.errors import unavailable
from adapters.sqlalchemy.row_security import USER_SETTING
from application.errors import StorageUnavailable
from application.ports import IdempotentOutcome
from application.queries import TaskQuery
from domain.task import Task

_DIALECT = PGDialect_asyncpg()  # type: ignore[no-untyped-call]


@dataclass(frozen=True, slots=True)
class _Compiled:
    """A statement's asyncpg text and the order of its named parameters."""

    text: str
    names: tuple[str, ...]

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        return [params[name] for name in self.names]


@lru_cache(maxsize=1024)
def _compile(statement: ClauseElement) -> _Compiled:
    compiled = statement.compile(dialect=_DIALECT)
    assert isinstance(compiled, SQLCompiler)
    return _Compiled(str(compiled), tuple(compiled.positiontup or ()))


def _literal(value: str) -> str:
    # Only for the user id in BEGIN's batch; standard_conforming_strings is on
    # (engine.py) and user ids hold no control characters (domain.check_owner).
    if "\x00" in value:
        raise ValueError("user id with NUL")
    return "'" + value.replace("'", "''") + "'"


def begin_batch(user_id: str, *, write: bool) -> str:
    """BEGIN and the row-level-security user in one round trip."""
    mode = "" if write else " READ ONLY"
    return f"BEGIN{mode}; SELECT set_config('{USER_SETTING}', {_literal(user_id)}, true)"


# A transaction-scoped advisory lock per (user, key): a concurrent duplicate
# finds it taken and is told 409 instead of waiting.
_TRY_LOCK = "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))"


class PgTaskRepository:
    def __init__(self, connection: asyncpg.Connection) -> None:
        self._conn = connection

    async def _execute(self, statement: ClauseElement, params: Mapping[str, Any]) -> str:
        compiled = _compile(statement)
        status: str = await self._conn.execute(compiled.text, *compiled.args(params))
        return status

    async def add(self, owner: str, task: Task) -> None:
        if task.user_id != owner:
            raise ValueError("task owner does not match")
        await self._execute(sql.INSERT_TASK, sql.task_row(task))

    async def get(self, owner: str, task_id: uuid.UUID, *, for_update: bool = False) -> Task | None:
        compiled = _compile(sql.SELECT_TASK_FOR_UPDATE if for_update else sql.SELECT_TASK)
        row = await self._conn.fetchrow(
            compiled.text, *compiled.args({"owner": owner, "task_id": task_id})
        )
        return None if row is None else sql.task_from(row)

    async def list(self, owner: str, query: TaskQuery) -> list[Task]:
        compiled = _compile(sql.list_statement(sql.ListShape.of(query)))
        rows = await self._conn.fetch(compiled.text, *compiled.args(sql.list_params(owner, query)))
        return [sql.task_from(row) for row in rows]

    async def update(self, owner: str, task: Task, *, expected_version: int) -> bool:
        if task.user_id != owner:
            return False
        status = await self._execute(
            sql.UPDATE_TASK, sql.update_params(owner, task, expected_version)
        )
        return status == "UPDATE 1"

    async def delete(self, owner: str, task_id: uuid.UUID, *, expected_version: int) -> bool:
        params = {"owner": owner, "task_id": task_id, "expected_version": expected_version}
        return await self._execute(sql.DELETE_TASK, params) == "DELETE 1"


class PgIdempotencyStore:
    def __init__(self, connection: asyncpg.Connection) -> None:
        self._conn = connection

    async def claim(self, owner: str, key: str) -> bool:
        return bool(await self._conn.fetchval(_TRY_LOCK, f"{len(owner)}:{owner}:{key}"))

    async def find(self, owner: str, key: str) -> IdempotentOutcome | None:
        compiled = _compile(sql.SELECT_OUTCOME)
        row = await self._conn.fetchrow(compiled.text, *compiled.args({"owner": owner, "key": key}))
        return None if row is None else sql.outcome_from(row)

    async def save(
        self, owner: str, key: str, outcome: IdempotentOutcome, *, expire_before: datetime
    ) -> None:
        expired = _compile(sql.DELETE_EXPIRED_OUTCOMES)
        await self._conn.execute(
            expired.text, *expired.args({"owner": owner, "expire_before": expire_before})
        )
        upsert = _compile(sql.UPSERT_OUTCOME_POSTGRESQL)
        await self._conn.execute(upsert.text, *upsert.args(sql.outcome_params(owner, key, outcome)))


class PgUnitOfWork:
    """One transaction for one user, with row-level security set for exactly it."""

    tasks: PgTaskRepository
    idempotency: PgIdempotencyStore

    def __init__(self, engine: AsyncEngine, user_id: str, *, write: bool) -> None:
        self._engine = engine
        self._user_id = user_id
        self._write = write
        self._pooled: AsyncConnection | None = None
        self._driver: asyncpg.Connection | None = None
        self._open = False

    @property
    def driver(self) -> asyncpg.Connection:
        """The transaction's asyncpg connection (tests prove what RLS enforces with it)."""
        assert self._driver is not None
        return self._driver

    async def __aenter__(self) -> PgUnitOfWork:
        try:
            self._pooled = await self._engine.connect()
            raw = await self._pooled.get_raw_connection()
            self._driver = raw.driver_connection
            await self.driver.execute(begin_batch(self._user_id, write=self._write))
        except Exception as error:
            mapped = self._mapped(error)
            await self._release(broken=True)
            raise mapped from error
        self._open = True
        self.tasks = PgTaskRepository(self.driver)
        self.idempotency = PgIdempotencyStore(self.driver)
        return self

    async def commit(self) -> None:
        await self.driver.execute("COMMIT")
        # Only now: a COMMIT that failed or timed out leaves the connection in
        # doubt, and ``__aexit__`` must not return it to the pool as it is.
        self._open = False

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        mapped = self._mapped(exc) if isinstance(exc, Exception) else None
        reusable = not self._open
        self._open = False
        try:
            if not reusable and _can_roll_back(exc, mapped):
                reusable = await self._rollback()
        finally:
            await self._release(broken=not reusable)
        if mapped is not None and mapped is not exc:
            raise mapped from exc

    def _mapped(self, error: Exception) -> Exception:
        """``StorageUnavailable`` for an outage, else ``error`` itself.

        Any error on a connection that is now closed is an outage: the server
        went away mid-statement, which asyncpg sometimes reports as an
        ``InternalClientError`` about its protocol state.
        """
        lost = self._driver is not None and self._driver.is_closed()
        if lost and not isinstance(error, StorageUnavailable):
            return StorageUnavailable(type(error).__name__)
        return unavailable(error)

    async def _rollback(self) -> bool:
        try:
            await self.driver.execute("ROLLBACK")
        except Exception:
            return False
        return True

    async def _release(self, *, broken: bool) -> None:
        pooled, driver = self._pooled, self._driver
        self._pooled = self._driver = None
        if pooled is None:
            return
        # A connection left mid-transaction or dead must not go back to the pool.
        if broken:
            # Dropped at once: a graceful close would wait on a server that
            # may not answer (SQLAlchemy allows it 2 s more).
            if driver is not None:
                driver.terminate()
            await pooled.invalidate()
        await pooled.close()


def _can_roll_back(error: BaseException | None, mapped: Exception | None) -> bool:
    """False after an outage or a cancellation.

    The connection is then dead, or mid-statement after a timeout: a ROLLBACK
    would only wait on it again, up to another statement timeout.
    """
    if error is None:
        return True
    return isinstance(error, Exception) and not isinstance(mapped, StorageUnavailable)
