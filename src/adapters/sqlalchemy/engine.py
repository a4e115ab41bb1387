"""Engine factory: one place that knows each dialect's connection settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from adapters.sql.sqlite import PRAGMAS

WRITE_OPTION = "taskvault_write"
"""Execution option that marks a transaction as a writer (SQLite: BEGIN IMMEDIATE)."""


def create_engine(url: str, *, timeout_s: float = 5.0, pool_size: int = 10) -> AsyncEngine:
    """An engine for a ``sqlite+aiosqlite`` or ``postgresql+asyncpg`` URL."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, parsed.database, timeout_s, pool_size)
    if parsed.get_backend_name() == "postgresql":
        engine = create_async_engine(
            url,
            pool_size=pool_size,
            # No overflow: an overflow connection is closed when returned, so
            # under load the pool would open and close sessions constantly.
            max_overflow=0,
            pool_timeout=timeout_s,
            connect_args={
                "timeout": timeout_s,
                "command_timeout": timeout_s,
                "server_settings": {"application_name": "taskvault"},
            },
        )
        _replace_closed_connections(engine)
        return engine
    raise ValueError(f"unsupported database URL scheme: {parsed.drivername}")


_NEW = "taskvault_new"


def _replace_closed_connections(engine: AsyncEngine) -> None:
    """Swap a pooled connection the server closed for a fresh one, at checkout.

    After a PostgreSQL restart every pooled connection is dead; asyncpg
    already knows (the server's goodbye closed the socket), so ``is_closed()``
    finds them without the round trip ``pool_pre_ping`` would cost on every
    checkout. A connection lost without notice fails its first statement
    instead: a 503, and the unit of work invalidates it.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(_dbapi_connection: Any, record: Any) -> None:
        record.info[_NEW] = True

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        # A brand-new connection is not checked: should the server close it
        # already, raising again would exhaust the pool's two attempts with an
        # error that is no outage; its first statement fails (503) instead.
        if record.info.pop(_NEW, False):
            return
        if dbapi_connection.driver_connection.is_closed():
            raise sa_exc.DisconnectionError("connection closed by the server")


def _sqlite_engine(url: str, database: str | None, timeout_s: float, pool_size: int) -> AsyncEngine:
    pooled: dict[str, Any] = {}
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        # A fixed set of connections, as on PostgreSQL: overflow connections
        # (ten more by default) were opened, set up with their PRAGMAs and
        # closed again all the time under load.
        pooled = {"pool_size": pool_size, "max_overflow": 0}
    # The same bound on waiting for a pooled connection as on a lock (the
    # pool's own default would be 30 s).
    engine = create_async_engine(
        url, pool_timeout=timeout_s, connect_args={"timeout": timeout_s}, **pooled
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # We issue BEGIN ourselves (below), so the driver must not.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in PRAGMAS:
            cursor.execute(pragma)
        cursor.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # A writer takes the write lock up front: a deferred transaction that
        # upgrades later can fail with "database is locked" instead of waiting.
        # A reader sends no BEGIN: each of its statements reads one snapshot
        # of its own (WAL), and the use cases read with one statement; that
        # saves three hand-offs to aiosqlite's thread of the eight a read took.
        if connection.get_execution_options().get(WRITE_OPTION, False):
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
