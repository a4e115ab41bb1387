"""A batch: the single routes' writes, several in one transaction."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from application.commands import TaskPatch, Versions
from domain.task import Task, TaskFields

BATCH_MAX = 100


@dataclass(frozen=True, slots=True)
class Create:
    fields: TaskFields


@dataclass(frozen=True, slots=True)
class Replace:
    task_id: str
    fields: TaskFields
    if_match: Versions = None


@dataclass(frozen=True, slots=True)
class Patch:
    task_id: str
    patch: TaskPatch
    if_match: Versions = None


@dataclass(frozen=True, slots=True)
class Complete:
    task_id: str
    completed: bool | None = None
    """None toggles, as on the single route."""
    if_match: Versions = None


@dataclass(frozen=True, slots=True)
class Delete:
    task_id: str
    if_match: Versions = None


@dataclass(frozen=True, slots=True)
class Rejected:
    """An operation whose content the edge refused; it says why itself."""


Operation = Create | Replace | Patch | Complete | Delete | Rejected


@enum.unique
class Outcome(enum.Enum):
    """What became of one operation; the values are how stores keep them."""

    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"
    NOT_FOUND = "not_found"
    PRECONDITION_FAILED = "precondition_failed"
    CONCURRENT_UPDATE = "concurrent_update"
    FAILED_DEPENDENCY = "failed_dependency"
    """Not applied: another operation of the atomic batch failed."""
    REJECTED = "rejected"

    @property
    def succeeded(self) -> bool:
        return self in _SUCCESSES


_SUCCESSES = frozenset({Outcome.CREATED, Outcome.UPDATED, Outcome.DELETED})


@dataclass(frozen=True, slots=True)
class BatchResult:
    outcome: Outcome
    task: Task | None = None
    """The task as the operation left it (created or updated)."""
