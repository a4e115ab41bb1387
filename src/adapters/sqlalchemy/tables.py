"""The schema as SQLAlchemy Core tables; Alembic migrations create it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Dialect,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    Uuid,
)
from sqlalchemy.types import DateTime, TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every dialect (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# Code-point order for titles on every store, so that sorting and cursors
# agree between PostgreSQL, SQLite and memory.
TITLE_TYPE = String(200).with_variant(String(200, collation="C"), "postgresql")

metadata = MetaData()

tasks = Table(
    "tasks",
    metadata,
    Column("user_id", String(255), nullable=False),
    Column("id", Uuid(as_uuid=True), nullable=False),
    Column("title", TITLE_TYPE, nullable=False),
    Column("description", Text, nullable=True),
    Column("completed", Boolean, nullable=False),
    Column("priority", SmallInteger, nullable=False),
    Column("due_at", UTCDateTime, nullable=True),
    Column("completed_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("version", Integer, nullable=False),
    # Case-folded title and description, for ``q``: see application.queries.search_key.
    Column("search_text", Text, nullable=False),
    PrimaryKeyConstraint("user_id", "id", name="tasks_pkey"),
    CheckConstraint("priority IN (1, 2, 3)", name="tasks_priority_rank"),
    CheckConstraint("version >= 1", name="tasks_version_positive"),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("user_id", String(255), nullable=False),
    Column("key", String(255), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("task", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("user_id", "key", name="idempotency_keys_pkey"),
)
