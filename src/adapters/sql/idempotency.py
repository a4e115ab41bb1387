"""``IdempotencyStore`` on a ``Connection``: outcomes live beside their tasks."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Insert

from adapters.sql import statements as sql
from adapters.sql.connection import Connection
from adapters.sql.repository import OwnersWrites
from adapters.sql.rows import outcome_from, outcome_row
from application.ports import IdempotentOutcome


class SqlIdempotencyStore:
    """One owner's outcomes in the unit of work's transaction."""

    def __init__(self, connection: Connection, owner: str, writes: OwnersWrites) -> None:
        self._conn = connection
        self._owner = owner
        self._writes = writes
        postgres = connection.dialect.name == "postgresql"
        self._upsert: Insert = (
            sql.UPSERT_OUTCOME_POSTGRESQL if postgres else sql.UPSERT_OUTCOME_SQLITE
        )
        self._postgres = postgres

    async def claim(self, key: str) -> bool:
        if not self._postgres:
            # SQLite writers already run one at a time (BEGIN IMMEDIATE): a
            # repeat waits for the first and then replays it.
            return True
        result = await self._conn.execute(sql.TRY_LOCK_KEY, sql.key_lock_params(self._owner, key))
        return bool(result.scalar())

    async def find(self, key: str) -> IdempotentOutcome | None:
        params = {"owner": self._owner, "key": key}
        row = (await self._conn.execute(sql.SELECT_OUTCOME, params)).first()
        return None if row is None else outcome_from(row)

    async def save(self, key: str, outcome: IdempotentOutcome, *, expire_before: datetime) -> None:
        await self._writes.numbered()
        params = {"owner": self._owner, "expire_before": expire_before}
        await self._conn.execute(sql.DELETE_EXPIRED_OUTCOMES, params)
        await self._conn.execute(self._upsert, outcome_row(self._owner, key, outcome))
