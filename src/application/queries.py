"""How a task list is filtered, ordered and paged (keyset, never by offset)."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from application.errors import InvalidQuery
from domain.task import Priority, Task, contains_control_characters

SEARCH_MAX_LENGTH = 200

PAGE_SIZE_MIN = 1
PAGE_SIZE_DEFAULT = 50
PAGE_SIZE_MAX = 200
"""Tasks per page: a page is read in one statement, so its size is bounded."""

SEARCH_SEPARATOR = "\x1f"
"""Between title and description in a search key; ``q`` cannot contain it."""


def search_key(title: str, description: str | None) -> str:
    """What ``q`` is matched against: case-folded the same way on every store."""
    return f"{title.casefold()}{SEARCH_SEPARATOR}{(description or '').casefold()}"


class Status(enum.Enum):
    ALL = "all"
    PENDING = "pending"
    COMPLETED = "completed"


class SortField(enum.Enum):
    CREATED_AT = "created_at"
    UPDATED_AT = "updated_at"
    DUE_AT = "due_at"
    PRIORITY = "priority"
    TITLE = "title"


SortValue = datetime | int | str | None


@dataclass(frozen=True, slots=True)
class Sort:
    """A sort key; ``id`` in the same direction breaks ties (a total order)."""

    field: SortField = SortField.CREATED_AT
    descending: bool = True

    def value_of(self, task: Task) -> SortValue:
        """The key of ``task`` under this sort (priority by rank)."""
        match self.field:
            case SortField.CREATED_AT:
                return task.created_at
            case SortField.UPDATED_AT:
                return task.updated_at
            case SortField.DUE_AT:
                return task.due_at
            case SortField.PRIORITY:
                return task.priority.rank
            case SortField.TITLE:
                return task.title


@dataclass(frozen=True, slots=True)
class Position:
    """Where a page ended: the last task's sort key and id."""

    value: SortValue
    id: uuid.UUID


@dataclass(frozen=True, slots=True)
class TaskFilter:
    status: Status = Status.ALL
    priority: Priority | None = None
    text: str | None = None
    due_before: datetime | None = None
    due_after: datetime | None = None

    def __post_init__(self) -> None:
        if self.text is None:
            return
        if len(self.text) > SEARCH_MAX_LENGTH:
            raise InvalidQuery("q", f"must be at most {SEARCH_MAX_LENGTH} characters")
        if contains_control_characters(self.text):
            raise InvalidQuery("q", "must not contain control characters")

    @property
    def folded_text(self) -> str | None:
        """``text`` folded like ``search_key``, so that matching ignores case."""
        return None if self.text is None else self.text.casefold()


@dataclass(frozen=True, slots=True)
class TaskQuery:
    """One page request: filter, sort, page size and the position to resume after."""

    filter: TaskFilter = field(default_factory=TaskFilter)
    sort: Sort = field(default_factory=Sort)
    limit: int = PAGE_SIZE_DEFAULT
    after: Position | None = None

    def __post_init__(self) -> None:
        if not PAGE_SIZE_MIN <= self.limit <= PAGE_SIZE_MAX:
            raise InvalidQuery("limit", f"must be {PAGE_SIZE_MIN} to {PAGE_SIZE_MAX}")


@dataclass(frozen=True, slots=True)
class TaskPage:
    items: list[Task]
    next: Position | None
