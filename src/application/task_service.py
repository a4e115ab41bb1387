"""``TaskService``: every use case on tasks, with the ownership rules."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from application.commands import TaskPatch
from application.errors import (
    ConcurrentUpdate,
    Forbidden,
    IdempotencyKeyReused,
    PreconditionFailed,
    RequestInFlight,
)
from application.ports import (
    Clock,
    IdempotentOutcome,
    IdGenerator,
    TaskRepository,
    TaskStore,
    UnitOfWork,
)
from application.principal import Principal
from application.queries import Position, TaskPage, TaskQuery
from domain.errors import TaskNotFound
from domain.task import Task, TaskFields, parse_task_id

IDEMPOTENCY_TTL = timedelta(hours=24)
"""How long an ``Idempotency-Key`` is remembered, at least."""

ME = "me"
"""Path alias for the caller's own user id."""

Versions = frozenset[int] | None
"""Versions an ``If-Match`` admits; None when the client sent no precondition."""


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
        write_attempts: int = 5,
    ) -> None:
        self._store = store
        self._clock = clock
        self._ids = ids
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
                outcome = IdempotentOutcome(fingerprint(fields), task, now)
                await uow.idempotency.save(
                    idempotency_key, outcome, expire_before=now - IDEMPOTENCY_TTL
                )
            await uow.commit()
        return task

    @staticmethod
    async def _previous_outcome(
        uow: UnitOfWork, key: str, fields: TaskFields, now: datetime
    ) -> Task | None:
        if not await uow.idempotency.claim(key):
            raise RequestInFlight(key)
        previous = await uow.idempotency.find(key)
        if previous is None or previous.created_at < now - IDEMPOTENCY_TTL:
            return None
        if previous.fingerprint != fingerprint(fields):
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
        return await self._modify(
            principal, owner, task_id, if_match, lambda task, now: task.with_fields(fields, now)
        )

    async def patch(
        self,
        principal: Principal,
        owner: str,
        task_id: str,
        patch: TaskPatch,
        if_match: Versions = None,
    ) -> Task:
        return await self._modify(
            principal,
            owner,
            task_id,
            if_match,
            lambda task, now: task.with_fields(patch.apply_to(task.fields()), now),
        )

    async def set_completed(
        self,
        principal: Principal,
        owner: str,
        task_id: str,
        completed: bool | None,
        if_match: Versions = None,
    ) -> Task:
        """Set ``completed``, or toggle it when ``completed`` is None."""

        def change(task: Task, now: datetime) -> Task:
            if completed is None:
                return task.toggle(now)
            return task.set_completed(completed, now)

        return await self._modify(principal, owner, task_id, if_match, change)

    async def delete(
        self, principal: Principal, owner: str, task_id: str, if_match: Versions = None
    ) -> None:
        user = self.authorize(principal, owner)
        tid = _task_id(task_id)
        for _ in range(self._attempts):
            async with self._store.unit_of_work(user) as uow:
                current = await self._current(uow.tasks, tid, task_id, if_match)
                if await uow.tasks.delete(tid, expected_version=current.version):
                    await uow.commit()
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
        change: Callable[[Task, datetime], Task],
    ) -> Task:
        user = self.authorize(principal, owner)
        tid = _task_id(task_id)
        # The row lock makes lost updates rare; the versioned write makes them
        # impossible, on stores that cannot lock rows too.
        for _ in range(self._attempts):
            async with self._store.unit_of_work(user) as uow:
                current = await self._current(uow.tasks, tid, task_id, if_match)
                updated = change(current, self._clock.now())
                if updated is current:
                    return current
                if await uow.tasks.update(updated, expected_version=current.version):
                    await uow.commit()
                    return updated
            if if_match is not None:
                raise PreconditionFailed(task_id)
        raise ConcurrentUpdate(task_id)

    @staticmethod
    async def _current(
        tasks: TaskRepository, tid: uuid.UUID, raw_id: str, if_match: Versions
    ) -> Task:
        """The task to change, locked; 404 before 412, so nothing is revealed."""
        task = await tasks.get(tid)
        if task is None:
            raise TaskNotFound(raw_id)
        if if_match is not None and task.version not in if_match:
            raise PreconditionFailed(raw_id)
        return task


def fingerprint(fields: TaskFields) -> str:
    """Identifies what a create asked for, to tell a retry from a different request."""
    due = None if fields.due_at is None else fields.due_at.isoformat()
    canonical = repr(
        (fields.title, fields.description, fields.completed, fields.priority.value, due)
    )
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def _task_id(raw: str) -> uuid.UUID:
    tid = parse_task_id(raw)
    if tid is None:
        raise TaskNotFound(raw)
    return tid
