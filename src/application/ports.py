"""The ports the use cases need; adapters implement them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Protocol

from application.batch import BatchResult
from application.principal import Principal
from application.queries import TaskQuery
from application.signals import ChangeSignals
from application.sync import ChangeNumber, Changes
from domain.task import Task


class TaskReader(Protocol):
    """Plain reads of one user's committed tasks, outside any transaction.

    Each read is one consistent snapshot; two reads need not see the same one.
    """

    async def get(self, task_id: uuid.UUID) -> Task | None: ...

    async def list(self, query: TaskQuery) -> list[Task]:
        """Up to ``query.limit + 1`` tasks after ``query.after`` in sort order.

        The extra row tells the caller that another page follows.
        """
        ...

    async def changes(self, after: ChangeNumber | None, limit: int) -> Changes:
        """Up to ``limit + 1`` changes after ``after``, in change order, each task
        once in its latest state, read in one snapshot with the head.

        Without ``after``: every live task, and no tombstones.
        """
        ...


class TaskRepository(Protocol):
    """One user's tasks inside a unit of work: reads see its own writes.

    The owner is the unit of work's; a task of anyone else's is simply not
    there, and handing one to ``add`` or ``update`` raises ``ForeignTask``.
    """

    async def add(self, task: Task) -> None: ...

    async def get(self, task_id: uuid.UUID) -> Task | None:
        """The task, locked against other writers until the transaction ends."""
        ...

    async def list(self, query: TaskQuery) -> list[Task]:
        """Like ``TaskReader.list``, with this transaction's writes."""
        ...

    async def update(self, task: Task, *, expected_version: int) -> bool:
        """Store ``task`` if the stored one still has ``expected_version``."""
        ...

    async def delete(
        self, task_id: uuid.UUID, *, expected_version: int, deleted_at: datetime
    ) -> bool:
        """Delete the task if the stored one still has ``expected_version``,
        leaving its tombstone for the change feed."""
        ...

    async def purge_tombstones(self, *, deleted_before: datetime, limit: int) -> int:
        """Drop up to ``limit`` of this user's tombstones older than ``deleted_before``."""
        ...


class TaskWriter(Protocol):
    """One write of one user's task, in a transaction of its own, with no lock
    taken before it: the version it expects is its only precondition."""

    async def update(self, task: Task, *, expected_version: int) -> bool:
        """Store ``task`` and commit, if the stored one still has ``expected_version``."""
        ...


@dataclass(frozen=True, slots=True)
class IdempotentOutcome:
    """What the first request with an ``Idempotency-Key`` asked for and got."""

    fingerprint: str
    created_at: datetime
    task: Task | None = None
    """A create's task."""
    results: tuple[BatchResult, ...] | None = None
    """A batch's results."""


class IdempotencyStore(Protocol):
    """Remembers one user's creates by key, in the same transaction as the task."""

    async def claim(self, key: str) -> bool:
        """Hold the key until this transaction ends; False if another holds it now."""
        ...

    async def find(self, key: str) -> IdempotentOutcome | None: ...

    async def save(self, key: str, outcome: IdempotentOutcome, *, expire_before: datetime) -> None:
        """Store ``outcome`` (replacing an expired one) and drop this user's
        outcomes older than ``expire_before``."""
        ...


class UnitOfWork(Protocol):
    """One transaction of one user's writes; rolled back unless committed."""

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


class TaskStore(Protocol):
    """Where the use cases find one user's tasks: to read, or to change in a transaction."""

    def reader(self, owner: str) -> TaskReader: ...

    def writer(self, owner: str) -> TaskWriter: ...

    def unit_of_work(self, owner: str) -> UnitOfWork: ...


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


class Storage(TaskStore, Protocol):
    """A task store as the composition root sees it: with a probe and a pool."""

    async def ping(self) -> None:
        """Return when the store answers; raise ``StorageUnavailable`` otherwise."""
        ...

    async def close(self) -> None:
        """Close every connection; the store serves nothing afterwards."""
        ...

    async def warnings(self) -> list[str]:
        """Configuration problems worth a log line at start (e.g. RLS bypassed)."""
        ...

    def pool_status(self) -> PoolStatus:
        """The connection pool right now, for metrics; cheap and never blocking."""
        ...

    async def watch(self, signals: ChangeSignals) -> None:
        """Report to ``signals`` the commits that other processes make, until cancelled."""
        ...


@dataclass(frozen=True, slots=True)
class RateLimitStatus:
    """The caller's budget after one request."""

    allowed: bool
    limit: int
    remaining: int
    reset_after_s: int


class RateLimiter(Protocol):
    async def hit(self, key: str, cost: int = 1) -> RateLimitStatus:
        """Count ``cost`` requests against ``key``'s budget."""
        ...

    async def close(self) -> None: ...
