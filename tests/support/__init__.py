"""Test helpers shared by every tier: tokens, a fixed clock, predictable ids.

Beside them: ``http`` (HTTP assertions), ``processes`` (real servers),
``jwks`` (key pairs and a JWKS endpoint), ``nginx`` (a reverse proxy before them).
"""

from __future__ import annotations

import itertools
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from jose import jwt

SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"
USERS = ("alice", "bob", "carol")
TASK_KEYS = frozenset(
    {
        "id",
        "user_id",
        "title",
        "description",
        "completed",
        "priority",
        "due_at",
        "completed_at",
        "created_at",
        "updated_at",
        "version",
    }
)
"""The fields of a Task as the API returns it (the contract's example)."""


def make_token(
    sub: Any = "alice", *, secret: str = SECRET, algorithm: str = "HS256", **claims: Any
) -> str:
    """A signed token; pass ``exp=None`` (or any claim as None) to leave it out."""
    now = int(time.time())
    body: dict[str, Any] = {"sub": sub, "iat": now, "exp": now + 600}
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, secret, algorithm=algorithm)


def auth(sub: str = "alice", **claims: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(sub, **claims)}"}


class FixedClock:
    """A clock that moves only when told, one microsecond per reading by default."""

    def __init__(
        self, start: datetime | None = None, step: timedelta = timedelta(microseconds=1)
    ) -> None:
        self.current = start or datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
        self.step = step

    def now(self) -> datetime:
        value = self.current
        self.current += self.step
        return value


class SequentialIds:
    """Ids that sort in creation order, as UUIDv7 ids do."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)

    def new_id(self) -> uuid.UUID:
        return uuid.UUID(int=(0x7 << 76) | (0b10 << 62) | (next(self._counter) << 80))
