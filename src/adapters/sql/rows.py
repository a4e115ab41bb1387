"""Tasks to rows and back, derived from ``TASK_FIELDS``; outcomes as the API's JSON."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson

from application.ports import IdempotentOutcome
from application.queries import search_key
from domain.task import Priority, Task
from domain.task_shape import TASK_FIELDS, Kind, from_document, to_document

_TO_STORED: dict[Kind, Callable[[Any], Any]] = {Kind.PRIORITY: lambda p: p.rank}
_FROM_STORED: dict[Kind, Callable[[Any], Any]] = {Kind.PRIORITY: Priority.from_rank}

_STORED = tuple((f.name, _TO_STORED.get(f.kind)) for f in TASK_FIELDS)
_LOADED = tuple(
    (index, load) for index, f in enumerate(TASK_FIELDS) if (load := _FROM_STORED.get(f.kind))
)


def task_row(task: Task) -> dict[str, Any]:
    """The row of ``task``: its fields as stored, and the search key of ``q``."""
    row = {}
    for name, store in _STORED:
        value = getattr(task, name)
        row[name] = value if store is None or value is None else store(value)
    row["search_text"] = search_key(task.title, task.description)
    return row


def task_from(row: Sequence[Any]) -> Task:
    """The task in a row of ``statements.TASK_COLUMNS``, which follow ``TASK_FIELDS``."""
    values = list(row)
    for index, load in _LOADED:
        values[index] = load(values[index])
    return Task(*values)


def outcome_row(owner: str, key: str, outcome: IdempotentOutcome) -> dict[str, Any]:
    """An idempotency outcome's row; the task is kept as the API returned it."""
    return {
        "user_id": owner,
        "key": key,
        "fingerprint": outcome.fingerprint,
        "task": orjson.dumps(to_document(outcome.task), option=orjson.OPT_UTC_Z).decode(),
        "created_at": outcome.created_at,
    }


def outcome_from(row: Sequence[Any]) -> IdempotentOutcome:
    """The outcome in a row of ``statements.SELECT_OUTCOME``."""
    fingerprint, task, created_at = row
    return IdempotentOutcome(fingerprint, from_document(orjson.loads(task)), created_at)
