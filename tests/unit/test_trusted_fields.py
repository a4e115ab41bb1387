"""Untrusted fields are checked once, when parsed; trusted construction checks nothing again."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

import domain.task
from application.commands import TaskPatch
from domain.task import Priority, Task, TaskFields

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


@pytest.fixture
def checks() -> Iterator[list[str]]:
    """Records every field check the domain runs from now on."""
    ran: list[str] = []
    original = dict(domain.task.FIELD_CHECKS)

    def recording(name: str) -> Any:
        def check(value: Any) -> Any:
            ran.append(name)
            return original[name](value)

        return check

    for name in original:
        domain.task.FIELD_CHECKS[name] = recording(name)
    yield ran
    domain.task.FIELD_CHECKS.update(original)


def test_parsing_fields_checks_each_once(checks: list[str]) -> None:
    TaskFields(" Report ", "Numbers", due_at=NOW)
    assert sorted(checks) == ["description", "due_at", "title"]


def test_a_trusted_task_changes_without_checking_again(checks: list[str]) -> None:
    fields = TaskFields.trusted(
        title="Report", description=None, completed=False, priority=Priority.LOW, due_at=None
    )
    task = Task.new(task_id=uuid.uuid4(), owner="alice", fields=fields, now=NOW)
    patched = task.with_fields(TaskPatch.trusted(title="Renamed").apply_to(task.fields()), NOW)
    toggled = patched.toggle(NOW).set_completed(False, NOW)
    assert (toggled.title, toggled.version) == ("Renamed", 4)
    assert checks == []


def test_a_parsed_patch_checks_only_what_was_sent(checks: list[str]) -> None:
    assert TaskPatch(title="  Renamed ").title == "Renamed"
    assert checks == ["title"]
