"""The ``Task`` entity: a user's to-do item and the rules every write obeys."""

from __future__ import annotations

import enum
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from datetime import UTC, datetime
from typing import Any, NamedTuple

from domain.errors import InvalidTask

TITLE_MAX_LENGTH = 200
DESCRIPTION_MAX_LENGTH = 10_000
OWNER_MAX_LENGTH = 255

# C0 and C1 control characters; descriptions may still hold line breaks and tabs.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_EXCEPT_WHITESPACE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_CANONICAL_UUID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


class Priority(enum.Enum):
    """How urgent a task is; ``rank`` orders them low < medium < high."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    @classmethod
    def from_rank(cls, rank: int) -> Priority:
        return _BY_RANK[rank]


_RANKS = {Priority.LOW: 1, Priority.MEDIUM: 2, Priority.HIGH: 3}
_BY_RANK = {rank: priority for priority, rank in _RANKS.items()}


def _encodable(value: str) -> bool:
    # Lone surrogates survive JSON decoding but no database can store them.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def contains_control_characters(value: str) -> bool:
    """True for C0/C1 control characters, or lone surrogates no store can keep."""
    return bool(_CONTROL.search(value)) or not _encodable(value)


def normalize_title(value: str) -> str:
    """Return the stored form of a title or raise ``InvalidTask``.

    Surrounding spaces, tabs and line breaks are trimmed; any other control
    character is refused wherever it stands (``str.strip`` would drop some).
    """
    title = value.strip()
    if _CONTROL_EXCEPT_WHITESPACE.search(value) or contains_control_characters(title):
        raise InvalidTask("title", "must not contain control characters")
    if not title:
        raise InvalidTask("title", "must not be empty")
    if len(title) > TITLE_MAX_LENGTH:
        raise InvalidTask("title", f"must be at most {TITLE_MAX_LENGTH} characters")
    return title


def check_description(value: str | None) -> str | None:
    """Return a valid description unchanged or raise ``InvalidTask``."""
    if value is None:
        return None
    if len(value) > DESCRIPTION_MAX_LENGTH:
        raise InvalidTask("description", f"must be at most {DESCRIPTION_MAX_LENGTH} characters")
    if _CONTROL_EXCEPT_WHITESPACE.search(value) or not _encodable(value):
        raise InvalidTask("description", "must not contain control characters")
    return value


def check_due_at(value: datetime | None) -> datetime | None:
    """Return ``value`` in UTC; a naive date-time is ambiguous and refused."""
    if value is None:
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidTask("due_at", "must include a timezone offset")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise InvalidTask("due_at", "is outside the years 1 to 9999 in UTC") from None


def check_owner(value: str) -> str:
    """Return a valid owner id (a token's ``sub``) or raise ``InvalidTask``."""
    if not value or len(value) > OWNER_MAX_LENGTH:
        raise InvalidTask("user_id", f"must be 1 to {OWNER_MAX_LENGTH} characters")
    if contains_control_characters(value):
        raise InvalidTask("user_id", "must not contain control characters")
    return value


def parse_task_id(raw: str) -> uuid.UUID | None:
    """Parse a canonical UUID string; anything else is simply no task's id."""
    if not _CANONICAL_UUID.fullmatch(raw):
        return None
    return uuid.UUID(raw)


FIELD_CHECKS: dict[str, Callable[[Any], Any]] = {
    "title": normalize_title,
    "description": check_description,
    "due_at": check_due_at,
}
"""The check of each writable field that has one: the stored form, or ``InvalidTask``."""


@dataclass(frozen=True, slots=True)
class TaskFields:
    """The client-writable fields of a task.

    Constructed from untrusted values, it checks and normalises them;
    ``trusted`` builds it from values that already passed those checks.
    """

    title: str
    description: str | None = None
    completed: bool = False
    priority: Priority = Priority.MEDIUM
    due_at: datetime | None = None

    def __post_init__(self) -> None:
        for name, check in FIELD_CHECKS.items():
            object.__setattr__(self, name, check(getattr(self, name)))

    @classmethod
    def trusted(cls, **values: Any) -> TaskFields:
        """Fields from values checked before: a stored task's, or the edge's parse."""
        built = object.__new__(cls)
        for name in WRITABLE_FIELDS:
            object.__setattr__(built, name, values[name])
        return built

    def with_changes(self, changes: dict[str, Any]) -> TaskFields:
        """These fields with some replaced by values checked before."""
        if not changes:
            return self
        return TaskFields.trusted(**{**self.as_dict(), **changes})

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in WRITABLE_FIELDS}


WRITABLE_FIELDS = tuple(field.name for field in dataclass_fields(TaskFields))
"""What a client may write; every other field of a Task the service keeps."""


class Task(NamedTuple):
    """A task owned by exactly one user. Immutable: changes return a new Task.

    A named tuple rather than a frozen dataclass: every row a list reads
    becomes one, and a frozen dataclass's ``__init__`` sets each of eleven
    fields through ``object.__setattr__``, six times the cost of building a
    tuple (a tenth of a list request's CPU, with the conversion to JSON).
    """

    id: uuid.UUID
    user_id: str
    title: str
    description: str | None
    completed: bool
    priority: Priority
    due_at: datetime | None
    completed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    version: int

    @classmethod
    def new(cls, *, task_id: uuid.UUID, owner: str, fields: TaskFields, now: datetime) -> Task:
        return cls(
            id=task_id,
            user_id=check_owner(owner),
            **fields.as_dict(),
            completed_at=now if fields.completed else None,
            created_at=now,
            updated_at=now,
            version=1,
        )

    def fields(self) -> TaskFields:
        return TaskFields.trusted(**{name: getattr(self, name) for name in WRITABLE_FIELDS})

    def with_fields(self, fields: TaskFields, now: datetime) -> Task:
        """Apply ``fields``; a write that changes nothing returns ``self``."""
        if fields == self.fields():
            return self
        if fields.completed == self.completed:
            completed_at = self.completed_at
        else:
            completed_at = now if fields.completed else None
        return self._replace(
            **fields.as_dict(),
            completed_at=completed_at,
            updated_at=now,
            version=self.version + 1,
        )

    def set_completed(self, completed: bool, now: datetime) -> Task:
        return self.with_fields(self.fields().with_changes({"completed": completed}), now)

    def toggle(self, now: datetime) -> Task:
        return self.set_completed(not self.completed, now)
