"""Apply the Alembic migrations that ship inside this package."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

SCRIPT_LOCATION = Path(__file__).with_name("migrations")

_INSUFFICIENT_PRIVILEGE = "42501"


class MigrationNotPermitted(Exception):
    """The connected role may not change the schema (PostgreSQL: insufficient privilege)."""


def _not_permitted(error: BaseException) -> bool:
    orig = getattr(error, "orig", None)
    return _INSUFFICIENT_PRIVILEGE in (
        getattr(error, "sqlstate", None),
        getattr(orig, "sqlstate", None),
        getattr(orig, "pgcode", None),
    )


def migration_engine(url: str) -> AsyncEngine:
    """An engine for one migration run: a connection at a time, none kept."""
    parsed = make_url(url)
    database = parsed.database or ":memory:"
    if parsed.get_backend_name() == "sqlite" and not database.startswith((":memory:", "file:")):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    return create_async_engine(url, poolclass=NullPool)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    # Escaped: Config interpolates %, which URL-encoded passwords contain.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


async def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` up to ``revision``; ``MigrationNotPermitted``
    when the role may not read or change the schema's version."""
    engine = migration_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_upgrade, url, revision)
    except Exception as error:
        if _not_permitted(error):
            raise MigrationNotPermitted(str(make_url(url).username)) from error
        raise
    finally:
        await engine.dispose()


async def downgrade(url: str, revision: str) -> None:
    engine = migration_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_downgrade, url, revision)
    finally:
        await engine.dispose()


def _upgrade(connection: Connection, url: str, revision: str) -> None:
    config = alembic_config(url)
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def _downgrade(connection: Connection, url: str, revision: str) -> None:
    config = alembic_config(url)
    config.attributes["connection"] = connection
    command.downgrade(config, revision)
