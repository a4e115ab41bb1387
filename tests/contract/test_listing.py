"""The list contract: filters, sorts, limit + 1, keyset pagination, owner scoping.

Expectations come from the reference model in ``tests.contract.reference``, never from
a store. Every test runs on every store (memory, SQLite, PostgreSQL).
"""

from __future__ import annotations

import itertools
import uuid
from datetime import timedelta, timezone

import pytest

from application.ports import Storage
from application.queries import Sort, SortField, Status, TaskFilter, TaskQuery
from domain.task import Priority, Task
from tests.contract.reference import (
    ALICE,
    ALL_SORTS,
    BASE,
    BOB,
    LARGEST_ID,
    SMALLEST_ID,
    expected_order,
    fetch_all,
    intruders,
    is_beyond,
    list_dataset,
    list_page,
    make_task,
    matches,
    position_after,
    sort_id,
    store,
    walk_pages,
)
from tests.support import SequentialIds

DEFAULT_SORT = Sort()
DAY = BASE + timedelta(hours=24)
PLUS_2 = timezone(timedelta(hours=2))
MINUS_5 = timezone(timedelta(hours=-5))


def _ids(tasks: list[Task]) -> list[uuid.UUID]:
    return [task.id for task in tasks]


@pytest.fixture
async def alice_tasks(storage: Storage) -> list[Task]:
    """Alice's list data set, stored alongside Bob's look-alike copies of it."""
    tasks = list_dataset(ALICE)
    await store(storage, *tasks, *intruders(tasks))
    return tasks


# ---------------------------------------------------------------- filters

FILTERS: dict[str, TaskFilter] = {
    "status-pending": TaskFilter(status=Status.PENDING),
    "status-completed": TaskFilter(status=Status.COMPLETED),
    "priority-low": TaskFilter(priority=Priority.LOW),
    "priority-medium": TaskFilter(priority=Priority.MEDIUM),
    "priority-high": TaskFilter(priority=Priority.HIGH),
    "text-upper-finds-mixed-case": TaskFilter(text="REPORT"),
    "text-lower-finds-mixed-case": TaskFilter(text="report"),
    "text-in-description-only": TaskFilter(text="qUARTERLY"),
    "text-title-or-description": TaskFilter(text="Apple"),
    "text-across-line-break": TaskFilter(text="LINE TWO"),
    "text-non-ascii": TaskFilter(text="Äpfel"),
    "text-percent": TaskFilter(text="%"),
    "text-percent-is-literal": TaskFilter(text="0%"),
    "text-underscore": TaskFilter(text="_"),
    "text-underscore-is-literal": TaskFilter(text="e_c"),
    "text-backslash": TaskFilter(text="\\"),
    "text-backslash-is-literal": TaskFilter(text="\\t"),
    "text-backslash-percent": TaskFilter(text="\\%"),
    "due-before": TaskFilter(due_before=DAY),
    "due-before-other-offset": TaskFilter(due_before=DAY.astimezone(PLUS_2)),
    "due-after": TaskFilter(due_after=DAY),
    "due-after-other-offset": TaskFilter(due_after=DAY.astimezone(MINUS_5)),
    "due-between-exclusive": TaskFilter(
        due_after=BASE + timedelta(hours=1), due_before=BASE + timedelta(hours=48)
    ),
    "combined": TaskFilter(
        status=Status.COMPLETED,
        priority=Priority.HIGH,
        text="E",
        due_before=BASE + timedelta(hours=30),
    ),
}


@pytest.mark.parametrize("flt", list(FILTERS.values()), ids=list(FILTERS))
async def test_filter_selects_exactly_the_matching_tasks(
    storage: Storage, alice_tasks: list[Task], flt: TaskFilter
) -> None:
    expected = [t for t in expected_order(alice_tasks, DEFAULT_SORT) if matches(t, flt)]
    # The data set makes every filter select some tasks but not all of them.
    assert 0 < len(expected) < len(alice_tasks)

    listed = await list_page(storage, ALICE, TaskQuery(filter=flt, limit=200))

    assert _ids(listed) == _ids(expected)
    assert listed == expected


async def test_filters_compare_due_dates_strictly_and_skip_tasks_without_one(
    storage: Storage, alice_tasks: list[Task]
) -> None:
    on_the_day = {t.id for t in alice_tasks if t.due_at == DAY}
    undated = {t.id for t in alice_tasks if t.due_at is None}
    assert on_the_day
    assert undated
    for flt in (
        TaskFilter(due_before=DAY),
        TaskFilter(due_after=DAY),
        TaskFilter(due_before=DAY.astimezone(PLUS_2)),
        TaskFilter(due_after=DAY.astimezone(MINUS_5)),
    ):
        listed = {t.id for t in await list_page(storage, ALICE, TaskQuery(filter=flt, limit=200))}
        assert listed
        assert not listed & on_the_day, f"{flt}: a task due exactly on the bound"
        assert not listed & undated, f"{flt}: a task without a due date"


CASE_FOLDING = {
    "accent-upper-found-by-lower": ("été", "Été à la plage"),
    "accent-lower-found-by-upper": ("ÉTÉ", "un été indien"),
    "sharp-s-found-by-ss": ("STRASSE", "Hauptstraße 5"),
    "ss-found-by-sharp-s": ("straße", "STRASSE sperren"),
    "greek-final-sigma": ("ΟΔΟΣ", "οδος"),
    "titlecase-digraph": ("ǆ", "Ǆungla"),
}


@pytest.mark.parametrize(("needle", "title"), list(CASE_FOLDING.values()), ids=list(CASE_FOLDING))
async def test_text_filter_folds_case_beyond_ascii(
    storage: Storage, ids: SequentialIds, needle: str, title: str
) -> None:
    """``q`` matches by Unicode full case folding (``str.casefold``) on every store."""
    found = make_task(ids.new_id(), title=title)
    other = make_task(ids.new_id(), title="Nothing alike", description="ete strase")
    await store(storage, found, other)
    flt = TaskFilter(text=needle)

    assert matches(found, flt)
    assert not matches(other, flt)
    assert await list_page(storage, ALICE, TaskQuery(filter=flt)) == [found]


async def test_filter_with_no_match_returns_nothing(
    storage: Storage, alice_tasks: list[Task]
) -> None:
    for flt in (
        TaskFilter(text="no such text"),
        TaskFilter(text="%%"),
        TaskFilter(text="__x__"),
        TaskFilter(status=Status.COMPLETED, text="report"),
        TaskFilter(due_after=DAY, due_before=DAY),
    ):
        assert not [t for t in alice_tasks if matches(t, flt)]
        assert await list_page(storage, ALICE, TaskQuery(filter=flt)) == []


# ---------------------------------------------------------------- sorts


@pytest.mark.parametrize("sort", ALL_SORTS, ids=sort_id)
async def test_sort_order_is_total_with_id_tie_break(
    storage: Storage, alice_tasks: list[Task], sort: Sort
) -> None:
    values = [sort.value_of(t) for t in alice_tasks]
    assert len(set(values)) < len(values), "the data set must have ties on every sort key"
    expected = expected_order(alice_tasks, sort)

    listed = await list_page(storage, ALICE, TaskQuery(sort=sort, limit=200))

    assert _ids(listed) == _ids(expected)
    assert listed == expected
    # Spelled out: within equal keys, ids run in the sort's direction.
    for before, after in itertools.pairwise(listed):
        if sort.value_of(before) == sort.value_of(after):
            assert (before.id > after.id) if sort.descending else (before.id < after.id)


@pytest.mark.parametrize("descending", [False, True], ids=["due_at", "-due_at"])
async def test_tasks_without_a_due_date_sort_last_both_ways(
    storage: Storage, alice_tasks: list[Task], descending: bool
) -> None:
    sort = Sort(SortField.DUE_AT, descending)
    undated = sum(t.due_at is None for t in alice_tasks)
    assert 1 < undated < len(alice_tasks)

    listed = await list_page(storage, ALICE, TaskQuery(sort=sort, limit=200))

    dated = len(listed) - undated
    assert all(t.due_at is not None for t in listed[:dated])
    assert all(t.due_at is None for t in listed[dated:])
    dues = [t.due_at for t in listed[:dated] if t.due_at is not None]
    assert dues == sorted(dues, reverse=descending)


async def test_priority_sorts_by_rank_and_title_by_code_point(
    storage: Storage, alice_tasks: list[Task]
) -> None:
    by_priority = await list_page(
        storage, ALICE, TaskQuery(sort=Sort(SortField.PRIORITY, False), limit=200)
    )
    ranks = [t.priority for t in by_priority]
    assert ranks == sorted(ranks, key=lambda p: p.rank)
    assert ranks[0] is Priority.LOW
    assert ranks[-1] is Priority.HIGH

    by_title = await list_page(
        storage, ALICE, TaskQuery(sort=Sort(SortField.TITLE, False), limit=200)
    )
    titles = [t.title for t in by_title]
    assert titles == sorted(titles, key=lambda s: [ord(c) for c in s])
    # Upper case before lower case; U+FF21 before an astral character (UTF-16 would swap them).
    assert titles.index("Apple") < titles.index("Zebra") < titles.index("apple")
    assert titles.index("\uff21 fullwidth") < titles.index("\U0001d518nicode astral")


# ---------------------------------------------------------------- limit


@pytest.mark.parametrize("limit", [1, 2, 7, 17, 18, 50])
async def test_list_returns_up_to_limit_plus_one(
    storage: Storage, alice_tasks: list[Task], limit: int
) -> None:
    for sort in (DEFAULT_SORT, Sort(SortField.DUE_AT, False)):
        expected = expected_order(alice_tasks, sort)[: limit + 1]

        listed = await list_page(storage, ALICE, TaskQuery(sort=sort, limit=limit))

        assert len(listed) == min(limit + 1, len(alice_tasks))
        assert _ids(listed) == _ids(expected)


# ---------------------------------------------------------------- keyset pagination


@pytest.mark.parametrize("sort", ALL_SORTS, ids=sort_id)
async def test_keyset_pages_walk_the_whole_list_once(
    storage: Storage, alice_tasks: list[Task], sort: Sort
) -> None:
    expected = expected_order(alice_tasks, sort)
    for page_size in (1, 2, 5, len(alice_tasks) - 1, len(alice_tasks)):
        walk = await walk_pages(storage, ALICE, TaskQuery(sort=sort, limit=page_size))

        assert len(set(_ids(walk.items))) == len(walk.items), f"repeats at limit {page_size}"
        assert _ids(walk.items) == _ids(expected), f"limit {page_size}"
        assert walk.pages == -(-len(expected) // page_size)


@pytest.mark.parametrize(
    ("sort", "flt"),
    [
        (Sort(SortField.DUE_AT, True), TaskFilter(status=Status.PENDING)),
        (Sort(SortField.TITLE, False), TaskFilter(text="a")),
        (Sort(SortField.PRIORITY, True), TaskFilter(due_before=BASE + timedelta(hours=49))),
        (Sort(SortField.UPDATED_AT, False), TaskFilter(priority=Priority.MEDIUM)),
    ],
    ids=["pending-by-due", "text-by-title", "due-before-by-priority", "medium-by-updated"],
)
async def test_keyset_pages_of_a_filtered_list(
    storage: Storage, alice_tasks: list[Task], sort: Sort, flt: TaskFilter
) -> None:
    expected = [t for t in expected_order(alice_tasks, sort) if matches(t, flt)]
    assert len(expected) > 2

    for page_size in (1, 2):
        query = TaskQuery(filter=flt, sort=sort, limit=page_size)
        walk = await walk_pages(storage, ALICE, query)
        assert _ids(walk.items) == _ids(expected)


@pytest.mark.parametrize("descending", [False, True], ids=["due_at", "-due_at"])
async def test_keyset_crosses_from_dated_to_undated_tasks(
    storage: Storage, alice_tasks: list[Task], descending: bool
) -> None:
    sort = Sort(SortField.DUE_AT, descending)
    expected = expected_order(alice_tasks, sort)
    first_undated = next(i for i, t in enumerate(expected) if t.due_at is None)
    last_dated = expected[first_undated - 1]

    # From the last dated task: every undated one follows, in id order.
    after_dated = await list_page(
        storage,
        ALICE,
        TaskQuery(sort=sort, limit=200, after=position_after(sort, last_dated)),
    )
    assert _ids(after_dated) == _ids(expected[first_undated:])

    # From an undated task: only the undated ones beyond it by id.
    after_undated = await list_page(
        storage,
        ALICE,
        TaskQuery(sort=sort, limit=200, after=position_after(sort, expected[first_undated])),
    )
    assert _ids(after_undated) == _ids(expected[first_undated + 1 :])

    # From the last task of all: nothing.
    after_last = await list_page(
        storage,
        ALICE,
        TaskQuery(sort=sort, limit=200, after=position_after(sort, expected[-1])),
    )
    assert after_last == []


def _before_and_after_ids(sort: Sort) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    """Ids that sort before / after every data set id when keys tie, in ``sort``'s direction."""
    low = [SMALLEST_ID, uuid.UUID(int=SMALLEST_ID.int + 1)]
    high = [LARGEST_ID, uuid.UUID(int=LARGEST_ID.int - 1)]
    return (high, low) if sort.descending else (low, high)


def _cursor_indices(expected: list[Task], sort: Sort) -> list[int]:
    indices = {0, 3, len(expected) // 2, len(expected) - 2}
    if sort.field is SortField.DUE_AT:
        first_undated = next(i for i, t in enumerate(expected) if t.due_at is None)
        indices |= {first_undated - 1, first_undated}
    return sorted(indices)


@pytest.mark.parametrize("sort", ALL_SORTS, ids=sort_id)
async def test_tasks_inserted_between_pages_are_never_repeated_or_skipped(
    storage: Storage, alice_tasks: list[Task], sort: Sort
) -> None:
    expected = expected_order(alice_tasks, sort)
    before_ids, after_ids = _before_and_after_ids(sort)

    for k in _cursor_indices(expected, sort):
        page = await list_page(storage, ALICE, TaskQuery(sort=sort, limit=k + 1))
        first = page[: k + 1]
        assert _ids(first) == _ids(expected[: k + 1])
        cursor = first[-1]
        position = position_after(sort, cursor)

        # Same key as the cursor or the first task, on either side of it by id;
        # and a copy of the last task that sorts after it.
        inserted_before = [
            cursor._replace(id=before_ids[0]),
            expected[0]._replace(id=before_ids[1]),
        ]
        inserted_after = [
            cursor._replace(id=after_ids[0]),
            expected[-1]._replace(id=after_ids[1]),
        ]
        for task in inserted_before:
            assert not is_beyond(sort, task, position)
        for task in inserted_after:
            assert is_beyond(sort, task, position)
        await store(storage, *inserted_before, *inserted_after)

        now_ordered = expected_order([*alice_tasks, *inserted_before, *inserted_after], sort)
        expected_rest = now_ordered[now_ordered.index(cursor) + 1 :]
        assert set(_ids(inserted_after)) <= set(_ids(expected_rest))

        for page_size in (1, 3):
            query = TaskQuery(sort=sort, limit=page_size, after=position)
            rest = (await walk_pages(storage, ALICE, query)).items
            assert _ids(rest) == _ids(expected_rest), f"cursor at {k}, limit {page_size}"
            walked = _ids(first) + _ids(rest)
            assert len(walked) == len(set(walked)), "a task was repeated"
            assert set(walked) == {t.id for t in alice_tasks} | set(_ids(inserted_after))

        async with storage.unit_of_work(ALICE) as uow:
            for task in [*inserted_before, *inserted_after]:
                assert await uow.tasks.delete(
                    task.id, expected_version=task.version, deleted_at=BASE
                )
            await uow.commit()


@pytest.mark.parametrize("sort", ALL_SORTS, ids=sort_id)
async def test_tasks_deleted_between_pages_do_not_disturb_the_walk(
    storage: Storage, alice_tasks: list[Task], sort: Sort
) -> None:
    expected = expected_order(alice_tasks, sort)
    k = len(expected) // 3
    page = await list_page(storage, ALICE, TaskQuery(sort=sort, limit=k + 1))
    cursor, lookahead = page[k], page[k + 1]
    assert _ids(page) == _ids(expected[: k + 2])

    # The cursor's own task and the one that would have come next both go.
    async with storage.unit_of_work(ALICE) as uow:
        for task in (cursor, lookahead):
            assert await uow.tasks.delete(task.id, expected_version=task.version, deleted_at=BASE)
        await uow.commit()

    query = TaskQuery(sort=sort, limit=2, after=position_after(sort, cursor))
    rest = (await walk_pages(storage, ALICE, query)).items
    assert _ids(rest) == _ids(expected[k + 2 :])


# ---------------------------------------------------------------- owner scoping


async def test_list_never_returns_another_owners_tasks(
    storage: Storage, alice_tasks: list[Task]
) -> None:
    bobs = intruders(alice_tasks)
    alice_keys = {(t.user_id, t.id) for t in alice_tasks}

    for sort in ALL_SORTS:
        for flt in (TaskFilter(), *FILTERS.values()):
            listed = await list_page(storage, ALICE, TaskQuery(filter=flt, sort=sort, limit=200))
            assert all(t.user_id == ALICE for t in listed)
            assert {(t.user_id, t.id) for t in listed} <= alice_keys

        # A cursor taken from one of Bob's tasks still yields only Alice's.
        walk = await walk_pages(
            storage,
            ALICE,
            TaskQuery(sort=sort, limit=4, after=position_after(sort, bobs[len(bobs) // 2])),
        )
        assert all(t.user_id == ALICE for t in walk.items)

    assert await fetch_all(storage, BOB) == expected_order(bobs, DEFAULT_SORT)
    assert await fetch_all(storage, "carol") == []
