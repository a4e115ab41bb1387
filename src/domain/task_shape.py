"""The Task's shape: one list of fields from which tables, rows and JSON derive.

Adding a field to ``Task`` means the entity, one line here, a migration and
the API schema; the stores' columns and row mapping and the wire document
follow from ``TASK_FIELDS``.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain.task import Priority, Task


class Kind(enum.Enum):
    """What a field holds; each store and the wire map a kind to a type of theirs."""

    ID = "id"
    OWNER = "owner"
    TITLE = "title"
    TEXT = "text"
    FLAG = "flag"
    PRIORITY = "priority"
    INSTANT = "instant"
    VERSION = "version"


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    kind: Kind
    nullable: bool = False


TASK_FIELDS: tuple[Field, ...] = (
    Field("id", Kind.ID),
    Field("user_id", Kind.OWNER),
    Field("title", Kind.TITLE),
    Field("description", Kind.TEXT, nullable=True),
    Field("completed", Kind.FLAG),
    Field("priority", Kind.PRIORITY),
    Field("due_at", Kind.INSTANT, nullable=True),
    Field("completed_at", Kind.INSTANT, nullable=True),
    Field("created_at", Kind.INSTANT),
    Field("updated_at", Kind.INSTANT),
    Field("version", Kind.VERSION),
)
"""In the entity's order, so that a row of these columns is ``Task._make(row)``."""

if tuple(f.name for f in TASK_FIELDS) != Task._fields:
    raise TypeError("TASK_FIELDS must name the fields of Task, in order")

Document = dict[str, Any]
"""A task as JSON values, except instants: aware UTC datetimes, which the JSON
encoder writes as RFC 3339 with ``Z`` (orjson does so in C, several times
faster than ``isoformat``). Ids are text: orjson writes ``uuid.UUID`` itself,
but not asyncpg's subclass of it."""

_TO_DOCUMENT: dict[Kind, Callable[[Any], Any]] = {Kind.ID: str, Kind.PRIORITY: lambda p: p.value}
_FROM_DOCUMENT: dict[Kind, Callable[[Any], Any]] = {
    Kind.ID: uuid.UUID,
    Kind.PRIORITY: Priority,
    Kind.INSTANT: datetime.fromisoformat,
}
_NAMES = tuple(f.name for f in TASK_FIELDS)
_ENCODED = tuple(
    (index, encode) for index, f in enumerate(TASK_FIELDS) if (encode := _TO_DOCUMENT.get(f.kind))
)
_DECODED = tuple((f.name, _FROM_DOCUMENT.get(f.kind)) for f in TASK_FIELDS)


def to_document(task: Task) -> Document:
    """The task as the API shows it."""
    values = list(task)
    for index, encode in _ENCODED:
        if values[index] is not None:
            values[index] = encode(values[index])
    return dict(zip(_NAMES, values, strict=True))


def from_document(document: Document) -> Task:
    """The task a document (decoded from JSON, instants as text) describes."""
    values = []
    for name, decode in _DECODED:
        value = document[name]
        if decode is not None and value is not None:
            value = decode(value)
        values.append(value)
    return Task._make(values)
