"""``IdempotencyStore`` over SQLAlchemy: outcomes live beside the tasks they created."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.sqlalchemy.tables import idempotency_keys
from application.ports import IdempotentOutcome
from domain.task import Priority, Task

# A transaction-scoped advisory lock per (user, key): a concurrent duplicate
# sees it taken and is told 409 instead of waiting.
_TRY_LOCK = text("SELECT pg_try_advisory_xact_lock(hashtextextended(:name, 0))")


class SqlIdempotencyStore:
    def __init__(self, connection: AsyncConnection) -> None:
        self._conn = connection

    async def claim(self, owner: str, key: str) -> bool:
        if self._conn.dialect.name != "postgresql":
            # SQLite writers already run one at a time (BEGIN IMMEDIATE).
            return True
        name = f"{len(owner)}:{owner}:{key}"
        return bool((await self._conn.execute(_TRY_LOCK, {"name": name})).scalar_one())

    async def find(self, owner: str, key: str) -> IdempotentOutcome | None:
        stmt = select(
            idempotency_keys.c.fingerprint, idempotency_keys.c.task, idempotency_keys.c.created_at
        ).where(idempotency_keys.c.user_id == owner, idempotency_keys.c.key == key)
        row = (await self._conn.execute(stmt)).first()
        if row is None:
            return None
        return IdempotentOutcome(row.fingerprint, _task_from_json(row.task), row.created_at)

    async def save(
        self, owner: str, key: str, outcome: IdempotentOutcome, *, expire_before: datetime
    ) -> None:
        await self._conn.execute(
            delete(idempotency_keys).where(
                idempotency_keys.c.user_id == owner, idempotency_keys.c.created_at < expire_before
            )
        )
        dialect: Any = postgresql if self._conn.dialect.name == "postgresql" else sqlite
        values = {
            "user_id": owner,
            "key": key,
            "fingerprint": outcome.fingerprint,
            "task": _task_to_json(outcome.task),
            "created_at": outcome.created_at,
        }
        stmt = dialect.insert(idempotency_keys).values(values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["user_id", "key"],
            set_={name: stmt.excluded[name] for name in ("fingerprint", "task", "created_at")},
        )
        await self._conn.execute(stmt)


def _task_to_json(task: Task) -> str:
    def when(value: datetime | None) -> str | None:
        return None if value is None else value.isoformat()

    return json.dumps(
        {
            "id": str(task.id),
            "user_id": task.user_id,
            "title": task.title,
            "description": task.description,
            "completed": task.completed,
            "priority": task.priority.value,
            "due_at": when(task.due_at),
            "completed_at": when(task.completed_at),
            "created_at": when(task.created_at),
            "updated_at": when(task.updated_at),
            "version": task.version,
        }
    )


def _task_from_json(raw: str) -> Task:
    data = json.loads(raw)

    def when(value: str | None) -> datetime | None:
        return None if value is None else datetime.fromisoformat(value)

    created_at = datetime.fromisoformat(data["created_at"])
    updated_at = datetime.fromisoformat(data["updated_at"])
    return Task(
        id=uuid.UUID(data["id"]),
        user_id=data["user_id"],
        title=data["title"],
        description=data["description"],
        completed=data["completed"],
        priority=Priority(data["priority"]),
        due_at=when(data["due_at"]),
        completed_at=when(data["completed_at"]),
        created_at=created_at,
        updated_at=updated_at,
        version=data["version"],
    )
