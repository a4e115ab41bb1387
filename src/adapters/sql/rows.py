"""Tasks to rows and back, derived from ``TASK_FIELDS``; outcomes as the API's JSON."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson

from application.batch import BatchResult, Outcome
from application.ports import IdempotentOutcome
from application.queries import search_key
from application.sync import Change, ChangeNumber, Changes, Tombstone
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
    return Task._make(values)


def outcome_row(owner: str, key: str, outcome: IdempotentOutcome) -> dict[str, Any]:
    """An idempotency outcome's row: a create's task as the API returned it, or
    a batch's results."""
    if outcome.task is not None:
        document: Any = to_document(outcome.task)
    else:
        document = {"results": [_result_document(r) for r in outcome.results or ()]}
    return {
        "user_id": owner,
        "key": key,
        "fingerprint": outcome.fingerprint,
        "task": orjson.dumps(document, option=orjson.OPT_UTC_Z).decode(),
        "created_at": outcome.created_at,
    }


def outcome_from(row: Sequence[Any]) -> IdempotentOutcome:
    """The outcome in a row of ``statements.SELECT_OUTCOME``."""
    fingerprint, stored, created_at = row
    document = orjson.loads(stored)
    if "results" not in document:
        return IdempotentOutcome(fingerprint, created_at, task=from_document(document))
    results = tuple(_result_from(r) for r in document["results"])
    return IdempotentOutcome(fingerprint, created_at, results=results)


def _result_document(result: BatchResult) -> dict[str, Any]:
    task = None if result.task is None else to_document(result.task)
    return {"outcome": result.outcome.value, "task": task}


def _result_from(document: dict[str, Any]) -> BatchResult:
    task = document["task"]
    return BatchResult(Outcome(document["outcome"]), None if task is None else from_document(task))


def changes_from(rows: Sequence[Sequence[Any]]) -> Changes:
    """The head and changes in rows of ``statements.list_changes``, in change order."""
    head = 0
    changes = []
    for row in rows:
        kind, seq, *columns, deleted_at = row
        if kind == "h":
            head = seq
            continue
        task_id = columns[0]
        item: Task | Tombstone = (
            task_from(columns) if kind == "u" else Tombstone(task_id, deleted_at)
        )
        changes.append(Change(ChangeNumber(seq, task_id), item))
    # A union's rows come in no order of their own.
    changes.sort(key=lambda change: change.number)
    return Changes(changes, head)
