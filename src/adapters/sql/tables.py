"""The schema as SQLAlchemy Core tables; Alembic migrations create it.

The ``tasks`` columns derive from ``domain.task_shape.TASK_FIELDS``: one
column per field, of the type its kind maps to here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
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
from sqlalchemy.types import DateTime, TypeDecorator, TypeEngine

from domain.task import OWNER_MAX_LENGTH, TITLE_MAX_LENGTH
from domain.task_shape import TASK_FIELDS, Kind


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes through SQLAlchemy on every dialect (SQLite stores
    them naive). asyncpg, used without SQLAlchemy's execution, returns
    ``timestamptz`` values as aware UTC datetimes itself."""

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
TITLE_TYPE = String(TITLE_MAX_LENGTH).with_variant(
    String(TITLE_MAX_LENGTH, collation="C"), "postgresql"
)

COLUMN_TYPES: dict[Kind, TypeEngine[Any] | type[TypeEngine[Any]]] = {
    Kind.ID: Uuid(as_uuid=True),
    Kind.OWNER: String(OWNER_MAX_LENGTH),
    Kind.TITLE: TITLE_TYPE,
    Kind.TEXT: Text,
    Kind.FLAG: Boolean,
    # By rank, so that the priority sort is a plain index order.
    Kind.PRIORITY: SmallInteger,
    Kind.INSTANT: UTCDateTime,
    Kind.VERSION: Integer,
}

metadata = MetaData()

tasks = Table(
    "tasks",
    metadata,
    *(Column(f.name, COLUMN_TYPES[f.kind], nullable=f.nullable) for f in TASK_FIELDS),
    # Case-folded title and description, for ``q``: see application.queries.search_key.
    Column("search_text", Text, nullable=False),
    # The number of the transaction that last changed the task (application.sync).
    Column("change_seq", BigInteger, nullable=False, server_default="0"),
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

task_tombstones = Table(
    "task_tombstones",
    metadata,
    Column("user_id", COLUMN_TYPES[Kind.OWNER], nullable=False),
    Column("id", COLUMN_TYPES[Kind.ID], nullable=False),
    Column("change_seq", BigInteger, nullable=False),
    Column("deleted_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("user_id", "id", name="task_tombstones_pkey"),
)
"""Deleted tasks, for the change feed, until the retention horizon."""

sync_heads = Table(
    "sync_heads",
    metadata,
    Column("user_id", COLUMN_TYPES[Kind.OWNER], nullable=False),
    Column("change_seq", BigInteger, nullable=False),
    PrimaryKeyConstraint("user_id", name="sync_heads_pkey"),
)
"""Each user's last change number. A write transaction takes the next one
first and holds the row until it commits: a user's commits are in number order."""
