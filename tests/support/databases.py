"""PostgreSQL for the tests: statements as the admin, ordinary roles, PgBouncer's URL."""

from __future__ import annotations

import os

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from adapters.sql.tables import metadata
from tests.support.prerequisites import missing_prerequisite

HOW_TO_RUN_PGBOUNCER = (
    "PgBouncer tests need TEST_PGBOUNCER_URL: a PgBouncer in pool_mode = transaction in front "
    "of TEST_DATABASE_URL's server, trusting the role postgres (.ci/run starts one)"
)

PGBOUNCER_APP_ROLE = "taskvault_pgbouncer_app"
"""An ordinary role that PgBouncer's auth_file lists (.ci/run writes it)."""

APP_TABLES = ", ".join(metadata.tables)
"""Every table of the schema: the app reads and writes them all."""


def asyncpg_url(url: str) -> str:
    """``url`` in the ``postgresql+asyncpg://`` form the settings use."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


async def as_admin(url: str, *statements: str) -> None:
    """Run ``statements`` one by one, each committed, as the URL's (super)user."""
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            for statement in statements:
                await conn.execute(text(statement))
    finally:
        await engine.dispose()


def create_role(role: str, *, if_missing: bool = False) -> str:
    """A login role without SUPERUSER or BYPASSRLS, which row-level security binds."""
    create = f"CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS"
    if not if_missing:
        return create
    return f"DO $$ BEGIN {create}; EXCEPTION WHEN duplicate_object THEN NULL; END $$"


def grant_app_tables(role: str) -> str:
    """The grants the app needs, and no more (no DDL, no migrations)."""
    return f"GRANT SELECT, INSERT, UPDATE, DELETE ON {APP_TABLES} TO {role}"


def revoke_app_tables(role: str) -> str:
    return f"REVOKE ALL ON {APP_TABLES} FROM {role}"


def as_role(url: str, role: str) -> str:
    return make_url(url).set(username=role, password=None).render_as_string()


def through_pgbouncer(url: str) -> str:
    """``url`` with the host and port of ``TEST_PGBOUNCER_URL``."""
    bouncer = os.environ.get("TEST_PGBOUNCER_URL")
    if not bouncer:
        missing_prerequisite(HOW_TO_RUN_PGBOUNCER)
    at = make_url(asyncpg_url(bouncer))
    return make_url(url).set(host=at.host, port=at.port).render_as_string(hide_password=False)
