"""What a client asks to change in a task."""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from domain.task import Priority, TaskFields


class Unset(enum.Enum):
    """Marks a field the client did not send (distinct from an explicit null)."""

    UNSET = enum.auto()


UNSET = Unset.UNSET


@dataclass(frozen=True, slots=True)
class TaskPatch:
    """A partial update: only the fields that are not ``UNSET`` change."""

    title: str | Unset = UNSET
    description: str | Unset | None = UNSET
    completed: bool | Unset = UNSET
    priority: Priority | Unset = UNSET
    due_at: datetime | Unset | None = UNSET

    def apply_to(self, fields: TaskFields) -> TaskFields:
        changes: dict[str, Any] = {
            name: getattr(self, name)
            for name in ("title", "description", "completed", "priority", "due_at")
            if getattr(self, name) is not UNSET
        }
        return replace(fields, **changes) if changes else fields
