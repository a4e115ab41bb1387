"""The Task's one shape: the entity, the table, the rows, the API schema and the JSON agree."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import get_type_hints

import orjson
import pytest

from adapters.sql.rows import outcome_from, outcome_row, task_from, task_row
from adapters.sql.statements import TASK_COLUMNS
from adapters.sql.tables import tasks
from application.ports import IdempotentOutcome
from domain.task import Priority, Task, TaskFields
from domain.task_shape import TASK_FIELDS, from_document, to_document
from entrypoints.http.jsonbody import dumps
from entrypoints.http.representation import task_body
from entrypoints.http.schemas import TaskOut

NOW = datetime(2026, 11, 26, 7, 51, 22, 896584, tzinfo=UTC)


def _tasks() -> list[Task]:
    plain = Task.new(task_id=uuid.uuid4(), owner="alice", fields=TaskFields("A"), now=NOW)
    full = Task.new(
        task_id=uuid.uuid4(),
        owner="o'brien",
        fields=TaskFields(
            "Été", "Straße\nzwei", True, Priority.HIGH, NOW.replace(microsecond=0) + timedelta(1)
        ),
        now=NOW,
    )
    return [plain, full]


def test_the_shape_names_the_entitys_fields_in_order() -> None:
    assert tuple(f.name for f in TASK_FIELDS) == Task._fields
    hints = get_type_hints(Task)
    for field in TASK_FIELDS:
        assert (type(None) in getattr(hints[field.name], "__args__", ())) is field.nullable


def test_the_table_and_the_api_schema_follow_the_shape() -> None:
    assert [c.name for c in TASK_COLUMNS] == [f.name for f in TASK_FIELDS]
    assert {c.name: c.nullable for c in TASK_COLUMNS} == {f.name: f.nullable for f in TASK_FIELDS}
    assert set(tasks.c.keys()) == {f.name for f in TASK_FIELDS} | {"search_text", "change_seq"}
    assert list(TaskOut.model_fields) == [f.name for f in TASK_FIELDS]


@pytest.mark.parametrize("task", _tasks())
def test_a_task_round_trips_through_its_row_and_its_document(task: Task) -> None:
    row = task_row(task)
    assert task_from([row[c.name] for c in TASK_COLUMNS]) == task
    document = orjson.loads(dumps(to_document(task)))
    assert from_document(document) == task


@pytest.mark.parametrize("task", _tasks())
def test_an_idempotency_outcome_keeps_the_task_as_the_api_returned_it(task: Task) -> None:
    outcome = IdempotentOutcome("f" * 64, NOW, task=task)
    stored = outcome_row(task.user_id, "key", outcome)
    assert stored["task"].encode() == dumps(task_body(task))
    assert outcome_from((stored["fingerprint"], stored["task"], stored["created_at"])) == outcome


def test_a_document_of_the_earlier_stored_form_still_reads() -> None:
    """Outcomes stored before the wire form were ``isoformat`` with ``+00:00``."""
    task = _tasks()[1]
    earlier = {**to_document(task)}
    for name in ("due_at", "completed_at", "created_at", "updated_at"):
        earlier[name] = getattr(task, name).isoformat()
    assert from_document(earlier) == task
