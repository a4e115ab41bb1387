"""``TaskService`` over the in-memory store: use cases, ownership, preconditions, listing."""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from types import TracebackType

import pytest

from adapters.memory import MemoryStorage
from application.commands import UNSET, TaskPatch
from application.errors import ConcurrentUpdate, Forbidden, InvalidQuery, PreconditionFailed
from application.ports import (
    IdempotencyStore,
    TaskReader,
    TaskRepository,
    TaskWriter,
    UnitOfWork,
)
from application.principal import Principal
from application.queries import (
    Sort,
    SortField,
    Status,
    TaskFilter,
    TaskPage,
    TaskQuery,
)
from application.task_service import TaskService
from application.writer import UnitOfWorkWriter
from domain.errors import InvalidTask, TaskNotFound
from domain.task import Priority, Task, TaskFields
from tests.support import FixedClock, SequentialIds

ALICE = Principal("alice")
BOB = Principal("bob")
START = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
DUE = datetime(2026, 12, 1, 17, 0, tzinfo=UTC)
SOME_ID = "0192f5d0-8b7e-7c3a-9f10-2b6d7e4c1a55"


@pytest.fixture
def storage() -> MemoryStorage:
    return MemoryStorage()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture
def service(storage: MemoryStorage, clock: FixedClock) -> TaskService:
    return TaskService(storage, clock, SequentialIds())


async def add(
    service: TaskService,
    title: str = "Write the report",
    *,
    who: Principal = ALICE,
    description: str | None = "Quarterly numbers",
    completed: bool = False,
    priority: Priority = Priority.MEDIUM,
    due_at: datetime | None = DUE,
) -> Task:
    fields = TaskFields(
        title=title,
        description=description,
        completed=completed,
        priority=priority,
        due_at=due_at,
    )
    return await service.create(who, "me", fields)


# --- create and get ------------------------------------------------------------------------


async def test_create_returns_a_new_task_of_the_principal(
    service: TaskService, clock: FixedClock
) -> None:
    created_at = clock.current
    task = await service.create(ALICE, "alice", TaskFields(title="  Write the report "))
    assert task.user_id == "alice"
    assert task.title == "Write the report"
    assert task.version == 1
    assert task.created_at == task.updated_at == created_at
    assert task.completed_at is None
    assert await service.get(ALICE, "alice", str(task.id)) == task


async def test_create_gives_every_task_a_new_id(service: TaskService) -> None:
    ids = {(await add(service, f"task {i}")).id for i in range(5)}
    assert len(ids) == 5


async def test_me_is_an_alias_for_the_principal(service: TaskService) -> None:
    task = await service.create(ALICE, "me", TaskFields(title="via alias"))
    assert task.user_id == "alice"
    assert await service.get(ALICE, "alice", str(task.id)) == task
    assert await service.get(ALICE, "me", str(task.id)) == task
    page = await service.list(ALICE, "alice", TaskQuery())
    assert [t.id for t in page.items] == [task.id]


async def test_a_user_literally_named_upper_case_me_owns_his_tasks(service: TaskService) -> None:
    shouty = Principal("ME")
    task = await service.create(shouty, "ME", TaskFields(title="mine"))
    assert task.user_id == "ME"
    assert await service.get(shouty, "me", str(task.id)) == task
    with pytest.raises(TaskNotFound):
        await service.get(ALICE, "me", str(task.id))


async def test_create_a_completed_task(service: TaskService, clock: FixedClock) -> None:
    created_at = clock.current
    task = await add(service, completed=True)
    assert task.completed is True
    assert task.completed_at == created_at


async def test_get_returns_the_stored_task(service: TaskService) -> None:
    task = await add(service)
    assert await service.get(ALICE, "me", str(task.id)) == task
    assert await service.get(ALICE, "me", str(task.id).upper()) == task


async def test_another_users_task_is_not_found(service: TaskService) -> None:
    bobs = await add(service, who=BOB)
    with pytest.raises(TaskNotFound) as foreign:
        await service.get(ALICE, "me", str(bobs.id))
    missing = str(uuid.UUID(int=bobs.id.int + 1))
    with pytest.raises(TaskNotFound) as absent:
        await service.get(ALICE, "me", missing)
    # Nothing but the id the caller sent distinguishes the two.
    assert foreign.value.args == (str(bobs.id),)
    assert absent.value.args == (missing,)
    assert await service.get(BOB, "me", str(bobs.id)) == bobs


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "not-a-uuid",
        "me",
        "0192f5d08b7e7c3a9f102b6d7e4c1a55",
        "{0192f5d0-8b7e-7c3a-9f10-2b6d7e4c1a55}",
        " 0192f5d0-8b7e-7c3a-9f10-2b6d7e4c1a55",
        "1",
        "../etc/passwd",
    ],
)
async def test_a_malformed_id_is_not_found(service: TaskService, raw: str) -> None:
    await add(service)
    with pytest.raises(TaskNotFound):
        await service.get(ALICE, "me", raw)
    with pytest.raises(TaskNotFound):
        await service.patch(ALICE, "me", raw, TaskPatch(title="x"))
    with pytest.raises(TaskNotFound):
        await service.delete(ALICE, "me", raw)


# --- ownership: Forbidden before any I/O ---------------------------------------------------


class _NoIO:
    """A store that fails the test when the service asks it for anything."""

    def reader(self, owner: str) -> TaskReader:
        pytest.fail(f"a reader was opened (owner={owner!r})")

    def writer(self, owner: str) -> TaskWriter:
        pytest.fail(f"a writer was opened (owner={owner!r})")

    def unit_of_work(self, owner: str) -> UnitOfWork:
        pytest.fail(f"a unit of work was opened (owner={owner!r})")


Operation = Callable[[TaskService, str], Awaitable[object]]

OPERATIONS: dict[str, Operation] = {
    "create": lambda s, owner: s.create(ALICE, owner, TaskFields(title="t")),
    "create-idempotent": lambda s, owner: s.create(ALICE, owner, TaskFields(title="t"), "key-1"),
    "get": lambda s, owner: s.get(ALICE, owner, SOME_ID),
    "list": lambda s, owner: s.list(ALICE, owner, TaskQuery()),
    "replace": lambda s, owner: s.replace(ALICE, owner, SOME_ID, TaskFields(title="t")),
    "patch": lambda s, owner: s.patch(ALICE, owner, SOME_ID, TaskPatch(title="t")),
    "toggle": lambda s, owner: s.set_completed(ALICE, owner, SOME_ID, None),
    "complete": lambda s, owner: s.set_completed(ALICE, owner, SOME_ID, True),
    "delete": lambda s, owner: s.delete(ALICE, owner, SOME_ID),
    "patch-if-match": lambda s, owner: s.patch(
        ALICE, owner, SOME_ID, TaskPatch(), if_match=frozenset({1})
    ),
}


@pytest.mark.parametrize("owner", ["bob", "ME", "Me", "Alice", "alice ", " alice", ""])
@pytest.mark.parametrize("name", list(OPERATIONS))
async def test_a_foreign_owner_is_forbidden_before_any_io(name: str, owner: str) -> None:
    service = TaskService(_NoIO(), FixedClock(START), SequentialIds())
    with pytest.raises(Forbidden):
        await OPERATIONS[name](service, owner)


@pytest.mark.parametrize("name", list(OPERATIONS))
async def test_forbidden_leaves_the_other_users_tasks_alone(
    service: TaskService, name: str
) -> None:
    bobs = await add(service, who=BOB)
    service_ops: dict[str, Operation] = {
        **OPERATIONS,
        "get": lambda s, owner: s.get(ALICE, owner, str(bobs.id)),
        "delete": lambda s, owner: s.delete(ALICE, owner, str(bobs.id)),
        "toggle": lambda s, owner: s.set_completed(ALICE, owner, str(bobs.id), None),
    }
    with pytest.raises(Forbidden):
        await service_ops[name](service, "bob")
    page = await service.list(BOB, "me", TaskQuery())
    assert page.items == [bobs]


# --- mutations on tasks that are not the caller's ------------------------------------------


MUTATIONS: dict[str, Callable[[TaskService, str, frozenset[int] | None], Awaitable[object]]] = {
    "replace": lambda s, tid, m: s.replace(ALICE, "me", tid, TaskFields(title="x"), m),
    "patch": lambda s, tid, m: s.patch(ALICE, "me", tid, TaskPatch(title="x"), m),
    "toggle": lambda s, tid, m: s.set_completed(ALICE, "me", tid, None, m),
    "complete": lambda s, tid, m: s.set_completed(ALICE, "me", tid, True, m),
    "delete": lambda s, tid, m: s.delete(ALICE, "me", tid, m),
}


@pytest.mark.parametrize("if_match", [None, frozenset({1}), frozenset({99})])
@pytest.mark.parametrize("name", list(MUTATIONS))
async def test_changing_another_users_task_is_not_found(
    service: TaskService, name: str, if_match: frozenset[int] | None
) -> None:
    bobs = await add(service, who=BOB)
    # 404 before 412: a wrong If-Match must not reveal that the task exists.
    with pytest.raises(TaskNotFound):
        await MUTATIONS[name](service, str(bobs.id), if_match)
    assert await service.get(BOB, "me", str(bobs.id)) == bobs


@pytest.mark.parametrize("name", list(MUTATIONS))
async def test_changing_a_missing_task_is_not_found(service: TaskService, name: str) -> None:
    await add(service)
    with pytest.raises(TaskNotFound):
        await MUTATIONS[name](service, SOME_ID, None)


# --- If-Match ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(MUTATIONS))
async def test_a_wrong_if_match_fails_and_changes_nothing(service: TaskService, name: str) -> None:
    task = await add(service)
    with pytest.raises(PreconditionFailed):
        await MUTATIONS[name](service, str(task.id), frozenset({2}))
    with pytest.raises(PreconditionFailed):
        await MUTATIONS[name](service, str(task.id), frozenset())
    assert await service.get(ALICE, "me", str(task.id)) == task


@pytest.mark.parametrize("name", ["replace", "patch", "toggle", "complete"])
async def test_the_right_if_match_allows_the_write(service: TaskService, name: str) -> None:
    task = await add(service)
    updated = await MUTATIONS[name](service, str(task.id), frozenset({task.version}))
    assert isinstance(updated, Task)
    assert updated.version == 2
    assert await service.get(ALICE, "me", str(task.id)) == updated
    # Any of several listed versions matches, as with `If-Match: "a", "b"`.
    again = await service.patch(
        ALICE, "me", str(task.id), TaskPatch(title="again"), frozenset({1, 2, 7})
    )
    assert again.version == 3


async def test_the_right_if_match_allows_the_delete(service: TaskService) -> None:
    task = await add(service)
    await service.delete(ALICE, "me", str(task.id), frozenset({1}))
    with pytest.raises(TaskNotFound):
        await service.get(ALICE, "me", str(task.id))


async def test_a_stale_if_match_fails_after_another_write(service: TaskService) -> None:
    task = await add(service)
    await service.patch(ALICE, "me", str(task.id), TaskPatch(priority=Priority.HIGH))
    with pytest.raises(PreconditionFailed):
        await service.patch(ALICE, "me", str(task.id), TaskPatch(title="late"), frozenset({1}))
    current = await service.get(ALICE, "me", str(task.id))
    assert (current.title, current.priority, current.version) == (
        "Write the report",
        Priority.HIGH,
        2,
    )


# --- replace -------------------------------------------------------------------------------


async def test_replace_sets_every_writable_field(service: TaskService, clock: FixedClock) -> None:
    task = await add(service, priority=Priority.HIGH)
    clock.current = START + timedelta(hours=1)
    new_due = DUE + timedelta(days=3)
    replaced = await service.replace(
        ALICE,
        "me",
        str(task.id),
        TaskFields(
            title=" Renamed ",
            description="New",
            completed=True,
            priority=Priority.LOW,
            due_at=new_due,
        ),
    )
    assert replaced.fields() == TaskFields(
        title="Renamed", description="New", completed=True, priority=Priority.LOW, due_at=new_due
    )
    assert replaced.version == 2
    assert replaced.updated_at == replaced.completed_at == START + timedelta(hours=1)
    assert (replaced.id, replaced.user_id, replaced.created_at) == (
        task.id,
        task.user_id,
        task.created_at,
    )
    assert await service.get(ALICE, "me", str(task.id)) == replaced


async def test_replace_resets_omitted_fields_to_their_defaults(service: TaskService) -> None:
    task = await add(service, priority=Priority.HIGH, completed=True)
    replaced = await service.replace(ALICE, "me", str(task.id), TaskFields(title="Only a title"))
    assert replaced.description is None
    assert replaced.due_at is None
    assert replaced.priority is Priority.MEDIUM
    assert replaced.completed is False
    assert replaced.completed_at is None


async def test_replace_with_the_same_fields_keeps_the_version(
    service: TaskService, clock: FixedClock
) -> None:
    task = await add(service)
    clock.current = START + timedelta(hours=1)
    same = await service.replace(ALICE, "me", str(task.id), task.fields())
    assert same == task
    assert await service.get(ALICE, "me", str(task.id)) == task


# --- patch ---------------------------------------------------------------------------------


async def test_an_empty_patch_changes_nothing(service: TaskService, clock: FixedClock) -> None:
    task = await add(service, completed=True)
    clock.current = START + timedelta(hours=1)
    same = await service.patch(ALICE, "me", str(task.id), TaskPatch())
    assert same == task
    assert (same.version, same.updated_at, same.completed_at) == (
        1,
        task.updated_at,
        task.completed_at,
    )
    assert await service.get(ALICE, "me", str(task.id)) == task


async def test_a_patch_changes_only_the_fields_sent(
    service: TaskService, clock: FixedClock
) -> None:
    task = await add(service, priority=Priority.HIGH)
    clock.current = START + timedelta(hours=1)
    patched = await service.patch(ALICE, "me", str(task.id), TaskPatch(title="  Renamed  "))
    assert patched.fields() == replace(task.fields(), title="Renamed")
    assert patched.version == 2
    assert patched.updated_at == START + timedelta(hours=1)
    assert patched.created_at == task.created_at


async def test_a_patch_with_the_current_values_keeps_the_version(service: TaskService) -> None:
    task = await add(service)
    same = await service.patch(
        ALICE,
        "me",
        str(task.id),
        TaskPatch(title=task.title, description=task.description, due_at=task.due_at),
    )
    assert same == task


async def test_unset_description_is_kept_and_null_clears_it(service: TaskService) -> None:
    task = await add(service, description="keep me")
    kept = await service.patch(ALICE, "me", str(task.id), TaskPatch(title="other"))
    assert kept.description == "keep me"
    cleared = await service.patch(ALICE, "me", str(task.id), TaskPatch(description=None))
    assert cleared.description is None
    assert cleared.version == kept.version + 1
    assert cleared.title == "other"


async def test_unset_due_at_is_kept_and_null_clears_it(service: TaskService) -> None:
    task = await add(service, due_at=DUE)
    kept = await service.patch(ALICE, "me", str(task.id), TaskPatch(priority=Priority.LOW))
    assert kept.due_at == DUE
    cleared = await service.patch(ALICE, "me", str(task.id), TaskPatch(due_at=None))
    assert cleared.due_at is None
    assert cleared.priority is Priority.LOW
    moved = await service.patch(ALICE, "me", str(task.id), TaskPatch(due_at=DUE))
    assert moved.due_at == DUE
    assert moved.version == 4


async def test_patching_completed_maintains_completed_at(
    service: TaskService, clock: FixedClock
) -> None:
    task = await add(service)
    clock.current = START + timedelta(hours=2)
    done = await service.patch(ALICE, "me", str(task.id), TaskPatch(completed=True))
    assert done.completed_at == START + timedelta(hours=2)
    reopened = await service.patch(ALICE, "me", str(task.id), TaskPatch(completed=False))
    assert reopened.completed_at is None


async def test_an_invalid_patch_changes_nothing(service: TaskService) -> None:
    task = await add(service)
    with pytest.raises(InvalidTask):
        await service.patch(ALICE, "me", str(task.id), TaskPatch(title="   "))
    with pytest.raises(InvalidTask):
        await service.patch(ALICE, "me", str(task.id), TaskPatch(description="bell\x07"))
    with pytest.raises(InvalidTask):
        await service.patch(ALICE, "me", str(task.id), TaskPatch(due_at=datetime(2027, 1, 1)))
    assert await service.get(ALICE, "me", str(task.id)) == task


def test_task_patch_apply_to_distinguishes_unset_from_null() -> None:
    fields = TaskFields(title="t", description="d", priority=Priority.HIGH, due_at=DUE)
    assert TaskPatch().apply_to(fields) is fields
    assert TaskPatch().description is UNSET
    assert TaskPatch(description=None).apply_to(fields) == replace(fields, description=None)
    assert TaskPatch(due_at=None).apply_to(fields) == replace(fields, due_at=None)
    assert TaskPatch(completed=True, title=" x ").apply_to(fields) == replace(
        fields, completed=True, title="x"
    )
    with pytest.raises(InvalidTask):
        TaskPatch(title="").apply_to(fields)


# --- set_completed -------------------------------------------------------------------------


async def test_toggle_flips_completed(service: TaskService, clock: FixedClock) -> None:
    task = await add(service)
    clock.current = START + timedelta(hours=1)
    done = await service.set_completed(ALICE, "me", str(task.id), None)
    assert (done.completed, done.completed_at, done.version) == (
        True,
        START + timedelta(hours=1),
        2,
    )
    clock.current = START + timedelta(hours=2)
    reopened = await service.set_completed(ALICE, "me", str(task.id), None)
    assert (reopened.completed, reopened.completed_at, reopened.version) == (False, None, 3)
    assert reopened.updated_at == START + timedelta(hours=2)
    assert await service.get(ALICE, "me", str(task.id)) == reopened


@pytest.mark.parametrize("completed", [True, False])
async def test_setting_completed_is_idempotent(
    service: TaskService, clock: FixedClock, completed: bool
) -> None:
    task = await add(service)
    first = await service.set_completed(ALICE, "me", str(task.id), completed)
    clock.current = START + timedelta(days=1)
    second = await service.set_completed(ALICE, "me", str(task.id), completed)
    assert first.completed is completed
    assert first.version == (2 if completed else 1)
    assert second == first
    assert (second.version, second.updated_at, second.completed_at) == (
        first.version,
        first.updated_at,
        first.completed_at,
    )
    assert await service.get(ALICE, "me", str(task.id)) == first


async def test_set_completed_keeps_the_other_fields(service: TaskService) -> None:
    task = await add(service, priority=Priority.HIGH)
    done = await service.set_completed(ALICE, "me", str(task.id), True)
    assert done.fields() == replace(task.fields(), completed=True)


# --- delete --------------------------------------------------------------------------------


async def test_delete_removes_the_task(service: TaskService) -> None:
    task = await add(service)
    other = await add(service, "stays")
    await service.delete(ALICE, "me", str(task.id))
    with pytest.raises(TaskNotFound):
        await service.get(ALICE, "me", str(task.id))
    with pytest.raises(TaskNotFound):
        await service.delete(ALICE, "me", str(task.id))
    page = await service.list(ALICE, "me", TaskQuery())
    assert page.items == [other]


# --- listing: pagination -------------------------------------------------------------------


async def walk(service: TaskService, query: TaskQuery) -> tuple[list[Task], list[TaskPage]]:
    """Every page of ``query``, following ``next`` until it is None."""
    items: list[Task] = []
    pages: list[TaskPage] = []
    after = query.after
    for _ in range(1000):
        page = await service.list(ALICE, "me", replace(query, after=after))
        pages.append(page)
        items.extend(page.items)
        if page.next is None:
            return items, pages
        after = page.next
    pytest.fail("pagination did not end")


def sort_key(task: Task, field: SortField) -> datetime | int | str | None:
    match field:
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


def expected_order(tasks: list[Task], field: SortField, descending: bool) -> list[Task]:
    """The contract's order: by key, ties by id, tasks without the key last either way."""
    with_key = [t for t in tasks if sort_key(t, field) is not None]
    without = [t for t in tasks if sort_key(t, field) is None]
    with_key.sort(key=lambda t: (sort_key(t, field), t.id), reverse=descending)
    without.sort(key=lambda t: t.id, reverse=descending)
    return with_key + without


TITLES = ["gamma", "alpha", "beta", "alpha"]


async def seed(service: TaskService, clock: FixedClock, count: int = 17) -> list[Task]:
    """Tasks with many ties in every sort key, some without a due date, and some edited."""
    clock.step = timedelta(0)
    created: list[Task] = []
    for i in range(count):
        clock.current = START + timedelta(minutes=i // 3)  # created_at ties in threes
        created.append(
            await add(
                service,
                TITLES[i % len(TITLES)],
                description=f"task number {i}",
                completed=i % 3 == 0,
                priority=list(Priority)[(i * 5) % 3],
                due_at=None if i % 4 == 0 else DUE + timedelta(days=i % 3),
            )
        )
    for i in range(0, count, 2):  # every other task edited; updated_at ties in pairs
        clock.current = START + timedelta(hours=1, minutes=i // 4)
        await service.patch(ALICE, "me", str(created[i].id), TaskPatch(description=f"edit {i}"))
    # Another user's tasks never show up in Alice's listing.
    await add(service, "alpha", who=BOB, due_at=None)
    await add(service, "bob's", who=BOB)
    return [await service.get(ALICE, "me", str(t.id)) for t in created]


@pytest.mark.parametrize("descending", [False, True], ids=["asc", "desc"])
@pytest.mark.parametrize("field", list(SortField), ids=lambda f: f.value)
async def test_walking_all_pages_yields_the_full_sorted_list(
    service: TaskService, clock: FixedClock, field: SortField, descending: bool
) -> None:
    tasks = await seed(service, clock)
    expected = expected_order(tasks, field, descending)
    assert len({sort_key(t, field) for t in tasks}) < len(tasks)  # ties exist

    for limit in (1, 2, 3, 5, 16, 17, 18, 200):
        query = TaskQuery(sort=Sort(field, descending), limit=limit)
        items, pages = await walk(service, query)
        ids = [t.id for t in items]
        assert len(ids) == len(set(ids)), f"repeated task with limit={limit}"
        assert items == expected, f"wrong order with limit={limit}"
        assert all(len(p.items) == limit for p in pages[:-1])
        assert 1 <= len(pages[-1].items) <= limit
        assert len(pages) == -(-len(tasks) // limit)  # no empty trailing page


@pytest.mark.parametrize("descending", [False, True], ids=["asc", "desc"])
async def test_tasks_without_a_due_date_sort_last_both_ways(
    service: TaskService, clock: FixedClock, descending: bool
) -> None:
    tasks = await seed(service, clock)
    items, _ = await walk(service, TaskQuery(sort=Sort(SortField.DUE_AT, descending), limit=2))
    dues = [t.due_at for t in items]
    first_missing = dues.index(None)
    assert all(d is not None for d in dues[:first_missing])
    assert all(d is None for d in dues[first_missing:])
    assert len(items) == len(tasks)


async def test_priority_sorts_by_rank_not_by_name(service: TaskService) -> None:
    for priority in (Priority.MEDIUM, Priority.HIGH, Priority.LOW):
        await add(service, priority.value, priority=priority)
    page = await service.list(ALICE, "me", TaskQuery(sort=Sort(SortField.PRIORITY, False)))
    assert [t.priority for t in page.items] == [Priority.LOW, Priority.MEDIUM, Priority.HIGH]
    page = await service.list(ALICE, "me", TaskQuery(sort=Sort(SortField.PRIORITY, True)))
    assert [t.priority for t in page.items] == [Priority.HIGH, Priority.MEDIUM, Priority.LOW]


async def test_default_listing_is_newest_first(service: TaskService) -> None:
    tasks = [await add(service, f"task {i}") for i in range(3)]
    page = await service.list(ALICE, "me", TaskQuery())
    assert page.items == tasks[::-1]
    assert page.next is None


async def test_pages_stay_consistent_when_tasks_change_in_between(
    service: TaskService, clock: FixedClock
) -> None:
    tasks = await seed(service, clock)
    expected = expected_order(tasks, SortField.CREATED_AT, descending=True)
    first = await service.list(ALICE, "me", TaskQuery(limit=4))
    assert first.items == expected[:4]
    # Meanwhile: the task the cursor points at is deleted and a new one is created.
    await service.delete(ALICE, "me", str(first.items[-1].id))
    clock.current = START + timedelta(days=1)
    newest = await add(service, "newest")
    rest, _ = await walk(service, TaskQuery(limit=4, after=first.next))
    assert rest == expected[4:]
    assert newest not in rest


# --- listing: filters ----------------------------------------------------------------------


async def listed(service: TaskService, flt: TaskFilter) -> set[str]:
    items, _ = await walk(service, TaskQuery(filter=flt, limit=2))
    return {t.title for t in items}


async def test_status_filter(service: TaskService) -> None:
    await add(service, "open")
    await add(service, "done", completed=True)
    assert await listed(service, TaskFilter()) == {"open", "done"}
    assert await listed(service, TaskFilter(status=Status.ALL)) == {"open", "done"}
    assert await listed(service, TaskFilter(status=Status.PENDING)) == {"open"}
    assert await listed(service, TaskFilter(status=Status.COMPLETED)) == {"done"}


async def test_priority_filter(service: TaskService) -> None:
    for priority in Priority:
        await add(service, priority.value, priority=priority)
    for priority in Priority:
        assert await listed(service, TaskFilter(priority=priority)) == {priority.value}


async def test_text_filter_is_case_insensitive_in_title_or_description(
    service: TaskService,
) -> None:
    await add(service, "Write the REPORT", description=None)
    await add(service, "Numbers", description="for the quarterly report")
    await add(service, "Groceries", description="milk")
    await add(service, "Été", description=None)
    await add(service, "repor", description="t")  # the match must not span fields
    assert await listed(service, TaskFilter(text="report")) == {"Write the REPORT", "Numbers"}
    assert await listed(service, TaskFilter(text="RePoRt")) == {"Write the REPORT", "Numbers"}
    assert await listed(service, TaskFilter(text="MILK")) == {"Groceries"}
    assert await listed(service, TaskFilter(text="été")) == {"Été"}
    assert await listed(service, TaskFilter(text="nothing like it")) == set()


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("50%", {"50% done"}),
        ("%", {"50% done"}),
        ("a_c", {"a_c"}),
        ("_", {"a_c"}),
        ("\\", {"back\\slash"}),
        ("[a]", {"[a] bracket"}),
    ],
)
async def test_text_filter_matches_wildcards_literally(
    service: TaskService, text: str, matches: set[str]
) -> None:
    for title in ("50% done", "500 done", "a_c", "abc", "back\\slash", "[a] bracket", "a"):
        await add(service, title, description=None)
    assert await listed(service, TaskFilter(text=text)) == matches


async def test_due_filters_leave_out_tasks_without_a_due_date(service: TaskService) -> None:
    await add(service, "early", due_at=DUE - timedelta(days=2))
    await add(service, "middle", due_at=DUE)
    await add(service, "late", due_at=DUE + timedelta(days=2))
    await add(service, "undated", due_at=None)
    before = DUE + timedelta(days=1)
    after = DUE - timedelta(days=1)
    assert await listed(service, TaskFilter(due_before=before)) == {"early", "middle"}
    assert await listed(service, TaskFilter(due_after=after)) == {"middle", "late"}
    assert await listed(service, TaskFilter(due_before=before, due_after=after)) == {"middle"}
    far_future = DUE + timedelta(days=3650)
    far_past = DUE - timedelta(days=3650)
    assert await listed(service, TaskFilter(due_before=far_future)) == {"early", "middle", "late"}
    assert await listed(service, TaskFilter(due_after=far_past)) == {"early", "middle", "late"}


async def test_filters_combine_with_pagination(service: TaskService, clock: FixedClock) -> None:
    tasks = await seed(service, clock)
    flt = TaskFilter(status=Status.PENDING, text="EDIT")
    wanted = [t for t in tasks if not t.completed and "edit" in (t.description or "")]
    assert 2 < len(wanted) < len(tasks)
    for field in SortField:
        query = TaskQuery(filter=flt, sort=Sort(field, descending=False), limit=2)
        items, _ = await walk(service, query)
        assert items == expected_order(wanted, field, descending=False)


def test_search_text_of_200_characters_is_accepted() -> None:
    assert TaskFilter(text="q" * 200).text == "q" * 200


def test_search_text_longer_than_200_characters_is_rejected() -> None:
    with pytest.raises(InvalidQuery) as excinfo:
        TaskFilter(text="q" * 201)
    assert excinfo.value.field == "q"


@pytest.mark.parametrize("text", ["\x00", "a\nb", "tab\there", "\x1b[31m", "\x7f", "\x85", "\x9f"])
def test_search_text_with_control_characters_is_rejected(text: str) -> None:
    with pytest.raises(InvalidQuery) as excinfo:
        TaskFilter(text=text)
    assert excinfo.value.field == "q"


def test_search_text_with_a_lone_surrogate_is_rejected() -> None:
    with pytest.raises(InvalidQuery) as excinfo:
        TaskFilter(text="a\ud800")
    assert excinfo.value.field == "q"


# --- concurrency: a write that loses a race ------------------------------------------------


@dataclass
class Race:
    """Makes the next ``losses`` writes fail as if another writer got there first.

    With ``rival`` set, that other writer really commits its change (as soon as
    the losing transaction ends), so a retry sees a newer version.
    """

    losses: int = 1
    rival: str | None = "edited by someone else"
    writes: int = 0
    pending: tuple[str, uuid.UUID] | None = None


class RacingRepository:
    def __init__(self, inner: TaskRepository, owner: str, race: Race) -> None:
        self._inner = inner
        self._owner = owner
        self._race = race

    async def add(self, task: Task) -> None:
        await self._inner.add(task)

    async def get(self, task_id: uuid.UUID) -> Task | None:
        return await self._inner.get(task_id)

    async def update(self, task: Task, *, expected_version: int) -> bool:
        if self._lose(self._owner, task.id):
            return False
        return await self._inner.update(task, expected_version=expected_version)

    async def delete(
        self, task_id: uuid.UUID, *, expected_version: int, deleted_at: datetime
    ) -> bool:
        if self._lose(self._owner, task_id):
            return False
        return await self._inner.delete(
            task_id, expected_version=expected_version, deleted_at=deleted_at
        )

    async def purge_tombstones(self, *, deleted_before: datetime, limit: int) -> int:
        return await self._inner.purge_tombstones(deleted_before=deleted_before, limit=limit)

    async def list(self, query: TaskQuery) -> builtins.list[Task]:
        return await self._inner.list(query)

    def _lose(self, owner: str, task_id: uuid.UUID) -> bool:
        self._race.writes += 1
        if self._race.losses <= 0:
            return False
        self._race.losses -= 1
        if self._race.rival is not None:
            self._race.pending = (owner, task_id)
        return True


class RacingUnitOfWork:
    def __init__(self, storage: MemoryStorage, owner: str, race: Race) -> None:
        self._storage = storage
        self._owner = owner
        self._inner = storage.unit_of_work(owner)
        self._race = race

    @property
    def tasks(self) -> TaskRepository:
        return RacingRepository(self._inner.tasks, self._owner, self._race)

    @property
    def idempotency(self) -> IdempotencyStore:
        return self._inner.idempotency

    async def __aenter__(self) -> RacingUnitOfWork:
        await self._inner.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._inner.__aexit__(exc_type, exc, tb)
        if self._race.pending is not None and self._race.rival is not None:
            owner, task_id = self._race.pending
            self._race.pending = None
            async with self._storage.unit_of_work(owner) as uow:
                current = await uow.tasks.get(task_id)
                assert current is not None
                rival = current.with_fields(
                    replace(current.fields(), description=self._race.rival), START
                )
                assert await uow.tasks.update(rival, expected_version=current.version)
                await uow.commit()

    async def commit(self) -> None:
        await self._inner.commit()


class RacingStorage:
    def __init__(self, storage: MemoryStorage, race: Race) -> None:
        self._storage = storage
        self._race = race

    def reader(self, owner: str) -> TaskReader:
        return self._storage.reader(owner)

    def writer(self, owner: str) -> TaskWriter:
        return UnitOfWorkWriter(self.unit_of_work, owner)

    def unit_of_work(self, owner: str) -> RacingUnitOfWork:
        return RacingUnitOfWork(self._storage, owner, self._race)


async def racing_setup(
    storage: MemoryStorage, clock: FixedClock, race: Race, attempts: int = 5
) -> tuple[TaskService, Task]:
    plain = TaskService(storage, clock, SequentialIds())
    task = await add(plain, description="original")
    racing = TaskService(
        RacingStorage(storage, race), clock, SequentialIds(), write_attempts=attempts
    )
    return racing, task


async def test_a_lost_race_is_retried_on_the_newer_version(
    storage: MemoryStorage, clock: FixedClock
) -> None:
    race = Race()
    service, task = await racing_setup(storage, clock, race)
    patched = await service.patch(ALICE, "me", str(task.id), TaskPatch(title="ours"))
    assert race.writes == 2
    # Both writes survive: the rival's description and our title (last write wins per field).
    assert (patched.title, patched.description, patched.version) == (
        "ours",
        "edited by someone else",
        3,
    )
    assert await service.get(ALICE, "me", str(task.id)) == patched


async def test_a_lost_race_with_if_match_is_a_failed_precondition(
    storage: MemoryStorage, clock: FixedClock
) -> None:
    race = Race()
    service, task = await racing_setup(storage, clock, race)
    with pytest.raises(PreconditionFailed):
        await service.patch(
            ALICE, "me", str(task.id), TaskPatch(title="ours"), if_match=frozenset({1})
        )
    assert race.writes == 1
    stored = await service.get(ALICE, "me", str(task.id))
    assert (stored.title, stored.description, stored.version) == (
        "Write the report",
        "edited by someone else",
        2,
    )


async def test_a_lost_race_without_a_rival_write_is_retried(
    storage: MemoryStorage, clock: FixedClock
) -> None:
    race = Race(rival=None)
    service, task = await racing_setup(storage, clock, race)
    done = await service.set_completed(ALICE, "me", str(task.id), None)
    assert race.writes == 2
    assert (done.completed, done.version) == (True, 2)
    assert await service.get(ALICE, "me", str(task.id)) == done


async def test_a_lost_race_on_delete(storage: MemoryStorage, clock: FixedClock) -> None:
    race = Race()
    service, task = await racing_setup(storage, clock, race)
    with pytest.raises(PreconditionFailed):
        await service.delete(ALICE, "me", str(task.id), if_match=frozenset({1}))
    stored = await service.get(ALICE, "me", str(task.id))
    assert stored.version == 2

    race.losses = 1
    await service.delete(ALICE, "me", str(task.id))
    with pytest.raises(TaskNotFound):
        await service.get(ALICE, "me", str(task.id))


@pytest.mark.parametrize("name", ["patch", "delete"])
async def test_losing_every_race_gives_up_after_the_configured_attempts(
    storage: MemoryStorage, clock: FixedClock, name: str
) -> None:
    race = Race(losses=1_000, rival=None)
    service, task = await racing_setup(storage, clock, race, attempts=3)
    with pytest.raises(ConcurrentUpdate):
        await MUTATIONS[name](service, str(task.id), None)
    assert race.writes == 3
    assert await service.get(ALICE, "me", str(task.id)) == task


class CountingStorage:
    """The memory store, counting the units of work and the writes alone it is asked for."""

    def __init__(self, storage: MemoryStorage) -> None:
        self._storage = storage
        self.units_of_work = 0
        self.writes_alone = 0

    def reader(self, owner: str) -> TaskReader:
        return self._storage.reader(owner)

    def writer(self, owner: str) -> TaskWriter:
        self.writes_alone += 1
        return self._storage.writer(owner)

    def unit_of_work(self, owner: str) -> UnitOfWork:
        self.units_of_work += 1
        return self._storage.unit_of_work(owner)


@pytest.mark.parametrize("name", ["replace", "patch", "toggle", "complete"])
@pytest.mark.parametrize("if_match", [None, frozenset({1})])
async def test_an_uncontended_change_is_one_write_with_no_lock_before_it(
    storage: MemoryStorage, clock: FixedClock, name: str, if_match: frozenset[int] | None
) -> None:
    """A read and one conditional write (on PostgreSQL two round trips, where
    the locked unit of work takes four); the unit of work only after a conflict."""
    task = await add(TaskService(storage, clock, SequentialIds()))
    counting = CountingStorage(storage)
    updated = await MUTATIONS[name](
        TaskService(counting, clock, SequentialIds()), str(task.id), if_match
    )
    assert isinstance(updated, Task)
    assert updated.version == 2
    assert (counting.writes_alone, counting.units_of_work) == (1, 0)
    assert await storage.reader("alice").get(task.id) == updated
