"""``GET /api/{user_id}/tasks``: sorting, filters, limits and keyset pagination."""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.support import auth
from tests.support.http import (
    Json,
    assert_api_headers,
    assert_problem,
    assert_task,
    assert_validation_error,
    create,
    next_link,
    parse_time,
    tasks_url,
)

RANK = {"low": 1, "medium": 2, "high": 3}
SORTS = [
    "created_at",
    "-created_at",
    "updated_at",
    "-updated_at",
    "due_at",
    "-due_at",
    "priority",
    "-priority",
    "title",
    "-title",
]
Params = dict[str, str | int]
BetweenPages = Callable[[httpx.AsyncClient, int], Awaitable[None]]

# Ties on title, priority and due date, tasks without a due date, mixed case.
SPECS: list[Json] = [
    {"title": "Pay rent", "priority": "high", "due_at": "2030-01-05T09:00:00Z"},
    {"title": "buy milk", "description": "Semi-skimmed", "priority": "low"},
    {"title": "Call mom", "due_at": "2030-01-02T09:00:00Z", "completed": True},
    {"title": "Pay rent", "priority": "low", "due_at": "2030-01-05T09:00:00Z"},
    {"title": "Renew passport", "description": "Needs a PHOTO", "priority": "high"},
    {"title": "water plants", "due_at": "2030-01-03T12:00:00+02:00"},
    {"title": "Zebra crossing", "completed": True},
    {"title": "100% done", "priority": "low", "due_at": "2030-01-10T00:00:00Z"},
    {"title": "under_score", "priority": "high", "due_at": "2030-01-01T00:00:00Z"},
    {"title": "Émile", "description": "rendez-vous"},
    {"title": "apple", "priority": "high", "due_at": "2030-01-04T00:00:00Z", "completed": True},
]


# --- helpers -----------------------------------------------------------------


def sort_value(task: Json, field: str) -> Any:
    value = task[field]
    if value is None:
        return None
    if field == "priority":
        return RANK[value]
    if field.endswith("_at"):
        return parse_time(value)
    return value


def expected_ids(tasks: list[Json], sort: str) -> list[str]:
    """The contract's order: by key (priority by rank), missing last, ties by id."""
    descending = sort.startswith("-")
    field = sort.lstrip("-")
    present = [t for t in tasks if sort_value(t, field) is not None]
    missing = [t for t in tasks if sort_value(t, field) is None]
    present.sort(key=lambda t: (sort_value(t, field), uuid.UUID(t["id"])), reverse=descending)
    missing.sort(key=lambda t: uuid.UUID(t["id"]), reverse=descending)
    return [t["id"] for t in present + missing]


def ids(tasks: list[Json]) -> list[str]:
    return [task["id"] for task in tasks]


async def get_list(
    client: httpx.AsyncClient, params: Params | None = None, *, sub: str = "alice", user: str = "me"
) -> httpx.Response:
    return await client.get(tasks_url(user), params=params or {}, headers=auth(sub))


async def listed(client: httpx.AsyncClient, params: Params | None = None) -> list[Json]:
    """One page as alice; a 200 JSON array of her tasks, checked item by item."""
    response = await get_list(client, params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert_api_headers(response)
    body = response.json()
    assert isinstance(body, list)
    for task in body:
        assert_task(task, "alice")
    return body


async def walk(
    client: httpx.AsyncClient,
    params: Params,
    *,
    sub: str = "alice",
    between_pages: BetweenPages | None = None,
) -> list[list[Json]]:
    """Every page, following ``Link: rel="next"``; checks each link on the way.

    ``between_pages(client, page_number)`` runs after each page but the last.
    """
    response = await get_list(client, params, sub=sub)
    pages: list[list[Json]] = []
    while True:
        assert response.status_code == 200, response.text
        page: list[Json] = response.json()
        pages.append(page)
        assert len(page) <= int(params["limit"])
        link = next_link(response)
        if link is None:
            return pages
        assert re.fullmatch(r'<[^>]+>; rel="next"', response.headers["link"])
        assert len(page) == int(params["limit"])
        parts = urlsplit(link)
        assert parts.path == "/api/me/tasks"
        query = parse_qs(parts.query)
        assert query.keys() == {*map(str, params), "cursor"}
        assert {name: values[0] for name, values in query.items() if name != "cursor"} == {
            name: str(value) for name, value in params.items()
        }
        assert len(query["cursor"]) == 1
        if between_pages is not None:
            await between_pages(client, len(pages))
        assert len(pages) < 100, "pagination does not end"
        response = await client.get(link, headers=auth(sub))


def cursor_of(response: httpx.Response) -> str:
    link = next_link(response)
    assert link is not None
    return parse_qs(urlsplit(link).query)["cursor"][0]


@pytest.fixture
async def catalog(client: httpx.AsyncClient) -> list[Json]:
    """alice's tasks (some updated after creation) as the API lists them; bob has some too."""
    created = [await create(client, "alice", **spec) for spec in SPECS]
    for index in (2, 6, 3):
        response = await client.patch(
            tasks_url("me", created[index]["id"]),
            json={"description": f"updated {index}"},
            headers=auth("alice"),
        )
        assert response.status_code == 200
    for title in ("bob's", "Pay rent"):
        await create(client, "bob", title=title, due_at="2030-01-03T00:00:00Z")
    tasks = await listed(client, {"limit": 200})
    assert len(tasks) == len(SPECS)
    return tasks


# --- order -------------------------------------------------------------------


async def test_default_sort_is_newest_first(client: httpx.AsyncClient, catalog: list[Json]) -> None:
    default = await listed(client)
    assert ids(default) == expected_ids(catalog, "-created_at")
    assert default == await listed(client, {"sort": "-created_at"})
    created = [parse_time(task["created_at"]) for task in default]
    assert created == sorted(created, reverse=True)


@pytest.mark.parametrize("sort", SORTS)
async def test_every_sort_key_both_ways(
    client: httpx.AsyncClient, catalog: list[Json], sort: str
) -> None:
    tasks = await listed(client, {"sort": sort})
    assert sorted(ids(tasks)) == sorted(ids(catalog))
    assert ids(tasks) == expected_ids(catalog, sort)


@pytest.mark.parametrize("sort", ["priority", "-priority"])
async def test_priority_sorts_by_rank(
    client: httpx.AsyncClient, catalog: list[Json], sort: str
) -> None:
    ranks = [RANK[task["priority"]] for task in await listed(client, {"sort": sort})]
    assert ranks == sorted(ranks, reverse=sort.startswith("-"))
    assert set(ranks) == {1, 2, 3}


@pytest.mark.parametrize("sort", ["due_at", "-due_at"])
async def test_tasks_without_due_date_sort_last_both_ways(
    client: httpx.AsyncClient, catalog: list[Json], sort: str
) -> None:
    dues = [task["due_at"] for task in await listed(client, {"sort": sort})]
    dated = [parse_time(due) for due in dues if due is not None]
    assert dues[len(dated) :] == [None] * (len(dues) - len(dated))
    assert dated == sorted(dated, reverse=sort == "-due_at")
    assert 0 < len(dated) < len(dues)


async def test_title_sort_is_by_code_point(client: httpx.AsyncClient, catalog: list[Json]) -> None:
    titles = [task["title"] for task in await listed(client, {"sort": "title"})]
    assert titles == sorted(titles)
    assert titles[0] == "100% done"
    assert titles[-1] == "Émile"


# --- filters -----------------------------------------------------------------


def matching(catalog: list[Json], **expected: Any) -> list[str]:
    return expected_ids(
        [t for t in catalog if all(t[k] == v for k, v in expected.items())], "-created_at"
    )


@pytest.mark.parametrize(
    ("status", "completed"), [("pending", False), ("completed", True), ("all", None)]
)
async def test_status_filter(
    client: httpx.AsyncClient, catalog: list[Json], status: str, completed: bool | None
) -> None:
    tasks = await listed(client, {"status": status})
    if completed is None:
        assert ids(tasks) == expected_ids(catalog, "-created_at")
    else:
        assert ids(tasks) == matching(catalog, completed=completed)
        assert tasks


@pytest.mark.parametrize("priority", ["low", "medium", "high"])
async def test_priority_filter(
    client: httpx.AsyncClient, catalog: list[Json], priority: str
) -> None:
    tasks = await listed(client, {"priority": priority})
    assert tasks
    assert ids(tasks) == matching(catalog, priority=priority)


@pytest.mark.parametrize(
    ("q", "titles"),
    [
        ("PAY", {"Pay rent"}),
        ("pay RENT", {"Pay rent"}),
        ("photo", {"Renew passport"}),
        ("SEMI", {"buy milk"}),
        ("e", None),
        ("%", {"100% done"}),
        ("_", {"under_score"}),
        ("émile", {"Émile"}),
        ("rendez", {"Émile"}),
        ("nothing like this", set()),
    ],
)
async def test_text_filter_is_case_insensitive_in_title_or_description(
    client: httpx.AsyncClient, catalog: list[Json], q: str, titles: set[str] | None
) -> None:
    tasks = await listed(client, {"q": q})
    if titles is None:
        needle = q.casefold()
        titles = {
            t["title"]
            for t in catalog
            if needle in t["title"].casefold() or needle in (t["description"] or "").casefold()
        }
    assert {task["title"] for task in tasks} == titles
    for task in tasks:
        haystack = f"{task['title']}\n{task['description'] or ''}".casefold()
        assert q.casefold() in haystack


async def test_text_filter_matches_both_pay_rent_tasks(
    client: httpx.AsyncClient, catalog: list[Json]
) -> None:
    assert len(await listed(client, {"q": "rent"})) == 2


@pytest.mark.parametrize(
    ("params", "dues"),
    [
        (
            {"due_before": "2030-01-03T23:00:00Z"},
            {"2030-01-01T00:00:00Z", "2030-01-02T09:00:00Z", "2030-01-03T10:00:00Z"},
        ),
        (
            {"due_before": "2030-01-04T00:00:00+01:00"},
            {"2030-01-01T00:00:00Z", "2030-01-02T09:00:00Z", "2030-01-03T10:00:00Z"},
        ),
        (
            {"due_after": "2030-01-04T12:00:00Z"},
            {"2030-01-05T09:00:00Z", "2030-01-10T00:00:00Z"},
        ),
        (
            {"due_after": "2030-01-01T12:00:00Z", "due_before": "2030-01-04T12:00:00Z"},
            {"2030-01-02T09:00:00Z", "2030-01-03T10:00:00Z", "2030-01-04T00:00:00Z"},
        ),
        ({"due_after": "2031-01-01T00:00:00Z"}, set()),
    ],
)
async def test_due_filters_leave_out_tasks_without_due_date(
    client: httpx.AsyncClient, catalog: list[Json], params: Params, dues: set[str]
) -> None:
    tasks = await listed(client, params)
    assert {task["due_at"] for task in tasks} == dues
    before, after = params.get("due_before"), params.get("due_after")
    expected = [
        t
        for t in catalog
        if t["due_at"] is not None
        and (before is None or parse_time(t["due_at"]) < datetime.fromisoformat(str(before)))
        and (after is None or parse_time(t["due_at"]) > datetime.fromisoformat(str(after)))
    ]
    assert ids(tasks) == expected_ids(expected, "-created_at")


async def test_filters_combine(client: httpx.AsyncClient, catalog: list[Json]) -> None:
    params: Params = {"status": "pending", "priority": "low", "q": "a", "sort": "title"}
    tasks = await listed(client, params)
    expected = [
        t
        for t in catalog
        if not t["completed"]
        and t["priority"] == "low"
        and ("a" in t["title"].lower() or "a" in (t["description"] or "").lower())
    ]
    assert ids(tasks) == expected_ids(expected, "title")
    assert tasks


async def test_list_never_shows_other_users_tasks(
    client: httpx.AsyncClient, catalog: list[Json]
) -> None:
    assert all(task["user_id"] == "alice" for task in await listed(client, {"limit": 200}))
    bob = await get_list(client, {"q": "Pay rent"}, sub="bob")
    assert [task["user_id"] for task in bob.json()] == ["bob"]


# --- parameters --------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"limit": -1}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"status": "done"}, "status"),
        ({"status": "PENDING"}, "status"),
        ({"sort": "-foo"}, "sort"),
        ({"sort": "foo"}, "sort"),
        ({"sort": "--title"}, "sort"),
        ({"sort": "+title"}, "sort"),
        ({"priority": "urgent"}, "priority"),
        ({"due_before": "tomorrow"}, "due_before"),
        ({"due_after": "2030-01-01T00:00:00"}, "due_after"),
        ({"cursor": "x" * 1025}, "cursor"),
        ({"q": "a\x00b"}, "q"),
        ({"q": "x" * 201}, "q"),
        ({"due_before": "9999-12-31T23:59:59-01:00"}, "due_before"),
    ],
)
async def test_unknown_values_are_422(
    client: httpx.AsyncClient, catalog: list[Json], params: Params, field: str
) -> None:
    response = await get_list(client, params)
    assert_validation_error(response, field)
    assert_api_headers(response)


@pytest.mark.parametrize("limit", [1, 2, 200])
async def test_limit_bounds_are_accepted(
    client: httpx.AsyncClient, catalog: list[Json], limit: int
) -> None:
    response = await get_list(client, {"limit": limit})
    assert response.status_code == 200
    tasks = response.json()
    assert ids(tasks) == expected_ids(catalog, "-created_at")[:limit]
    assert (next_link(response) is None) == (limit >= len(catalog))


async def test_default_limit_is_50(client: httpx.AsyncClient) -> None:
    for index in range(51):
        await create(client, title=f"task {index:02}")
    response = await get_list(client)
    assert len(response.json()) == 50
    assert next_link(response) is not None


async def test_unknown_query_parameters_are_ignored(
    client: httpx.AsyncClient, catalog: list[Json]
) -> None:
    plain = await listed(client, {"sort": "title"})
    assert plain == await listed(client, {"sort": "title", "foo": "bar", "page": 3, "order": "x"})


async def test_empty_list_is_an_empty_array_without_link(client: httpx.AsyncClient) -> None:
    response = await get_list(client)
    assert response.status_code == 200
    assert response.json() == []
    assert "link" not in response.headers


# --- keyset pagination ------------------------------------------------------------


@pytest.mark.parametrize("sort", SORTS)
@pytest.mark.parametrize("limit", [1, 3, 4])
async def test_walking_every_page_yields_each_task_once(
    client: httpx.AsyncClient, catalog: list[Json], sort: str, limit: int
) -> None:
    pages = await walk(client, {"sort": sort, "limit": limit})
    walked = [task for page in pages for task in page]
    assert ids(walked) == expected_ids(catalog, sort)
    assert len(pages) == math.ceil(len(catalog) / limit)
    assert all(page for page in pages)


async def test_walk_with_filters_keeps_them(client: httpx.AsyncClient, catalog: list[Json]) -> None:
    params: Params = {"status": "pending", "sort": "-due_at", "limit": 2}
    pages = await walk(client, params)
    walked = [task for page in pages for task in page]
    assert ids(walked) == expected_ids([t for t in catalog if not t["completed"]], "-due_at")


async def test_last_page_has_no_link_even_when_full(
    client: httpx.AsyncClient, catalog: list[Json]
) -> None:
    keep = {task["id"] for task in catalog[: len(catalog) - len(catalog) % 3]}
    for task in catalog:
        if task["id"] not in keep:
            response = await client.delete(tasks_url("me", task["id"]), headers=auth("alice"))
            assert response.status_code == 204
    pages = await walk(client, {"sort": "title", "limit": 3})
    assert [len(page) for page in pages] == [3] * (len(keep) // 3)


async def test_task_inserted_during_walk_is_not_skipped_or_repeated(
    client: httpx.AsyncClient, catalog: list[Json]
) -> None:
    inserted: dict[str, str] = {}

    async def insert(client: httpx.AsyncClient, page: int) -> None:
        if page == 2:
            # One sorts before every task already seen, one after the current page.
            for title in ("000 before", "zzz after"):
                inserted[title] = (await create(client, title=title))["id"]

    pages = await walk(client, {"sort": "title", "limit": 3}, between_pages=insert)
    walked = ids([task for page in pages for task in page])
    assert len(walked) == len(set(walked))
    assert inserted["000 before"] not in walked
    assert walked.count(inserted["zzz after"]) == 1
    assert [i for i in walked if i not in inserted.values()] == expected_ids(catalog, "title")


async def test_newest_task_created_during_a_newest_first_walk_is_not_repeated(
    client: httpx.AsyncClient, catalog: list[Json]
) -> None:
    created: list[str] = []

    async def insert(client: httpx.AsyncClient, page: int) -> None:
        created.append((await create(client, title=f"new on page {page}"))["id"])

    pages = await walk(client, {"limit": 2}, between_pages=insert)
    walked = ids([task for page in pages for task in page])
    assert walked == expected_ids(catalog, "-created_at")
    assert not set(created) & set(walked)


async def test_deleting_during_walk_skips_nothing_else(
    client: httpx.AsyncClient, catalog: list[Json]
) -> None:
    order = expected_ids(catalog, "priority")
    deleted: list[str] = []

    async def delete(client: httpx.AsyncClient, page: int) -> None:
        if page == 1:
            # The task the cursor points at, and one not seen yet.
            for task_id in (order[2], order[7]):
                response = await client.delete(tasks_url("me", task_id), headers=auth("alice"))
                assert response.status_code == 204
                deleted.append(task_id)

    pages = await walk(client, {"sort": "priority", "limit": 3}, between_pages=delete)
    walked = ids([task for page in pages for task in page])
    assert walked == [task_id for task_id in order if task_id != order[7]]


# --- cursors ---------------------------------------------------------------------


def flip(text: str, index: int) -> str:
    replacement = "A" if text[index] != "A" else "B"
    return text[:index] + replacement + text[index + 1 :]


async def test_tampered_cursor_is_422(client: httpx.AsyncClient, catalog: list[Json]) -> None:
    response = await get_list(client, {"sort": "title", "limit": 3})
    cursor = cursor_of(response)
    payload, _, mac = cursor.partition(".")
    assert payload
    assert mac
    tampered = [
        flip(cursor, 0),
        flip(cursor, len(payload) // 2),
        flip(cursor, len(payload) + 1 + len(mac) // 2),
        cursor + "A",
        cursor.replace(".", ""),
        payload,
        "abc",
        "a.b",
        f"{payload}.{payload}",
    ]
    for bad in tampered:
        assert bad != cursor
        bad_response = await get_list(client, {"sort": "title", "limit": 3, "cursor": bad})
        assert_validation_error(bad_response, "cursor")
    # The genuine cursor still works.
    ok = await get_list(client, {"sort": "title", "limit": 3, "cursor": cursor})
    assert ids(ok.json()) == expected_ids(catalog, "title")[3:6]


async def test_another_users_cursor_is_422(client: httpx.AsyncClient, catalog: list[Json]) -> None:
    for index in range(3):
        await create(client, "bob", title=f"bob {index}")
    bobs = cursor_of(await get_list(client, {"sort": "title", "limit": 1}, sub="bob"))
    response = await get_list(client, {"sort": "title", "limit": 1, "cursor": bobs})
    assert_validation_error(response, "cursor")
    # And the other way round.
    alices = cursor_of(await get_list(client, {"sort": "title", "limit": 1}))
    response = await get_list(client, {"sort": "title", "limit": 1, "cursor": alices}, sub="bob")
    assert_validation_error(response, "cursor")


@pytest.mark.parametrize("other_sort", ["-title", "priority", "-created_at", "due_at"])
async def test_cursor_from_another_sort_is_422(
    client: httpx.AsyncClient, catalog: list[Json], other_sort: str
) -> None:
    cursor = cursor_of(await get_list(client, {"sort": "title", "limit": 2}))
    response = await get_list(client, {"sort": other_sort, "limit": 2, "cursor": cursor})
    assert_validation_error(response, "cursor")


async def test_cursor_survives_a_change_of_page_size(
    client: httpx.AsyncClient, catalog: list[Json]
) -> None:
    cursor = cursor_of(await get_list(client, {"sort": "-priority", "limit": 2}))
    response = await get_list(client, {"sort": "-priority", "limit": 200, "cursor": cursor})
    assert ids(response.json()) == expected_ids(catalog, "-priority")[2:]
    assert next_link(response) is None


# --- path user ---------------------------------------------------------------------


async def test_me_is_an_alias_of_the_token_user(
    client: httpx.AsyncClient, catalog: list[Json]
) -> None:
    by_alias = await get_list(client, {"sort": "title"}, user="me")
    by_name = await get_list(client, {"sort": "title"}, user="alice")
    assert by_alias.status_code == by_name.status_code == 200
    assert by_alias.json() == by_name.json()
    page = await get_list(client, {"limit": 2}, user="alice")
    link = next_link(page)
    assert link is not None
    assert urlsplit(link).path == "/api/alice/tasks"
    follow = await client.get(link, headers=auth("alice"))
    assert ids(follow.json()) == expected_ids(catalog, "-created_at")[2:4]


@pytest.mark.parametrize("user", ["ME", "Me", "Alice", "bob", "nobody"])
async def test_other_path_user_is_403(
    client: httpx.AsyncClient, catalog: list[Json], user: str
) -> None:
    response = await get_list(client, user=user)
    assert_problem(response, 403)
    assert_api_headers(response)
