"""``TaskService``: every use case on tasks, with the ownership rules."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from application.batch import (
    BatchResult,
    Complete,
    Create,
    Delete,
    Operation,
    Outcome,
    Patch,
    Rejected,
    Replace,
)
from application.commands import TaskPatch, Versions
from application.errors import (
    ConcurrentUpdate,
    Forbidden,
    IdempotencyKeyReused,
    PreconditionFailed,
    RequestInFlight,
    SyncTokenExpired,
)
from application.ports import (
    Clock,
    IdempotentOutcome,
    IdGenerator,
    TaskReader,
    TaskRepository,
    TaskStore,
    UnitOfWork,
)
from application.principal import Principal
from application.queries import Position, TaskPage, TaskQuery
from application.signals import ChangeSignals
from application.sync import (
    PURGE_BATCH,
    PURGE_MARGIN,
    RETENTION_DAYS_DEFAULT,
    FeedPage,
    FeedQuery,
    page_of,
)
from domain.errors import TaskNotFound
from domain.task import Task, TaskFields, parse_task_id

IDEMPOTENCY_TTL = timedelta(hours=24)
"""How long an ``Idempotency-Key`` is remembered, at least."""

ME = "me"
"""Path alias for the caller's own user id."""


BatchResults = list[BatchResult]

Change = Callable[[Task, datetime], Task]
"""A modification the domain makes of a task, at a time."""


class TaskService:
    """Use cases on tasks. Callers pass the principal and the owner they named.

    The owner check happens before any I/O; a task that is not the
    principal's is reported exactly like a missing one.
    """

    def __init__(
        self,
        store: TaskStore,
        clock: Clock,
        ids: IdGenerator,
        *,
        signals: ChangeSignals | None = None,
        retention: timedelta = timedelta(days=RETENTION_DAYS_DEFAULT),
        write_attempts: int = 5,
    ) -> None:
        self._store = store
        self._clock = clock
        self._ids = ids
        self._signals = signals or ChangeSignals()
        self._retention = retention
        self._attempts = write_attempts

    @staticmethod
    def authorize(principal: Principal, owner: str) -> str:
        """The owner's user id if the principal may act on it; else ``Forbidden``."""
        if owner == ME or owner == principal.user_id:
            return principal.user_id
        raise Forbidden(owner)

    async def create(
        self,
        principal: Principal,
        owner: str,
        fields: TaskFields,
        idempotency_key: str | None = None,
    ) -> Task:
        """Create a task; with ``idempotency_key``, a repeat returns the first result.

        The key is stored in the same transaction as the task, so there is
        never one without the other.
        """
        user = self.authorize(principal, owner)
        now = self._clock.now()
        task = Task.new(task_id=self._ids.new_id(), owner=user, fields=fields, now=now)
        async with self._store.unit_of_work(user) as uow:
            if idempotency_key is not None:
                previous = await self._previous_outcome(uow, idempotency_key, fields, now)
                if previous is not None:
                    return previous
            await uow.tasks.add(task)
            if idempotency_key is not None:
                outcome = IdempotentOutcome(fingerprint(fields), now, task=task)
                await uow.idempotency.save(
                    idempotency_key, outcome, expire_before=now - IDEMPOTENCY_TTL
                )
            await uow.commit()
        self._signals.publish(user)
        return task

    @staticmethod
    async def _previous_outcome(
        uow: UnitOfWork, key: str, fields: TaskFields, now: datetime
    ) -> Task | None:
        if not await uow.idempotency.claim(key):
            raise RequestInFlight(key)
        previous = await _remembered(uow, key, now)
        if previous is None:
            return None
        if previous.task is None or previous.fingerprint != fingerprint(fields):
            raise IdempotencyKeyReused(key)
        return previous.task

    async def get(self, principal: Principal, owner: str, task_id: str) -> Task:
        user = self.authorize(principal, owner)
        task = await self._store.reader(user).get(_task_id(task_id))
        if task is None:
            raise TaskNotFound(task_id)
        return task

    async def list(self, principal: Principal, owner: str, query: TaskQuery) -> TaskPage:
        user = self.authorize(principal, owner)
        rows = await self._store.reader(user).list(query)
        items = rows[: query.limit]
        if len(rows) <= query.limit:
            return TaskPage(items=items, next=None)
        last = items[-1]
        return TaskPage(items=items, next=Position(query.sort.value_of(last), last.id))

    async def replace(
        self,
        principal: Principal,
        owner: str,
        task_id: str,
        fields: TaskFields,
        if_match: Versions = None,
    ) -> Task:
        return await self._modify(principal, owner, task_id, if_match, _replacing(fields))

    async def patch(
        self,
        principal: Principal,
        owner: str,
        task_id: str,
        patch: TaskPatch,
        if_match: Versions = None,
    ) -> Task:
        return await self._modify(principal, owner, task_id, if_match, _patching(patch))

    async def set_completed(
        self,
        principal: Principal,
        owner: str,
        task_id: str,
        completed: bool | None,
        if_match: Versions = None,
    ) -> Task:
        """Set ``completed``, or toggle it when ``completed`` is None."""
        return await self._modify(principal, owner, task_id, if_match, _completing(completed))

    async def delete(
        self, principal: Principal, owner: str, task_id: str, if_match: Versions = None
    ) -> None:
        user = self.authorize(principal, owner)
        tid = _task_id(task_id)
        for _ in range(self._attempts):
            async with self._store.unit_of_work(user) as uow:
                current = await self._current(uow.tasks, tid, task_id, if_match)
                if await self._deleted(uow.tasks, current):
                    await uow.commit()
                    self._signals.publish(user)
                    return
            if if_match is not None:
                raise PreconditionFailed(task_id)
        raise ConcurrentUpdate(task_id)

    async def _modify(
        self,
        principal: Principal,
        owner: str,
        task_id: str,
        if_match: Versions,
        change: Change,
    ) -> Task:
        user = self.authorize(principal, owner)
        tid = _task_id(task_id)
        done = await self._modified_unlocked(user, tid, task_id, if_match, change)
        if done is not None:
            return done
        # Another write came between: the other attempts under the row lock,
        # which makes further conflicts rare; the versioned write makes lost
        # updates impossible, on stores that cannot lock rows too.
        for _ in range(self._attempts - 1):
            async with self._store.unit_of_work(user) as uow:
                current = await self._current(uow.tasks, tid, task_id, if_match)
                updated = change(current, self._clock.now())
                if updated is current:
                    return current
                if await uow.tasks.update(updated, expected_version=current.version):
                    await uow.commit()
                    self._signals.publish(user)
                    return updated
            if if_match is not None:
                raise PreconditionFailed(task_id)
        raise ConcurrentUpdate(task_id)

    async def _modified_unlocked(
        self, user: str, tid: uuid.UUID, raw_id: str, if_match: Versions, change: Change
    ) -> Task | None:
        """The change made with no lock: read, decide, and write only if the
        task is still at the version read (on PostgreSQL two round trips, not
        four). None when another write came between."""
        current = await self._current(self._store.reader(user), tid, raw_id, if_match)
        updated = change(current, self._clock.now())
        if updated is current:
            return current
        if not await self._store.writer(user).update(updated, expected_version=current.version):
            return None
        self._signals.publish(user)
        return updated

    async def _deleted(self, tasks: TaskRepository, current: Task) -> bool:
        """Delete ``current`` if unchanged, and purge some tombstones past retention."""
        now = self._clock.now()
        if not await tasks.delete(current.id, expected_version=current.version, deleted_at=now):
            return False
        horizon = now - self._retention - PURGE_MARGIN
        await tasks.purge_tombstones(deleted_before=horizon, limit=PURGE_BATCH)
        return True

    async def changes(self, principal: Principal, owner: str, query: FeedQuery) -> FeedPage:
        """A page of the change feed after ``query.since``; with ``wait_s``, an
        empty page waits that long for a change to commit."""
        user = self.authorize(principal, owner)
        read_at = self._clock.now()
        since = query.since
        if since is not None and since.as_of < read_at - self._retention:
            raise SyncTokenExpired()
        started = read_at if since is None else since.as_of
        after = None if since is None else since.after
        reader = self._store.reader(user)
        if query.wait_s <= 0:
            read = await reader.changes(after, query.limit)
            return page_of(read, query, started=started, read_at=read_at)
        # Subscribed before the read: a commit right after it still wakes us.
        async with self._signals.subscribe(user, after=-1) as subscription:
            deadline = asyncio.get_running_loop().time() + query.wait_s
            seen = subscription.wakes
            read = await reader.changes(after, query.limit)
            # A wake-up may bring nothing new (a write that changed nothing,
            # another instance's rolled-back one): then wait on, to the deadline.
            while not read.changes and not self._signals.closed:
                subscription.rearm(read.head, seen)
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0 or not await subscription.wait(remaining):
                    break
                read_at = self._clock.now()
                seen = subscription.wakes
                read = await reader.changes(after, query.limit)
        return page_of(read, query, started=started, read_at=read_at)

    async def batch(
        self,
        principal: Principal,
        owner: str,
        operations: Sequence[Operation],
        *,
        atomic: bool = False,
        idempotency_key: str | None = None,
    ) -> BatchResults:
        """Apply ``operations`` in order in one transaction, each with the single
        routes' rules; ``atomic``: all of them or, when one fails, none."""
        user = self.authorize(principal, owner)
        if atomic and any(isinstance(op, Rejected) for op in operations):
            return [_REJECTED if isinstance(op, Rejected) else _UNDONE for op in operations]
        now = self._clock.now()
        print_ = batch_fingerprint(operations, atomic)
        async with self._store.unit_of_work(user) as uow:
            if idempotency_key is not None:
                if not await uow.idempotency.claim(idempotency_key):
                    raise RequestInFlight(idempotency_key)
                previous = await _remembered(uow, idempotency_key, now)
                if previous is not None:
                    if previous.results is None or previous.fingerprint != print_:
                        raise IdempotencyKeyReused(idempotency_key)
                    return list(previous.results)
            results: BatchResults = []
            for index, operation in enumerate(operations):
                result = await self._apply(uow.tasks, user, operation, now)
                if atomic and not result.outcome.succeeded:
                    # Not committed: the unit of work rolls back what went before.
                    return [result if i == index else _UNDONE for i in range(len(operations))]
                results.append(result)
            if idempotency_key is not None:
                outcome = IdempotentOutcome(print_, now, results=tuple(results))
                await uow.idempotency.save(
                    idempotency_key, outcome, expire_before=now - IDEMPOTENCY_TTL
                )
            await uow.commit()
        if any(result.outcome.succeeded for result in results):
            self._signals.publish(user)
        return results

    async def _apply(
        self, tasks: TaskRepository, user: str, operation: Operation, now: datetime
    ) -> BatchResult:
        """One operation of a batch; a failure is its outcome, nothing written."""
        match operation:
            case Rejected():
                return _REJECTED
            case Create(fields=fields):
                task = Task.new(task_id=self._ids.new_id(), owner=user, fields=fields, now=now)
                await tasks.add(task)
                return BatchResult(Outcome.CREATED, task)
            case Delete() | Replace() | Patch() | Complete():
                raw, if_match = operation.task_id, operation.if_match
                try:
                    current = await self._current(tasks, _task_id(raw), raw, if_match)
                except (TaskNotFound, PreconditionFailed) as error:
                    return BatchResult(_FAILURES[type(error)])
                if isinstance(operation, Delete):
                    if not await self._deleted(tasks, current):
                        return BatchResult(Outcome.CONCURRENT_UPDATE)
                    return BatchResult(Outcome.DELETED)
                updated = _modification(operation)(current, now)
                if updated is not current and not await tasks.update(
                    updated, expected_version=current.version
                ):
                    return BatchResult(Outcome.CONCURRENT_UPDATE)
                return BatchResult(Outcome.UPDATED, updated)

    @staticmethod
    async def _current(
        tasks: TaskRepository | TaskReader, tid: uuid.UUID, raw_id: str, if_match: Versions
    ) -> Task:
        """The task to change (locked, from a repository); 404 before 412, so
        nothing is revealed."""
        task = await tasks.get(tid)
        if task is None:
            raise TaskNotFound(raw_id)
        if if_match is not None and task.version not in if_match:
            raise PreconditionFailed(raw_id)
        return task


def _canonical(fields: TaskFields) -> tuple[object, ...]:
    due = None if fields.due_at is None else fields.due_at.isoformat()
    return (fields.title, fields.description, fields.completed, fields.priority.value, due)


def _digest(canonical: object) -> str:
    return hashlib.sha256(repr(canonical).encode("utf-8", "surrogatepass")).hexdigest()


def fingerprint(fields: TaskFields) -> str:
    """Identifies what a create asked for, to tell a retry from a different request."""
    return _digest(_canonical(fields))


def batch_fingerprint(operations: Sequence[Operation], atomic: bool) -> str:
    """Identifies what a batch asked for; never equal to a create's."""
    canonical: list[object] = ["batch", atomic]
    for op in operations:
        match op:
            case Create(fields=fields):
                canonical.append(("Create", _canonical(fields)))
            case Replace(task_id=raw, fields=fields):
                canonical.append(("Replace", raw, _canonical(fields)))
            case Patch(task_id=raw, patch=patch):
                sent = sorted((name, repr(value)) for name, value in patch.sent().items())
                canonical.append(("Patch", raw, sent))
            case Complete(task_id=raw, completed=completed):
                canonical.append(("Complete", raw, completed))
            case Delete(task_id=raw):
                canonical.append(("Delete", raw))
            case Rejected():
                canonical.append(("Rejected",))
        if_match = getattr(op, "if_match", None)
        canonical.append(None if if_match is None else sorted(if_match))
    return _digest(canonical)


def _replacing(fields: TaskFields) -> Change:
    return lambda task, now: task.with_fields(fields, now)


def _patching(patch: TaskPatch) -> Change:
    return lambda task, now: task.with_fields(patch.apply_to(task.fields()), now)


def _completing(completed: bool | None) -> Change:
    """Set ``completed``, or toggle it when ``completed`` is None."""
    if completed is None:
        return lambda task, now: task.toggle(now)
    return lambda task, now: task.set_completed(completed, now)


def _modification(operation: Replace | Patch | Complete) -> Change:
    """The change a batch's Replace, Patch or Complete asks for."""
    match operation:
        case Replace(fields=fields):
            return _replacing(fields)
        case Patch(patch=patch):
            return _patching(patch)
        case Complete(completed=completed):
            return _completing(completed)


_FAILURES: dict[type[Exception], Outcome] = {
    TaskNotFound: Outcome.NOT_FOUND,
    PreconditionFailed: Outcome.PRECONDITION_FAILED,
}


_REJECTED = BatchResult(Outcome.REJECTED)
_UNDONE = BatchResult(Outcome.FAILED_DEPENDENCY)


async def _remembered(uow: UnitOfWork, key: str, now: datetime) -> IdempotentOutcome | None:
    """The first outcome under ``key``, unless it expired."""
    previous = await uow.idempotency.find(key)
    if previous is None or previous.created_at < now - IDEMPOTENCY_TTL:
        return None
    return previous


def _task_id(raw: str) -> uuid.UUID:
    tid = parse_task_id(raw)
    if tid is None:
        raise TaskNotFound(raw)
    return tid
