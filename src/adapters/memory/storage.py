"""Tasks in process memory, with the same transactional behaviour as a database."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from types import TracebackType

from application.errors import ForeignTask
from application.ports import IdempotentOutcome, PoolStatus
from application.queries import (
    Position,
    Sort,
    SortValue,
    Status,
    TaskFilter,
    TaskQuery,
    search_key,
)
from application.signals import ChangeSignals
from application.sync import Change, ChangeNumber, Changes, Tombstone
from application.writer import UnitOfWorkWriter
from domain.task import Task

_Rows = dict[str, dict[uuid.UUID, Task]]
_Outcomes = dict[tuple[str, str], IdempotentOutcome]


class _Feed:
    """Every user's change numbers: of live tasks, of tombstones, and the head."""

    def __init__(self) -> None:
        self.heads: dict[str, int] = {}
        self.live: dict[str, dict[uuid.UUID, int]] = {}
        self.tombstones: dict[str, dict[uuid.UUID, tuple[int, Tombstone]]] = {}

    def changes(self, rows: _Rows, owner: str, after: ChangeNumber | None, limit: int) -> Changes:
        tasks = rows.get(owner, {})
        found = [
            Change(ChangeNumber(seq, tid), tasks[tid])
            for tid, seq in self.live.get(owner, {}).items()
        ]
        if after is not None:
            found += [
                Change(ChangeNumber(seq, tid), tombstone)
                for tid, (seq, tombstone) in self.tombstones.get(owner, {}).items()
            ]
            found = [change for change in found if change.number > after]
        found.sort(key=lambda change: change.number)
        return Changes(found[: limit + 1], self.heads.get(owner, 0))


def _listed(tasks: list[Task], query: TaskQuery) -> list[Task]:
    selected = [t for t in tasks if _matches(t, query.filter)]
    ordered = _ordered(selected, query.sort)
    if query.after is not None:
        after = query.after
        ordered = [t for t in ordered if _is_after(t, after, query.sort)]
    return ordered[: query.limit + 1]


class MemoryTaskReader:
    """One owner's committed tasks."""

    def __init__(self, rows: _Rows, feed: _Feed, owner: str) -> None:
        self._rows = rows
        self._feed = feed
        self._owner = owner

    async def get(self, task_id: uuid.UUID) -> Task | None:
        return self._rows.get(self._owner, {}).get(task_id)

    async def list(self, query: TaskQuery) -> list[Task]:
        return _listed(list(self._rows.get(self._owner, {}).values()), query)

    async def changes(self, after: ChangeNumber | None, limit: int) -> Changes:
        return self._feed.changes(self._rows, self._owner, after, limit)


class MemoryTaskRepository:
    """One owner's tasks: reads see this transaction's own writes, others after commit."""

    def __init__(self, rows: _Rows, feed: _Feed, owner: str) -> None:
        self._rows = rows
        self._feed = feed
        self._owner = owner
        self._pending: dict[uuid.UUID, Task | Tombstone] = {}
        self._purge: tuple[datetime, int] | None = None

    def _current(self, task_id: uuid.UUID) -> Task | None:
        if task_id in self._pending:
            pending = self._pending[task_id]
            return pending if isinstance(pending, Task) else None
        return self._rows.get(self._owner, {}).get(task_id)

    async def add(self, task: Task) -> None:
        if task.user_id != self._owner:
            raise ForeignTask(str(task.id))
        if self._current(task.id) is not None:
            raise ValueError(f"task {task.id} exists")
        self._pending[task.id] = task

    async def get(self, task_id: uuid.UUID) -> Task | None:
        return self._current(task_id)

    async def list(self, query: TaskQuery) -> list[Task]:
        ids = set(self._rows.get(self._owner, {})) | set(self._pending)
        return _listed([task for tid in ids if (task := self._current(tid)) is not None], query)

    async def update(self, task: Task, *, expected_version: int) -> bool:
        if task.user_id != self._owner:
            raise ForeignTask(str(task.id))
        current = self._current(task.id)
        if current is None or current.version != expected_version:
            return False
        self._pending[task.id] = task
        return True

    async def delete(
        self, task_id: uuid.UUID, *, expected_version: int, deleted_at: datetime
    ) -> bool:
        current = self._current(task_id)
        if current is None or current.version != expected_version:
            return False
        self._pending[task_id] = Tombstone(task_id, deleted_at)
        return True

    async def purge_tombstones(self, *, deleted_before: datetime, limit: int) -> int:
        tombstones = self._feed.tombstones.get(self._owner, {})
        self._purge = (deleted_before, limit)
        return min(limit, sum(t.deleted_at < deleted_before for _, t in tombstones.values()))

    def apply(self) -> None:
        """Commit: the writes, numbered as the user's next change."""
        owner = self._owner
        if self._pending:
            seq = self._feed.heads[owner] = self._feed.heads.get(owner, 0) + 1
            mine = self._rows.setdefault(owner, {})
            live = self._feed.live.setdefault(owner, {})
            tombstones = self._feed.tombstones.setdefault(owner, {})
            for task_id, change in self._pending.items():
                if isinstance(change, Tombstone):
                    mine.pop(task_id, None)
                    live.pop(task_id, None)
                    tombstones[task_id] = (seq, change)
                else:
                    mine[task_id] = change
                    live[task_id] = seq
        if self._purge is not None:
            before, limit = self._purge
            tombstones = self._feed.tombstones.get(owner, {})
            expired = [tid for tid, (_, t) in tombstones.items() if t.deleted_at < before]
            for task_id in expired[:limit]:
                del tombstones[task_id]
        self._pending.clear()
        self._purge = None


class MemoryIdempotencyStore:
    """One owner's outcomes; a key is held by at most one transaction at a time."""

    def __init__(self, outcomes: _Outcomes, claimed: set[tuple[str, str]], owner: str) -> None:
        self._outcomes = outcomes
        self._claimed = claimed
        self._owner = owner
        self._held: set[tuple[str, str]] = set()
        self._pending: dict[tuple[str, str], IdempotentOutcome] = {}
        self._expire_before: datetime | None = None

    async def claim(self, key: str) -> bool:
        name = (self._owner, key)
        if name in self._held:
            return True
        if name in self._claimed:
            return False
        self._claimed.add(name)
        self._held.add(name)
        return True

    async def find(self, key: str) -> IdempotentOutcome | None:
        name = (self._owner, key)
        return self._pending.get(name) or self._outcomes.get(name)

    async def save(self, key: str, outcome: IdempotentOutcome, *, expire_before: datetime) -> None:
        self._pending[(self._owner, key)] = outcome
        self._expire_before = expire_before

    def apply(self) -> None:
        cutoff = self._expire_before
        if cutoff is not None:
            for name in [
                n
                for n, o in self._outcomes.items()
                if n[0] == self._owner and o.created_at < cutoff
            ]:
                del self._outcomes[name]
        self._outcomes.update(self._pending)
        self._pending.clear()
        self._expire_before = None

    def release(self) -> None:
        self._claimed.difference_update(self._held)
        self._held.clear()


class MemoryUnitOfWork:
    """Units of work take the store's lock for the whole transaction, like SQLite's writers."""

    def __init__(self, store: MemoryStorage, owner: str) -> None:
        self._store = store
        self._owner = owner
        self.tasks = MemoryTaskRepository(store.rows, store.feed, owner)
        self.idempotency = MemoryIdempotencyStore(store.outcomes, store.claimed, owner)

    async def __aenter__(self) -> MemoryUnitOfWork:
        await self._store.lock.acquire()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.tasks = MemoryTaskRepository(self._store.rows, self._store.feed, self._owner)
        self.idempotency.release()
        self.idempotency = MemoryIdempotencyStore(
            self._store.outcomes, self._store.claimed, self._owner
        )
        self._store.lock.release()

    async def commit(self) -> None:
        self.tasks.apply()
        self.idempotency.apply()


class MemoryStorage:
    """Keeps nothing after the process exits."""

    def __init__(self) -> None:
        self.rows: _Rows = {}
        self.feed = _Feed()
        self.outcomes: _Outcomes = {}
        self.claimed: set[tuple[str, str]] = set()
        self.lock = asyncio.Lock()

    def reader(self, owner: str) -> MemoryTaskReader:
        return MemoryTaskReader(self.rows, self.feed, owner)

    def writer(self, owner: str) -> UnitOfWorkWriter:
        return UnitOfWorkWriter(self.unit_of_work, owner)

    def unit_of_work(self, owner: str) -> MemoryUnitOfWork:
        return MemoryUnitOfWork(self, owner)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def warnings(self) -> list[str]:
        return []

    def pool_status(self) -> PoolStatus:
        return PoolStatus(size=0, in_use=0)

    async def watch(self, signals: ChangeSignals) -> None:
        """Nothing to watch: no other process reaches this memory."""


def _matches(task: Task, flt: TaskFilter) -> bool:
    if flt.status is Status.PENDING and task.completed:
        return False
    if flt.status is Status.COMPLETED and not task.completed:
        return False
    if flt.priority is not None and task.priority is not flt.priority:
        return False
    needle = flt.folded_text
    if needle and needle not in search_key(task.title, task.description):
        return False
    if flt.due_before is not None and (task.due_at is None or task.due_at >= flt.due_before):
        return False
    return not (flt.due_after is not None and (task.due_at is None or task.due_at <= flt.due_after))


def _ordered(tasks: list[Task], sort: Sort) -> list[Task]:
    """Sort order with ``id`` tie-break; a missing due date sorts last both ways."""
    keyed = [(sort.value_of(t), t) for t in tasks]
    present = sorted(
        ((v, t) for v, t in keyed if v is not None),
        key=lambda pair: (pair[0], pair[1].id),
        reverse=sort.descending,
    )
    missing = sorted(
        (t for v, t in keyed if v is None), key=lambda t: t.id, reverse=sort.descending
    )
    return [t for _, t in present] + missing


def _is_after(task: Task, position: Position, sort: Sort) -> bool:
    value = sort.value_of(task)
    if position.value is None:
        return value is None and _beyond(task.id, position.id, sort.descending)
    if value is None:
        return True
    if value == position.value:
        return _beyond(task.id, position.id, sort.descending)
    return _beyond(value, position.value, sort.descending)


def _beyond(a: SortValue | uuid.UUID, b: SortValue | uuid.UUID, descending: bool) -> bool:
    return a < b if descending else a > b  # type: ignore[operator]
