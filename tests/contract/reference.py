"""Helpers for the repository contract: task builders, store shortcuts and a reference model.

The reference model (``expected_order``, ``matches``) restates the Listing section of
the API contract in plain Python, independently of every adapter; tests compare what
a store returns against it.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from application.ports import Storage
from application.queries import (
    PAGE_SIZE_MAX,
    Position,
    Sort,
    SortField,
    Status,
    TaskFilter,
    TaskQuery,
)
from domain.task import Priority, Task, TaskFields
from tests.support import SequentialIds

ALICE = "alice"
BOB = "bob"
BASE = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)

ALL_SORTS = [Sort(field, descending) for field in SortField for descending in (False, True)]
SMALLEST_ID = uuid.UUID(int=1)
LARGEST_ID = uuid.UUID(int=2**128 - 1)


def sort_id(sort: Sort) -> str:
    return ("-" if sort.descending else "") + sort.field.value


def make_task(
    task_id: uuid.UUID,
    *,
    owner: str = ALICE,
    title: str = "A task",
    description: str | None = None,
    completed: bool = False,
    priority: Priority = Priority.MEDIUM,
    due_at: datetime | None = None,
    created_at: datetime = BASE,
    updated_at: datetime | None = None,
    version: int = 1,
) -> Task:
    """A valid task (its fields go through the domain's checks)."""
    fields = TaskFields(
        title=title,
        description=description,
        completed=completed,
        priority=priority,
        due_at=due_at,
    )
    task = Task.new(task_id=task_id, owner=owner, fields=fields, now=created_at)
    return task._replace(updated_at=updated_at or created_at, version=version)


# ---------------------------------------------------------------- store shortcuts


async def store(storage: Storage, *tasks: Task) -> None:
    """Add and commit ``tasks``, one unit of work per owner."""
    owners = dict.fromkeys(task.user_id for task in tasks)
    for owner in owners:
        async with storage.unit_of_work(owner) as uow:
            for task in tasks:
                if task.user_id == owner:
                    await uow.tasks.add(task)
            await uow.commit()


async def fetch(storage: Storage, owner: str, task_id: uuid.UUID) -> Task | None:
    """The committed task, through the owner's reader."""
    return await storage.reader(owner).get(task_id)


async def fetch_all(storage: Storage, owner: str) -> list[Task]:
    """Every committed task of ``owner`` (at most one full page), in the default order."""
    tasks = await storage.reader(owner).list(TaskQuery(limit=PAGE_SIZE_MAX))
    assert len(tasks) <= PAGE_SIZE_MAX, "more tasks than fetch_all reads"
    return tasks


async def list_page(storage: Storage, owner: str, query: TaskQuery) -> list[Task]:
    return await storage.reader(owner).list(query)


def position_after(sort: Sort, task: Task) -> Position:
    """Where a page that ended with ``task`` resumes."""
    return Position(sort.value_of(task), task.id)


@dataclass
class Walk:
    """Pages read so far by ``walk_pages``."""

    items: list[Task]
    pages: int


async def walk_pages(
    storage: Storage, owner: str, query: TaskQuery, *, max_pages: int = 500
) -> Walk:
    """Read every page of ``query`` (from ``query.after``) and check each page's shape."""
    collected: list[Task] = []
    query_page = query
    lookahead: Task | None = None
    for pages in range(1, max_pages + 1):
        page = await list_page(storage, owner, query_page)
        assert len(page) <= query.limit + 1, f"page of {len(page)} rows for limit {query.limit}"
        items = page[: query.limit]
        if lookahead is not None:
            assert items, "the previous page promised more rows"
            assert items[0] == lookahead, "the extra row is not the next page's first row"
        collected += items
        if len(page) <= query.limit:
            return Walk(collected, pages)
        lookahead = page[query.limit]
        query_page = replace(query, after=position_after(query.sort, items[-1]))
    raise AssertionError(f"pagination did not end within {max_pages} pages")


# ---------------------------------------------------------------- reference model


def _key(sort: Sort, task: Task) -> tuple[Any, uuid.UUID]:
    return (sort.value_of(task), task.id)


def expected_order(tasks: list[Task], sort: Sort) -> list[Task]:
    """The contract's order: sort key then id, both in the sort's direction; nulls last."""
    present = [t for t in tasks if sort.value_of(t) is not None]
    missing = [t for t in tasks if sort.value_of(t) is None]
    present.sort(key=lambda t: _key(sort, t), reverse=sort.descending)
    missing.sort(key=lambda t: t.id, reverse=sort.descending)
    return present + missing


def is_beyond(sort: Sort, task: Task, position: Position) -> bool:
    """Whether ``task`` comes strictly after ``position`` in ``sort`` order."""
    value = sort.value_of(task)

    def later(a: Any, b: Any) -> bool:
        return bool(a < b) if sort.descending else bool(a > b)

    if value is None and position.value is None:
        return later(task.id, position.id)
    if value is None:
        return True
    if position.value is None:
        return False
    if value == position.value:
        return later(task.id, position.id)
    return later(value, position.value)


def matches(task: Task, flt: TaskFilter) -> bool:
    """The contract's filter semantics, written out plainly."""
    if flt.status is Status.PENDING and task.completed:
        return False
    if flt.status is Status.COMPLETED and not task.completed:
        return False
    if flt.priority is not None and task.priority is not flt.priority:
        return False
    if flt.text:
        # Case-insensitive by Unicode full case folding: "straße" finds "STRASSE".
        needle = flt.text.casefold()
        haystacks = [task.title, task.description or ""]
        if not any(needle in h.casefold() for h in haystacks):
            return False
    if flt.due_before is not None and (task.due_at is None or not task.due_at < flt.due_before):
        return False
    return flt.due_after is None or (task.due_at is not None and task.due_at > flt.due_after)


# ---------------------------------------------------------------- the list data set

_H = timedelta(hours=1)

# title, description, completed, priority, due_at (hours after BASE, or None)
_SPECS: list[tuple[str, str | None, bool, Priority, float | None]] = [
    ("Write the report", "Quarterly numbers", False, Priority.HIGH, 24),
    ("write the REPORT", None, False, Priority.LOW, None),
    ("100% done", "progress\nline two", False, Priority.MEDIUM, 24),
    ("100 done", None, False, Priority.MEDIUM, 48),
    ("snake_case name", None, False, Priority.HIGH, None),
    ("snakeXcase name", "", False, Priority.LOW, 1),
    ("C:\\temp\\file", None, False, Priority.MEDIUM, -5),
    ("C:temp", "path C:/temp", False, Priority.LOW, None),
    ("Äpfel kaufen", "Obst: Äpfel und Birnen", False, Priority.MEDIUM, 24),
    ("émoji 🎉 party", "🎉🎉", False, Priority.HIGH, 72),
    ("\uff21 fullwidth", None, False, Priority.LOW, 1),
    ("\U0001d518nicode astral", None, False, Priority.MEDIUM, None),
    ("apple", "an Apple a day", True, Priority.HIGH, 48),
    ("Apple", None, True, Priority.MEDIUM, 0.5),
    ("apple", "duplicate title", True, Priority.LOW, None),
    ("Zebra", "50\\% off", True, Priority.HIGH, 24),
    ("zebra crossing", "mind_the_gap", True, Priority.MEDIUM, -5),
    ("Ünïcödé ✓", "Line one\r\nLine two\ttabbed", False, Priority.HIGH, None),
]


def list_dataset(owner: str = ALICE, seed: int = 20261126) -> list[Task]:
    """Tasks with ties on every sort key, null due dates, and text that tests escaping.

    Ids are shuffled against creation order so that ``id`` tie-breaks are not
    accidentally the creation order.
    """
    generator = SequentialIds()
    ids = [generator.new_id() for _ in _SPECS]
    random.Random(seed).shuffle(ids)
    tasks = []
    for i, (title, description, completed, priority, due_hours) in enumerate(_SPECS):
        # Pairs share created_at; updated_at repeats every 7 and has microseconds.
        created_at = BASE + timedelta(seconds=i // 2, microseconds=(i // 2) * 1111)
        updated_at = BASE + 2 * _H + timedelta(minutes=(i * 5) % 7, microseconds=(i % 2) * 500_001)
        tasks.append(
            make_task(
                ids[i],
                owner=owner,
                title=title,
                description=description,
                completed=completed,
                priority=priority,
                due_at=None if due_hours is None else BASE + due_hours * _H,
                created_at=created_at,
                updated_at=updated_at,
                version=1 + i % 3,
            )
        )
    return tasks


def intruders(owned: list[Task]) -> list[Task]:
    """Bob's copies of Alice's tasks; they match whatever hers match.

    Every other copy keeps her task's id; the rest get a neighbouring id, so that
    they sort right next to hers.
    """
    return [
        task._replace(user_id=BOB, id=task.id if i % 2 else uuid.UUID(int=task.id.int ^ 1))
        for i, task in enumerate(owned)
    ]
