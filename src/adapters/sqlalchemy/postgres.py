"""PostgreSQL units of work on asyncpg connections (``pool.PgPool``).

SQLAlchemy owns the engine and the schema; the statements, built once with
SQLAlchemy Core (``statements.py``), are compiled once for asyncpg and run on
the driver connection. That skips SQLAlchemy's per-statement
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
from sqlalchemy import Select, String, bindparam, func, literal_column, select, true
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.visitors import ExternallyTraversible, replacement_traverse

from adapters.sqlalchemy import statements as sql
from adapters.sqlalchemy.errors import unavailable
from adapters.sqlalchemy.pool import PgPool
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


def _compiled(statement: ClauseElement) -> _Compiled:
    compiled = statement.compile(dialect=_DIALECT)
    assert isinstance(compiled, SQLCompiler)
    return _Compiled(str(compiled), tuple(compiled.positiontup or ()))


@lru_cache(maxsize=1024)
def _compile(statement: ClauseElement) -> _Compiled:
    """``statement`` compiled for asyncpg, once: statements are module constants."""
    return _compiled(statement)


@lru_cache(maxsize=1024)
def _as_owner(statement: Select[Any], shape: sql.ListShape | None = None) -> _Compiled:
    """``statement``, a read naming ``:owner``, with row-level security set in it.

    A read outside a transaction is then one round trip instead of three
    (BEGIN with set_config, the read, ROLLBACK). A MATERIALIZED CTE sets the
    user and the read takes its owner from the CTE through a LATERAL
    reference: in any plan PostgreSQL must produce the CTE's row, and so set
    the user, before it scans a task (OFFSET 0 keeps the planner from
    flattening the subquery into a join it could order the other way). Set
    with is_local, the user lasts for this statement's implicit transaction
    only. ``shape`` orders the rows of a list again outside the subquery.
    """
    owner = (
        select(
            func.set_config(
                literal_column(f"'{USER_SETTING}'"), bindparam("owner", type_=String), true()
            ).label("uid")
        )
        .cte("owner")
        .prefix_with("MATERIALIZED")
    )

    def from_owner(element: ExternallyTraversible, **_kw: Any) -> ExternallyTraversible | None:
        if isinstance(element, BindParameter) and element.key == "owner":
            return owner.c.uid
        return None

    fenced = replacement_traverse(statement.offset(literal_column("0")), {}, from_owner)
    assert isinstance(fenced, Select)
    task = fenced.lateral("task")
    scoped = select(task).select_from(owner).join(task, true())
    if shape is not None:
        scoped = scoped.order_by(*sql.list_order(shape, task.c))
    # Not through _compile: this statement is new at every call, and the
    # cache around this function already keeps its compiled form.
    return _compiled(scoped)


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


class _Session:
    """A unit of work's connection, and its transaction once a statement needs one."""

    __slots__ = ("_user_id", "_write", "connection", "open")

    def __init__(self, connection: asyncpg.Connection, user_id: str, *, write: bool) -> None:
        self.connection = connection
        self.open = False
        self._user_id = user_id
        self._write = write

    async def transaction(self) -> asyncpg.Connection:
        """The connection inside the transaction, begun now (with the user set) if need be."""
        if not self.open:
            await self.connection.execute(begin_batch(self._user_id, write=self._write))
            self.open = True
        return self.connection


class PgTaskRepository:
    """Tasks on one connection: a plain read is one statement of its own,
    anything else runs in the unit of work's transaction."""

    def __init__(self, session: _Session) -> None:
        self._session = session

    async def _execute(self, statement: ClauseElement, params: Mapping[str, Any]) -> str:
        conn = await self._session.transaction()
        compiled = _compile(statement)
        status: str = await conn.execute(compiled.text, *compiled.args(params))
        return status

    async def add(self, owner: str, task: Task) -> None:
        if task.user_id != owner:
            raise ValueError("task owner does not match")
        await self._execute(sql.INSERT_TASK, sql.task_row(task))

    async def get(self, owner: str, task_id: uuid.UUID, *, for_update: bool = False) -> Task | None:
        params = {"owner": owner, "task_id": task_id}
        if for_update:
            conn = await self._session.transaction()
            compiled = _compile(sql.SELECT_TASK_FOR_UPDATE)
        else:
            conn = self._session.connection
            compiled = _as_owner(sql.SELECT_TASK)
        row = await conn.fetchrow(compiled.text, *compiled.args(params))
        return None if row is None else sql.task_from(row)

    async def list(self, owner: str, query: TaskQuery) -> list[Task]:
        shape = sql.ListShape.of(query)
        compiled = _as_owner(sql.list_statement(shape), shape)
        rows = await self._session.connection.fetch(
            compiled.text, *compiled.args(sql.list_params(owner, query))
        )
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
    def __init__(self, session: _Session) -> None:
        self._session = session

    async def claim(self, owner: str, key: str) -> bool:
        conn = await self._session.transaction()
        return bool(await conn.fetchval(_TRY_LOCK, f"{len(owner)}:{owner}:{key}"))

    async def find(self, owner: str, key: str) -> IdempotentOutcome | None:
        conn = await self._session.transaction()
        compiled = _compile(sql.SELECT_OUTCOME)
        row = await conn.fetchrow(compiled.text, *compiled.args({"owner": owner, "key": key}))
        return None if row is None else sql.outcome_from(row)

    async def save(
        self, owner: str, key: str, outcome: IdempotentOutcome, *, expire_before: datetime
    ) -> None:
        conn = await self._session.transaction()
        expired = _compile(sql.DELETE_EXPIRED_OUTCOMES)
        await conn.execute(
            expired.text, *expired.args({"owner": owner, "expire_before": expire_before})
        )
        upsert = _compile(sql.UPSERT_OUTCOME_POSTGRESQL)
        await conn.execute(upsert.text, *upsert.args(sql.outcome_params(owner, key, outcome)))


class PgUnitOfWork:
    """One transaction for one user, with row-level security set for exactly it.

    The transaction begins at the first statement that needs one: a unit of
    work that only reads with single statements (``_as_owner``) never sends
    BEGIN, COMMIT or ROLLBACK.
    """

    tasks: PgTaskRepository
    idempotency: PgIdempotencyStore

    def __init__(self, pool: PgPool, user_id: str, *, write: bool) -> None:
        self._pool = pool
        self._user_id = user_id
        self._write = write
        self._session: _Session | None = None

    @property
    def driver(self) -> asyncpg.Connection:
        """The unit of work's asyncpg connection."""
        assert self._session is not None
        return self._session.connection

    async def session(self) -> asyncpg.Connection:
        """The connection, in this unit of work's transaction (tests prove what RLS
        enforces with it)."""
        assert self._session is not None
        return await self._session.transaction()

    async def __aenter__(self) -> PgUnitOfWork:
        try:
            connection = await self._pool.acquire()
        except Exception as error:
            raise unavailable(error) from error
        session = self._session = _Session(connection, self._user_id, write=self._write)
        self.tasks = PgTaskRepository(session)
        self.idempotency = PgIdempotencyStore(session)
        return self

    async def commit(self) -> None:
        session = self._session
        assert session is not None
        if session.open:
            await session.connection.execute("COMMIT")
        # Only now: a COMMIT that failed or timed out leaves the connection in
        # doubt, and ``__aexit__`` must not return it to the pool as it is.
        session.open = False

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session, self._session = self._session, None
        assert session is not None
        mapped = _mapped(exc, session.connection) if isinstance(exc, Exception) else None
        reusable = _reusable_after(exc, mapped)
        try:
            if reusable and session.open:
                reusable = await _rolled_back(session.connection)
        finally:
            # A connection left mid-transaction or dead must not go back to
            # the pool as it is: dropped at once, since a graceful close would
            # wait on a server that may not answer. The pool opens a new one.
            if not reusable:
                session.connection.terminate()
            self._pool.release(session.connection)
        if mapped is not None and mapped is not exc:
            raise mapped from exc


def _mapped(error: Exception, connection: asyncpg.Connection) -> Exception:
    """``StorageUnavailable`` for an outage, else ``error`` itself.

    Any error on a connection that is now closed is an outage: the server
    went away mid-statement, which asyncpg sometimes reports as an
    ``InternalClientError`` about its protocol state.
    """
    if connection.is_closed() and not isinstance(error, StorageUnavailable):
        return StorageUnavailable(type(error).__name__)
    return unavailable(error)


async def _rolled_back(connection: asyncpg.Connection) -> bool:
    try:
        await connection.execute("ROLLBACK")
    except Exception:
        return False
    return True


def _reusable_after(error: BaseException | None, mapped: Exception | None) -> bool:
    """False after an outage or a cancellation.

    The connection is then dead, or mid-statement after a timeout: a ROLLBACK
    would only wait on it again, up to another statement timeout, and it must
    not go back to the pool even when no transaction was open.
    """
    if error is None:
        return True
    return isinstance(error, Exception) and not isinstance(mapped, StorageUnavailable)
