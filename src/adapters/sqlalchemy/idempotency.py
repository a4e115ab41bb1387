"""``IdempotencyStore`` through SQLAlchemy (SQLite): outcomes live beside their tasks."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.sqlalchemy import statements as sql
from application.ports import IdempotentOutcome


class SqlIdempotencyStore:
    def __init__(self, connection: AsyncConnection) -> None:
        self._conn = connection

    async def claim(self, owner: str, key: str) -> bool:
        # SQLite writers already run one at a time (BEGIN IMMEDIATE): a repeat
        # waits for the first and then replays it.
        return True

    async def find(self, owner: str, key: str) -> IdempotentOutcome | None:
        result = await self._conn.execute(sql.SELECT_OUTCOME, {"owner": owner, "key": key})
        row = result.first()
        return None if row is None else sql.outcome_from(row._mapping)

    async def save(
        self, owner: str, key: str, outcome: IdempotentOutcome, *, expire_before: datetime
    ) -> None:
        params = {"owner": owner, "expire_before": expire_before}
        await self._conn.execute(sql.DELETE_EXPIRED_OUTCOMES, params)
        await self._conn.execute(sql.UPSERT_OUTCOME_SQLITE, sql.outcome_params(owner, key, outcome))
