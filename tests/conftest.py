"""Databases for the tests: SQLite in a temporary folder, PostgreSQL and Citus when reachable.

PostgreSQL comes from ``TEST_DATABASE_URL``; else from testcontainers when a
Docker engine answers; else the PostgreSQL tests skip and say how to run them
(under ``CI=true`` they fail). Citus likewise from ``TEST_CITUS_URL`` or
containers, but it skips under ``CI=true`` too: CI does not install it.
Each test run gets a database of its own, and each test starts with empty tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from adapters.sql.distribution import distributed_tables
from adapters.sql.migrate import upgrade
from adapters.sql.tables import metadata
from tests.support.citus import (
    HOW_TO_RUN_CITUS,
    Cluster,
    citus_containers,
    cluster_at,
    create_database,
    drop_database,
)
from tests.support.databases import (
    APP_TABLES,
    PGBOUNCER_APP_ROLE,
    as_admin,
    as_role,
    asyncpg_url,
    create_role,
    grant_app_tables,
    revoke_app_tables,
    through_pgbouncer,
)
from tests.support.prerequisites import missing_optional_prerequisite, missing_prerequisite

# Scans every response and log line of the run for secrets, tokens,
# tracebacks and SQL (tests/leakscan.py).
pytest_plugins = ["tests.leakscan"]

HOW_TO_RUN_POSTGRES = (
    "PostgreSQL tests need TEST_DATABASE_URL (e.g. "
    "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres) or a running Docker engine"
)


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A URL of a PostgreSQL server where the tests may create databases."""
    configured = os.environ.get("TEST_DATABASE_URL")
    if configured:
        yield asyncpg_url(configured)
        return
    if not _docker_answers():
        missing_prerequisite(HOW_TO_RUN_POSTGRES)
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer("postgres:16-alpine", driver="asyncpg") as container:
        yield container.get_connection_url()


@pytest.fixture(scope="session")
def postgres_database_url(postgres_server_url: str) -> Iterator[str]:
    """A migrated database of this test run's own, dropped at the end."""
    name = f"taskvault_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(as_admin(postgres_server_url, f'CREATE DATABASE "{name}"'))
    url = make_url(postgres_server_url).set(database=name).render_as_string(hide_password=False)
    try:
        asyncio.run(upgrade(url))
        yield url
    finally:
        asyncio.run(as_admin(postgres_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def postgres_url(postgres_database_url: str) -> str:
    """The run's PostgreSQL database with empty tables."""
    engine = create_async_engine(postgres_database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {APP_TABLES}"))
    finally:
        await engine.dispose()
    return postgres_database_url


@pytest.fixture
def pgbouncer_url(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The run's PostgreSQL database through PgBouncer in transaction mode.

    The test's settings say so as an operator's would: ``TASKVAULT_DB_POOLER``.
    """
    url = through_pgbouncer(postgres_url)
    monkeypatch.setenv("TASKVAULT_DB_POOLER", "transaction")
    return url


@pytest.fixture(scope="session")
def citus_cluster() -> Iterator[Cluster]:
    """A Citus cluster where the tests may create databases on every node."""
    configured = os.environ.get("TEST_CITUS_URL")
    if configured:
        yield asyncio.run(cluster_at(asyncpg_url(configured)))
        return
    if not _docker_answers():
        missing_optional_prerequisite(HOW_TO_RUN_CITUS)
    with citus_containers() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def citus_database_url(citus_cluster: Cluster) -> Iterator[str]:
    """A database of this run's own on every node, migrated (and so distributed)
    by ``upgrade`` as the app would; dropped on every node at the end."""
    name = f"taskvault_test_{uuid.uuid4().hex[:12]}"
    try:
        url = asyncio.run(create_database(citus_cluster, name))
        asyncio.run(upgrade(url))
        yield url
    finally:
        asyncio.run(drop_database(citus_cluster, name))


@pytest.fixture
async def citus_url(citus_database_url: str) -> str:
    """The run's Citus database with empty tables.

    DELETE, not TRUNCATE: a distributed TRUNCATE locks every shard on every
    node, ten times the time of deleting a test's few rows.
    """
    # The tables' names come from their metadata, not from any input.
    deletes = [f"DELETE FROM {table.name}" for table in distributed_tables(metadata)]  # noqa: S608
    await as_admin(citus_database_url, *deletes)
    return citus_database_url


@pytest.fixture
async def sqlite_url(tmp_path: Path) -> str:
    """A migrated SQLite database in a fresh folder."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'taskvault.db'}"
    await upgrade(url)
    return url


# A marker per store, so a run can pick stores with -m (`make test-fast`: memory only).
STORES = [
    pytest.param("memory", marks=pytest.mark.memory),
    pytest.param("sqlite", marks=pytest.mark.sqlite),
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("pgbouncer", marks=pytest.mark.postgres),
    pytest.param("citus", marks=pytest.mark.citus),
]


@pytest.fixture(params=STORES)
def database_url(request: pytest.FixtureRequest) -> str:
    """The same test on every store: memory, SQLite, PostgreSQL, PostgreSQL
    through PgBouncer in transaction mode, and Citus."""
    if request.param == "memory":
        return "memory://"
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@contextlib.asynccontextmanager
async def _ordinary_role(url: str) -> AsyncIterator[str]:
    """A URL for a fresh ordinary role with only the grants the app needs."""
    role = f"taskvault_app_{uuid.uuid4().hex[:8]}"
    await as_admin(url, create_role(role), grant_app_tables(role))
    try:
        yield as_role(url, role)
    finally:
        await as_admin(url, revoke_app_tables(role), f"DROP ROLE {role}")


@pytest.fixture
async def app_role_url(postgres_url: str) -> AsyncIterator[str]:
    """A URL for a fresh ordinary role with only the grants the app needs."""
    async with _ordinary_role(postgres_url) as url:
        yield url


@pytest.fixture
async def citus_app_role_url(citus_url: str) -> AsyncIterator[str]:
    """``app_role_url`` on Citus (the coordinator propagates the role and its grants)."""
    async with _ordinary_role(citus_url) as url:
        yield url


@pytest.fixture
async def pgbouncer_app_role_url(postgres_url: str) -> AsyncIterator[str]:
    """``PGBOUNCER_APP_ROLE`` with the app's grants, through PgBouncer."""
    role = PGBOUNCER_APP_ROLE
    url = through_pgbouncer(as_role(postgres_url, role))
    await as_admin(postgres_url, create_role(role, if_missing=True), grant_app_tables(role))
    try:
        yield url
    finally:
        await as_admin(postgres_url, revoke_app_tables(role))
