"""What a client asks to change in a task."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain.task import FIELD_CHECKS, WRITABLE_FIELDS, Priority, TaskFields


class Unset(enum.Enum):
    """Marks a field the client did not send (distinct from an explicit null)."""

    UNSET = enum.auto()


UNSET = Unset.UNSET

Versions = frozenset[int] | None
"""Versions an ``If-Match`` admits; None when the client sent no precondition."""


@dataclass(frozen=True, slots=True)
class TaskPatch:
    """A partial update: only the fields that are not ``UNSET`` change.

    Constructed from untrusted values, it checks the sent ones; ``trusted``
    takes values that already passed those checks.
    """

    title: str | Unset = UNSET
    description: str | Unset | None = UNSET
    completed: bool | Unset = UNSET
    priority: Priority | Unset = UNSET
    due_at: datetime | Unset | None = UNSET

    def __post_init__(self) -> None:
        for name, check in FIELD_CHECKS.items():
            value = getattr(self, name)
            if value is not UNSET:
                object.__setattr__(self, name, check(value))

    @classmethod
    def trusted(cls, **sent: Any) -> TaskPatch:
        """A patch of values checked before (the edge's parse); the rest ``UNSET``."""
        built = object.__new__(cls)
        for name in WRITABLE_FIELDS:
            object.__setattr__(built, name, sent.get(name, UNSET))
        return built

    def sent(self) -> dict[str, Any]:
        """The fields the client sent, by name."""
        return {
            name: value for name in WRITABLE_FIELDS if (value := getattr(self, name)) is not UNSET
        }

    def apply_to(self, fields: TaskFields) -> TaskFields:
        """``fields`` with the sent values, which were checked when the patch was parsed."""
        return fields.with_changes(self.sent())
