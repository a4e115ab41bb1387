"""The ports the use cases need; adapters implement them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Protocol

from application.principal import Principal
from application.queries import TaskQuery
from domain.task import Task


class TaskRepository(Protocol):
    """Tasks of one store. Every method names the owner: there is no unscoped load."""

    async def add(self, owner: str, task: Task) -> None: ...

    async def get(self, owner: str, task_id: uuid.UUID, *, for_update: bool = False) -> Task | None:
        """The owner's task, or None; ``for_update`` locks it until the transaction ends."""
        ...

    async def list(self, owner: str, query: TaskQuery) -> list[Task]:
        """Up to ``query.limit + 1`` tasks after ``query.after`` in sort order.

        The extra row tells the caller that another page follows.
        """
        ...

    async def update(self, owner: str, task: Task, *, expected_version: int) -> bool:
        """Store ``task`` if the stored one still has ``expected_version``."""
        ...

    async def delete(self, owner: str, task_id: uuid.UUID, *, expected_version: int) -> bool:
        """Delete the task if the stored one still has ``expected_version``."""
        ...


@dataclass(frozen=True, slots=True)
class IdempotentOutcome:
    """What the first request with an ``Idempotency-Key`` asked for and got."""

    fingerprint: str
    task: Task
    created_at: datetime


class IdempotencyStore(Protocol):
    """Remembers creates by ``(owner, key)``, in the same transaction as the task."""

    async def claim(self, owner: str, key: str) -> bool:
        """Hold the key until this transaction ends; False if another holds it now."""
        ...

    async def find(self, owner: str, key: str) -> IdempotentOutcome | None: ...

    async def save(
        self, owner: str, key: str, outcome: IdempotentOutcome, *, expire_before: datetime
    ) -> None:
        """Store ``outcome`` (replacing an expired one) and drop the owner's
        outcomes older than ``expire_before``."""
        ...


class UnitOfWork(Protocol):
    """One transaction on behalf of one user; rolled back unless committed.

    A store may run a plain read (``tasks.get`` without ``for_update``,
    ``tasks.list``) as a statement of its own, outside the transaction: it
    sees a consistent snapshot, but two such reads need not see the same one.
    """

    @property
    def tasks(self) -> TaskRepository: ...

    @property
    def idempotency(self) -> IdempotencyStore: ...

    async def __aenter__(self) -> UnitOfWork: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None: ...


class UnitOfWorkFactory(Protocol):
    def __call__(self, user_id: str, *, write: bool) -> UnitOfWork:
        """A unit of work for ``user_id``; ``write`` says whether it will write."""
        ...


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class IdGenerator(Protocol):
    def new_id(self) -> uuid.UUID: ...


class TokenVerifier(Protocol):
    async def verify(self, token: str) -> Principal:
        """The principal a bearer token proves; raises ``InvalidToken``."""
        ...


@dataclass(frozen=True, slots=True)
class PoolStatus:
    """A store's connection pool: connections it keeps (``size``) and those lent out."""

    size: int
    in_use: int


class Storage(Protocol):
    """A task store: units of work, a health probe, and shutdown."""

    def unit_of_work(self, user_id: str, *, write: bool) -> UnitOfWork: ...

    async def ping(self) -> None:
        """Return when the store answers; raise ``StorageUnavailable`` otherwise."""
        ...

    async def close(self) -> None: ...

    async def warnings(self) -> list[str]:
        """Configuration problems worth a log line at start (e.g. RLS bypassed)."""
        ...

    def pool_status(self) -> PoolStatus:
        """The connection pool right now, for metrics; cheap and never blocking."""
        ...


@dataclass(frozen=True, slots=True)
class RateLimitStatus:
    """The caller's budget after one request."""

    allowed: bool
    limit: int
    remaining: int
    reset_after_s: int


class RateLimiter(Protocol):
    async def hit(self, key: str) -> RateLimitStatus:
        """Count one request against ``key``'s budget."""
        ...

    async def close(self) -> None: ...
