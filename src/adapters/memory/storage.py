"""Tasks in process memory, with the same transactional behaviour as a database."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from types import TracebackType

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
from domain.task import Task

_Rows = dict[str, dict[uuid.UUID, Task]]
_Outcomes = dict[tuple[str, str], IdempotentOutcome]


class MemoryTaskRepository:
    """Reads see this transaction's own writes; others see them after commit."""

    def __init__(self, rows: _Rows) -> None:
        self._rows = rows
        self._pending: dict[tuple[str, uuid.UUID], Task | None] = {}

    def _current(self, owner: str, task_id: uuid.UUID) -> Task | None:
        key = (owner, task_id)
        if key in self._pending:
            return self._pending[key]
        return self._rows.get(owner, {}).get(task_id)

    async def add(self, owner: str, task: Task) -> None:
        if task.user_id != owner:
            raise ValueError("task owner does not match")
        if self._current(owner, task.id) is not None:
            raise ValueError(f"task {task.id} exists")
        self._pending[(owner, task.id)] = task

    async def get(self, owner: str, task_id: uuid.UUID, *, for_update: bool = False) -> Task | None:
        return self._current(owner, task_id)

    async def list(self, owner: str, query: TaskQuery) -> list[Task]:
        ids = set(self._rows.get(owner, {}))
        ids.update(tid for (who, tid) in self._pending if who == owner)
        visible = [task for tid in ids if (task := self._current(owner, tid)) is not None]
        selected = [t for t in visible if _matches(t, query.filter)]
        ordered = _ordered(selected, query.sort)
        if query.after is not None:
            after = query.after
            ordered = [t for t in ordered if _is_after(t, after, query.sort)]
        return ordered[: query.limit + 1]

    async def update(self, owner: str, task: Task, *, expected_version: int) -> bool:
        current = self._current(owner, task.id)
        if current is None or current.version != expected_version or task.user_id != owner:
            return False
        self._pending[(owner, task.id)] = task
        return True

    async def delete(self, owner: str, task_id: uuid.UUID, *, expected_version: int) -> bool:
        current = self._current(owner, task_id)
        if current is None or current.version != expected_version:
            return False
        self._pending[(owner, task_id)] = None
        return True

    def apply(self) -> None:
        for (owner, task_id), task in self._pending.items():
            if task is None:
                self._rows.get(owner, {}).pop(task_id, None)
            else:
                self._rows.setdefault(owner, {})[task_id] = task
        self._pending.clear()


class MemoryIdempotencyStore:
    def __init__(self, outcomes: _Outcomes, claimed: set[tuple[str, str]]) -> None:
        self._outcomes = outcomes
        self._claimed = claimed
        self._held: set[tuple[str, str]] = set()
        self._pending: dict[tuple[str, str], IdempotentOutcome] = {}
        self._expire: dict[str, datetime] = {}

    async def claim(self, owner: str, key: str) -> bool:
        name = (owner, key)
        if name in self._held:
            return True
        if name in self._claimed:
            return False
        self._claimed.add(name)
        self._held.add(name)
        return True

    async def find(self, owner: str, key: str) -> IdempotentOutcome | None:
        return self._pending.get((owner, key)) or self._outcomes.get((owner, key))

    async def save(
        self, owner: str, key: str, outcome: IdempotentOutcome, *, expire_before: datetime
    ) -> None:
        self._pending[(owner, key)] = outcome
        self._expire[owner] = expire_before

    def apply(self) -> None:
        for owner, cutoff in self._expire.items():
            for name in [
                n for n, o in self._outcomes.items() if n[0] == owner and o.created_at < cutoff
            ]:
                del self._outcomes[name]
        self._outcomes.update(self._pending)
        self._pending.clear()
        self._expire.clear()

    def release(self) -> None:
        self._claimed.difference_update(self._held)
        self._held.clear()


class MemoryUnitOfWork:
    """Writers take the store's lock for the whole transaction, like SQLite."""

    def __init__(
        self,
        rows: _Rows,
        outcomes: _Outcomes,
        claimed: set[tuple[str, str]],
        lock: asyncio.Lock,
        write: bool,
    ) -> None:
        self._rows = rows
        self._outcomes = outcomes
        self._claimed = claimed
        self._lock = lock
        self._write = write
        self.tasks = MemoryTaskRepository(rows)
        self.idempotency = MemoryIdempotencyStore(outcomes, claimed)

    async def __aenter__(self) -> MemoryUnitOfWork:
        if self._write:
            await self._lock.acquire()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.tasks = MemoryTaskRepository(self._rows)
        self.idempotency.release()
        self.idempotency = MemoryIdempotencyStore(self._outcomes, self._claimed)
        if self._write:
            self._lock.release()

    async def commit(self) -> None:
        self.tasks.apply()
        self.idempotency.apply()


class MemoryStorage:
    """Keeps nothing after the process exits."""

    def __init__(self) -> None:
        self._rows: _Rows = {}
        self._outcomes: _Outcomes = {}
        self._claimed: set[tuple[str, str]] = set()
        self._lock = asyncio.Lock()

    def unit_of_work(self, user_id: str, *, write: bool) -> MemoryUnitOfWork:
        return MemoryUnitOfWork(self._rows, self._outcomes, self._claimed, self._lock, write)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def warnings(self) -> list[str]:
        return []

    def pool_status(self) -> PoolStatus:
        return PoolStatus(size=0, in_use=0)


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
