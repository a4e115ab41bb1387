"""Every task route and every status of the contract, over HTTP, on every store.

Not here: 429 (rate limits), 409 (idempotency), JWKS, ``/metrics`` and ``/docs``.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from tests.support import TASK_KEYS, auth
from tests.support.http import (
    PROBLEM,
    Json,
    assert_api_headers,
    assert_problem,
    assert_task,
    assert_validation_error,
    create,
    etag_of,
    fetch,
    list_all,
    missing_id,
    parse_time,
    tasks_url,
)

MAX_BODY = 64 * 1024
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


# --- helpers -----------------------------------------------------------------


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    sub: str = "alice",
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """A request as ``sub``; ``body`` is sent as JSON when it is not None."""
    kwargs: dict[str, Any] = {"headers": {**auth(sub), **(headers or {})}}
    if body is not None:
        kwargs["json"] = body
    return await client.request(method, url, **kwargs)


async def raw(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    content: bytes | AsyncIterator[bytes],
    content_type: str = "application/json",
) -> httpx.Response:
    """A request as alice with a body sent byte for byte (or streamed, chunked)."""
    headers = {**auth("alice"), "Content-Type": content_type}
    return await client.request(method, url, content=content, headers=headers)


async def stream(data: bytes, size: int = 8192) -> AsyncIterator[bytes]:
    """An async generator body: httpx sends it chunked, without Content-Length."""
    for start in range(0, len(data), size):
        await asyncio.sleep(0)
        yield data[start : start + size]


def json_body_of_size(size: int) -> bytes:
    """A JSON task body of exactly ``size`` bytes (its description is long)."""
    frame = b'{"title":"big","description":""}'
    body = frame[:-2] + b"a" * (size - len(frame)) + frame[-2:]
    assert len(body) == size
    return body


async def assert_no_tasks(client: httpx.AsyncClient, sub: str = "alice") -> None:
    assert await list_all(client, sub) == []


async def current(client: httpx.AsyncClient, task_id: str, sub: str = "alice") -> Json:
    response = await fetch(client, sub, task_id)
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == etag_of(response.json())
    task: Json = response.json()
    return task


def assert_task_response(response: httpx.Response, status: int = 200, sub: str = "alice") -> Json:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = assert_task(response.json(), sub)
    assert response.headers["etag"] == etag_of(body)
    assert_api_headers(response)
    return body


# --- create ------------------------------------------------------------------


async def test_create_returns_201_with_location_and_etag(client: httpx.AsyncClient) -> None:
    response = await send(client, "POST", tasks_url("me"), body={"title": "Write the report"})
    body = assert_task_response(response, 201)
    assert body["title"] == "Write the report"
    assert body["version"] == 1
    assert body["user_id"] == "alice"
    assert body["created_at"] == body["updated_at"]
    assert not response.headers["etag"].startswith("W/")

    location = response.headers["location"]
    assert location.endswith(f"/api/alice/tasks/{body['id']}")
    again = await client.get(location, headers=auth("alice"))
    assert again.status_code == 200
    assert again.json() == body
    assert again.headers["etag"] == response.headers["etag"]


async def test_create_body_matches_the_contract_example(client: httpx.AsyncClient) -> None:
    example = {
        "title": "Write the report",
        "description": "Quarterly numbers",
        "priority": "medium",
        "due_at": "2026-12-01T17:00:00Z",
    }
    body = assert_task_response(await send(client, "POST", tasks_url(), body=example), 201)
    assert set(body) == TASK_KEYS
    assert {key: body[key] for key in example} == example
    assert body["completed"] is False
    assert body["completed_at"] is None
    assert isinstance(body["version"], int)
    for name in ("created_at", "updated_at", "due_at"):
        assert body[name].endswith("Z")


async def test_create_with_every_writable_field(client: httpx.AsyncClient) -> None:
    fields = {
        "title": "Ship it",
        "description": "line one\n\tline two",
        "completed": True,
        "priority": "low",
        "due_at": "2026-12-01T18:00:00+01:00",
    }
    body = assert_task_response(await send(client, "POST", tasks_url(), body=fields), 201)
    assert body["description"] == "line one\n\tline two"
    assert body["completed"] is True
    assert body["completed_at"] == body["created_at"]
    assert body["priority"] == "low"
    assert body["due_at"] == "2026-12-01T17:00:00Z"


async def test_create_defaults(client: httpx.AsyncClient) -> None:
    body = await create(client, title="Only a title")
    assert body["description"] is None
    assert body["completed"] is False
    assert body["priority"] == "medium"
    assert body["due_at"] is None
    assert body["completed_at"] is None


@pytest.mark.parametrize(
    ("title", "stored"),
    [
        ("  Write the report \t\n", "Write the report"),
        (" " + "a" * 200 + " ", "a" * 200),
        ("x", "x"),
        ("Ünïcødé ✓", "Ünïcødé ✓"),
    ],
)
async def test_title_is_trimmed_and_stored(
    client: httpx.AsyncClient, title: str, stored: str
) -> None:
    body = await create(client, title=title)
    assert body["title"] == stored
    assert (await current(client, body["id"]))["title"] == stored


async def test_description_of_ten_thousand_characters_is_accepted(
    client: httpx.AsyncClient,
) -> None:
    body = await create(client, description="d" * 10_000)
    assert body["description"] == "d" * 10_000


ODD_SUBS = ["auth0|5f7c8ec7", "user@example.com", "a b", "ünï", "a%2Fb", "50%", "a?b#c"]


@pytest.mark.parametrize("sub", [*ODD_SUBS, "a/b", "..", "."])
async def test_location_resolves_for_any_sub(client: httpx.AsyncClient, sub: str) -> None:
    """Any non-empty ``sub`` is a user id, so Location must lead back to the task."""
    response = await client.post(tasks_url("me"), json={"title": "x"}, headers=auth(sub))
    body = assert_task_response(response, 201, sub)
    again = await client.get(response.headers["location"], headers=auth(sub))
    assert again.status_code == 200, (response.headers["location"], again.text)
    assert again.json() == body


@pytest.mark.parametrize("sub", ODD_SUBS)
async def test_path_user_is_the_percent_encoded_sub(client: httpx.AsyncClient, sub: str) -> None:
    task = await create(client, sub)
    response = await client.get(tasks_url(sub), headers=auth(sub))
    assert response.status_code == 200
    assert response.json() == [task]
    assert_task_response(await client.get(tasks_url(sub, task["id"]), headers=auth(sub)), sub=sub)


async def test_title_length_counts_characters_not_bytes(client: httpx.AsyncClient) -> None:
    body = await create(client, title="😀" * 200, description="é" * 10_000)
    assert await current(client, body["id"]) == body
    assert body["title"] == "😀" * 200


# --- 422 ---------------------------------------------------------------------

SERVER_OWNED: list[tuple[str, Any]] = [
    ("id", str(uuid.uuid4())),
    ("user_id", "bob"),
    ("version", 7),
    ("created_at", "2026-11-26T10:00:00Z"),
    ("updated_at", "2026-11-26T10:00:00Z"),
    ("completed_at", "2026-11-26T10:00:00Z"),
]

INVALID_CREATES: list[tuple[Any, str | None]] = [
    ({"title": ""}, "title"),
    ({"title": "   \t "}, "title"),
    ({"title": "a" * 201}, "title"),
    ({"title": "bad\x00title"}, "title"),
    ({"title": "bell\x07"}, "title"),
    ({"title": "line\nbreak"}, "title"),
    ({"title": "c1\u0085control"}, "title"),
    ({"title": 5}, "title"),
    ({"title": None}, "title"),
    ({}, "title"),
    ({"title": "ok", "description": "d" * 10_001}, "description"),
    ({"title": "ok", "description": "nul\x00"}, "description"),
    ({"title": "ok", "due_at": "2026-12-01T17:00:00"}, "due_at"),
    ({"title": "ok", "due_at": 1_764_608_400}, "due_at"),
    ({"title": "ok", "due_at": "tomorrow"}, "due_at"),
    ({"title": "ok", "due_at": "9999-12-31T23:59:59-01:00"}, "due_at"),
    ({"title": "ok", "due_at": "0001-01-01T00:30:00+01:00"}, "due_at"),
    ({"title": "ok", "due_at": "2026-13-01T00:00:00Z"}, "due_at"),
    ({"title": "ok", "surprise": 1}, "surprise"),
    ({"title": "ok", "completed": "yes"}, "completed"),
    ({"title": "ok", "completed": 1}, "completed"),
    ({"title": "ok", "priority": "urgent"}, "priority"),
    ({"title": "ok", "priority": "HIGH"}, "priority"),
    ({"title": "ok", "priority": 3}, "priority"),
    ([{"title": "ok"}], None),
    ("just a string", None),
    *(({"title": "ok", name: value}, name) for name, value in SERVER_OWNED),
]


@pytest.mark.parametrize(("body", "field"), INVALID_CREATES)
async def test_invalid_create_is_422(
    client: httpx.AsyncClient, body: Any, field: str | None
) -> None:
    response = await send(client, "POST", tasks_url(), body=body)
    problem = assert_validation_error(response, field)
    assert problem["instance"] == "/api/me/tasks"
    assert_api_headers(response)
    await assert_no_tasks(client)


INVALID_UPDATES: list[tuple[str, str, Any, str]] = [
    *(("PUT", "", {"title": "ok", name: value}, name) for name, value in SERVER_OWNED),
    *(("PATCH", "", {name: value}, name) for name, value in SERVER_OWNED),
    ("PUT", "", {"description": "no title"}, "title"),
    ("PUT", "", {"title": " "}, "title"),
    ("PATCH", "", {"title": None}, "title"),
    ("PATCH", "", {"title": ""}, "title"),
    ("PATCH", "", {"completed": None}, "completed"),
    ("PATCH", "", {"priority": None}, "priority"),
    ("PATCH", "", {"priority": "urgent"}, "priority"),
    ("PATCH", "", {"completed": "yes"}, "completed"),
    ("PATCH", "", {"due_at": "2026-12-01T17:00:00"}, "due_at"),
    ("PATCH", "", {"description": "d" * 10_001}, "description"),
    ("PATCH", "", {"surprise": True}, "surprise"),
    ("PATCH", "/complete", {"completed": "yes"}, "completed"),
    ("PATCH", "/complete", {"completed": None}, "completed"),
    ("PATCH", "/complete", {}, "completed"),
    ("PATCH", "/complete", {"completed": True, "user_id": "bob"}, "user_id"),
]


@pytest.mark.parametrize(("method", "suffix", "body", "field"), INVALID_UPDATES)
async def test_invalid_update_is_422_and_changes_nothing(
    client: httpx.AsyncClient, method: str, suffix: str, body: Any, field: str
) -> None:
    task = await create(client, title="Keep me", description="as is")
    response = await send(client, method, tasks_url("me", task["id"], suffix), body=body)
    assert_validation_error(response, field)
    assert_api_headers(response)
    assert await current(client, task["id"]) == task


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (b'{"title": "\\ud800"}', "title"),
        (b'{"title": "ok", "description": "\\udfff"}', "description"),
        (b'{"title": "ok\\u0000"}', "title"),
    ],
)
async def test_unstorable_text_is_422(
    client: httpx.AsyncClient, content: bytes, field: str
) -> None:
    response = await raw(client, "POST", tasks_url(), content)
    assert_validation_error(response, field)
    await assert_no_tasks(client)


# --- 400, 413, 415 -------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "suffix"), [("POST", None), ("PUT", ""), ("PATCH", ""), ("PATCH", "/complete")]
)
@pytest.mark.parametrize("content", [b'{"title": ', b"{'title': 'x'}", b"nope", b'{"title":"x"'])
async def test_malformed_json_is_400(
    client: httpx.AsyncClient, method: str, suffix: str | None, content: bytes
) -> None:
    task = await create(client)
    url = tasks_url() if suffix is None else tasks_url("me", task["id"], suffix)
    response = await raw(client, method, url, content)
    body = assert_problem(response, 400)
    assert "errors" not in body
    assert_api_headers(response)
    assert await list_all(client, "alice") == [task]


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "text/json"]
)
async def test_body_that_is_not_json_is_415(client: httpx.AsyncClient, content_type: str) -> None:
    response = await raw(client, "POST", tasks_url(), b'{"title": "x"}', content_type)
    assert_problem(response, 415)
    assert_api_headers(response)
    task = await create(client)
    response = await raw(
        client, "PATCH", tasks_url("me", task["id"]), b'{"title": "y"}', content_type
    )
    assert_problem(response, 415)
    assert await list_all(client, "alice") == [task]


async def test_json_with_charset_and_plus_json_are_accepted(client: httpx.AsyncClient) -> None:
    for content_type in ("application/json; charset=utf-8", "application/merge-patch+json"):
        response = await raw(client, "POST", tasks_url(), b'{"title": "x"}', content_type)
        assert_task_response(response, 201)


async def test_body_over_64_kib_with_content_length_is_413(client: httpx.AsyncClient) -> None:
    response = await raw(client, "POST", tasks_url(), json_body_of_size(MAX_BODY + 1))
    assert response.request.headers["content-length"] == str(MAX_BODY + 1)
    assert_problem(response, 413)
    assert_api_headers(response)
    await assert_no_tasks(client)


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
async def test_streamed_body_over_64_kib_is_413(client: httpx.AsyncClient, method: str) -> None:
    task = await create(client)
    url = tasks_url() if method == "POST" else tasks_url("me", task["id"])
    response = await raw(client, method, url, stream(json_body_of_size(MAX_BODY + 1)))
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in response.request.headers
    assert_problem(response, 413)
    assert_api_headers(response)
    assert await list_all(client, "alice") == [task]


async def test_body_of_exactly_64_kib_passes_the_size_guard(client: httpx.AsyncClient) -> None:
    # Within the size limit, so the request is validated: the description is too long.
    for content in (json_body_of_size(MAX_BODY), stream(json_body_of_size(MAX_BODY))):
        response = await raw(client, "POST", tasks_url(), content)
        assert_validation_error(response, "description")


async def test_streamed_body_under_the_limit_is_read_whole(client: httpx.AsyncClient) -> None:
    content = b'{"title": "streamed", "description": "' + b"s" * 9000 + b'"}'
    response = await raw(client, "POST", tasks_url(), stream(content, size=1000))
    body = assert_task_response(response, 201)
    assert body["description"] == "s" * 9000


# --- GET and conditional GET -----------------------------------------------------


async def test_get_returns_the_task_with_an_etag(client: httpx.AsyncClient) -> None:
    task = await create(client, title="Read me")
    for user in ("me", "alice"):
        response = await send(client, "GET", tasks_url(user, task["id"]))
        assert assert_task_response(response) == task


async def test_get_of_a_missing_task_is_404(client: httpx.AsyncClient) -> None:
    response = await send(client, "GET", tasks_url("me", missing_id()))
    body = assert_problem(response, 404)
    assert_api_headers(response)
    assert "etag" not in response.headers
    assert body["instance"].startswith("/api/me/tasks/")


@pytest.mark.parametrize(
    "header",
    [
        "{etag}",
        "W/{etag}",
        '"other.1", {etag}',
        '"other.1",W/{etag}',
        "*",
    ],
)
async def test_if_none_match_with_the_current_etag_is_304(
    client: httpx.AsyncClient, header: str
) -> None:
    task = await create(client)
    tag = etag_of(task)
    response = await send(
        client,
        "GET",
        tasks_url("me", task["id"]),
        headers={"If-None-Match": header.format(etag=tag)},
    )
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == tag
    assert_api_headers(response)


async def test_if_none_match_with_a_stale_etag_is_200(client: httpx.AsyncClient) -> None:
    task = await create(client)
    stale = etag_of(task)
    await send(client, "PATCH", tasks_url("me", task["id"]), body={"title": "Changed"})
    for header in (stale, f"W/{stale}", '"nothing"'):
        response = await send(
            client, "GET", tasks_url("me", task["id"]), headers={"If-None-Match": header}
        )
        body = assert_task_response(response)
        assert body["title"] == "Changed"
        assert body["version"] == 2


# --- PUT -------------------------------------------------------------------------


async def test_put_replaces_every_writable_field(client: httpx.AsyncClient) -> None:
    task = await create(
        client,
        title="Old",
        description="old notes",
        completed=True,
        priority="high",
        due_at="2030-01-01T00:00:00Z",
    )
    response = await send(client, "PUT", tasks_url("me", task["id"]), body={"title": " New "})
    body = assert_task_response(response)
    assert body["title"] == "New"
    # Omitted optional fields take their defaults.
    assert body["description"] is None
    assert body["completed"] is False
    assert body["completed_at"] is None
    assert body["priority"] == "medium"
    assert body["due_at"] is None
    assert body["version"] == task["version"] + 1
    assert body["id"] == task["id"]
    assert body["created_at"] == task["created_at"]
    assert parse_time(body["updated_at"]) > parse_time(task["updated_at"])
    assert await current(client, task["id"]) == body


async def test_put_with_all_fields(client: httpx.AsyncClient) -> None:
    task = await create(client, title="Old")
    fields = {
        "title": "New",
        "description": "new notes",
        "completed": True,
        "priority": "low",
        "due_at": "2030-06-01T12:00:00-02:00",
    }
    body = assert_task_response(
        await send(client, "PUT", tasks_url("alice", task["id"]), body=fields)
    )
    assert body["due_at"] == "2030-06-01T14:00:00Z"
    assert body["completed_at"] == body["updated_at"]
    assert {k: body[k] for k in ("title", "description", "completed", "priority")} == {
        k: fields[k] for k in ("title", "description", "completed", "priority")
    }


async def test_put_that_changes_nothing_keeps_the_version(client: httpx.AsyncClient) -> None:
    task = await create(client, title="Same", priority="high")
    body = {"title": "Same", "priority": "high"}
    response = await send(client, "PUT", tasks_url("me", task["id"]), body=body)
    assert assert_task_response(response) == task


# --- PATCH -----------------------------------------------------------------------


async def test_patch_changes_only_the_fields_sent(client: httpx.AsyncClient) -> None:
    task = await create(
        client, title="Keep", description="notes", priority="low", due_at="2030-01-01T00:00:00Z"
    )
    response = await send(client, "PATCH", tasks_url("me", task["id"]), body={"priority": "high"})
    body = assert_task_response(response)
    assert body["priority"] == "high"
    assert body["version"] == 2
    unchanged = ("id", "title", "description", "completed", "due_at", "created_at")
    assert {k: body[k] for k in unchanged} == {k: task[k] for k in unchanged}
    assert parse_time(body["updated_at"]) > parse_time(task["updated_at"])


async def test_patch_null_clears_description_and_due_at(client: httpx.AsyncClient) -> None:
    task = await create(client, description="notes", due_at="2030-01-01T00:00:00Z")
    body = assert_task_response(
        await send(
            client,
            "PATCH",
            tasks_url("me", task["id"]),
            body={"description": None, "due_at": None},
        )
    )
    assert body["description"] is None
    assert body["due_at"] is None
    assert body["title"] == task["title"]


async def test_patch_due_at_is_stored_in_utc(client: httpx.AsyncClient) -> None:
    task = await create(client)
    body = assert_task_response(
        await send(
            client,
            "PATCH",
            tasks_url("me", task["id"]),
            body={"due_at": "2030-01-01T05:30:00+05:30"},
        )
    )
    assert body["due_at"] == "2030-01-01T00:00:00Z"


async def test_patch_completed_sets_and_clears_completed_at(client: httpx.AsyncClient) -> None:
    task = await create(client)
    url = tasks_url("me", task["id"])
    done = assert_task_response(await send(client, "PATCH", url, body={"completed": True}))
    assert done["completed"] is True
    assert done["completed_at"] == done["updated_at"]
    reopened = assert_task_response(await send(client, "PATCH", url, body={"completed": False}))
    assert reopened["completed_at"] is None
    assert reopened["version"] == 3


@pytest.mark.parametrize("body", [{}, {"title": "Same"}, {"title": "  Same  ", "priority": "low"}])
async def test_patch_that_changes_nothing_keeps_version_and_updated_at(
    client: httpx.AsyncClient, body: Json
) -> None:
    task = await create(client, title="Same", priority="low")
    response = await send(client, "PATCH", tasks_url("me", task["id"]), body=body)
    assert assert_task_response(response) == task
    assert response.headers["etag"] == etag_of(task)
    assert await current(client, task["id"]) == task


# --- If-Match ----------------------------------------------------------------------

Operation = Callable[[httpx.AsyncClient, str, dict[str, str]], Awaitable[httpx.Response]]


async def _op_put(
    client: httpx.AsyncClient, task_id: str, headers: dict[str, str]
) -> httpx.Response:
    return await send(
        client, "PUT", tasks_url("me", task_id), body={"title": "Put"}, headers=headers
    )


async def _op_patch(
    client: httpx.AsyncClient, task_id: str, headers: dict[str, str]
) -> httpx.Response:
    return await send(
        client, "PATCH", tasks_url("me", task_id), body={"title": "Patched"}, headers=headers
    )


async def _op_delete(
    client: httpx.AsyncClient, task_id: str, headers: dict[str, str]
) -> httpx.Response:
    return await send(client, "DELETE", tasks_url("me", task_id), headers=headers)


async def _op_complete(
    client: httpx.AsyncClient, task_id: str, headers: dict[str, str]
) -> httpx.Response:
    return await send(client, "PATCH", tasks_url("me", task_id, "/complete"), headers=headers)


OPERATIONS = pytest.mark.parametrize(
    "operation",
    [_op_put, _op_patch, _op_delete, _op_complete],
    ids=["put", "patch", "delete", "complete"],
)


async def _task_at_version_2(client: httpx.AsyncClient) -> tuple[Json, str]:
    """A task changed once, and the (now stale) ETag of its first version."""
    task = await create(client, title="Original")
    stale = etag_of(task)
    response = await send(client, "PATCH", tasks_url("me", task["id"]), body={"priority": "high"})
    return assert_task_response(response), stale


def _assert_applied(response: httpx.Response, before: Json) -> None:
    if response.status_code == 204:
        assert response.content == b""
        return
    body = assert_task_response(response)
    assert body["version"] == before["version"] + 1


@OPERATIONS
async def test_if_match_current_succeeds(client: httpx.AsyncClient, operation: Operation) -> None:
    task, _ = await _task_at_version_2(client)
    response = await operation(client, task["id"], {"If-Match": etag_of(task)})
    _assert_applied(response, task)


@OPERATIONS
async def test_if_match_among_several_succeeds(
    client: httpx.AsyncClient, operation: Operation
) -> None:
    task, stale = await _task_at_version_2(client)
    header = f'{stale}, "{missing_id()}.2", {etag_of(task)}'
    _assert_applied(await operation(client, task["id"], {"If-Match": header}), task)


@OPERATIONS
async def test_if_match_star_succeeds(client: httpx.AsyncClient, operation: Operation) -> None:
    task, _ = await _task_at_version_2(client)
    _assert_applied(await operation(client, task["id"], {"If-Match": "*"}), task)


@OPERATIONS
async def test_without_if_match_last_write_wins(
    client: httpx.AsyncClient, operation: Operation
) -> None:
    task, _ = await _task_at_version_2(client)
    _assert_applied(await operation(client, task["id"], {}), task)


@OPERATIONS
@pytest.mark.parametrize("kind", ["stale", "weak", "other task", "garbage"])
async def test_if_match_mismatch_is_412_and_changes_nothing(
    client: httpx.AsyncClient, operation: Operation, kind: str
) -> None:
    task, stale = await _task_at_version_2(client)
    other = await create(client, title="Other")
    header = {
        "stale": stale,
        "weak": f"W/{etag_of(task)}",
        "other task": f'"{other["id"]}.{task["version"]}"',
        "garbage": "not-an-etag",
    }[kind]
    response = await operation(client, task["id"], {"If-Match": header})
    assert_problem(response, 412)
    assert_api_headers(response)
    assert "etag" not in response.headers
    assert await current(client, task["id"]) == task


@OPERATIONS
async def test_if_match_on_a_missing_task_is_404(
    client: httpx.AsyncClient, operation: Operation
) -> None:
    task_id = missing_id()
    response = await operation(client, task_id, {"If-Match": f'"{task_id}.1"'})
    assert_problem(response, 404)


# --- complete --------------------------------------------------------------------


async def test_complete_without_body_toggles(client: httpx.AsyncClient) -> None:
    task = await create(client)
    url = tasks_url("me", task["id"], "/complete")
    done = assert_task_response(await send(client, "PATCH", url))
    assert done["completed"] is True
    assert done["completed_at"] is not None
    assert done["completed_at"] == done["updated_at"]
    assert done["version"] == 2
    reopened = assert_task_response(await send(client, "PATCH", url))
    assert reopened["completed"] is False
    assert reopened["completed_at"] is None
    assert reopened["version"] == 3
    assert parse_time(reopened["updated_at"]) > parse_time(done["updated_at"])
    assert await current(client, task["id"]) == reopened


@pytest.mark.parametrize("value", [True, False])
async def test_complete_with_a_body_sets_it_idempotently(
    client: httpx.AsyncClient, value: bool
) -> None:
    task = await create(client, completed=not value)
    url = tasks_url("me", task["id"], "/complete")
    first = assert_task_response(await send(client, "PATCH", url, body={"completed": value}))
    assert first["completed"] is value
    assert (first["completed_at"] is not None) is value
    assert first["version"] == 2
    second = assert_task_response(await send(client, "PATCH", url, body={"completed": value}))
    assert second == first
    assert await current(client, task["id"]) == first


async def test_complete_keeps_other_fields(client: httpx.AsyncClient) -> None:
    task = await create(client, title="Keep", description="d", priority="high")
    url = tasks_url("me", task["id"], "/complete")
    done = assert_task_response(await send(client, "PATCH", url, body={"completed": True}))
    for key in ("title", "description", "priority", "due_at", "created_at", "id"):
        assert done[key] == task[key]


# --- DELETE ----------------------------------------------------------------------


async def test_delete_is_204_then_404(client: httpx.AsyncClient) -> None:
    task = await create(client)
    keep = await create(client, title="Keep")
    response = await send(client, "DELETE", tasks_url("me", task["id"]))
    assert response.status_code == 204
    assert response.content == b""
    assert_api_headers(response)
    assert_problem(await send(client, "GET", tasks_url("me", task["id"])), 404)
    assert_problem(await send(client, "DELETE", tasks_url("me", task["id"])), 404)
    assert await list_all(client, "alice") == [keep]


# --- 405 and unknown routes --------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "suffix", "allow"),
    [
        ("PUT", None, "GET, POST"),
        ("PATCH", None, "GET, POST"),
        ("DELETE", None, "GET, POST"),
        ("POST", "", "DELETE, GET, PATCH, PUT"),
        ("GET", "/complete", "PATCH"),
        ("PUT", "/complete", "PATCH"),
        ("POST", "/complete", "PATCH"),
    ],
)
async def test_wrong_method_is_405_with_allow(
    app: FastAPI, client: httpx.AsyncClient, method: str, suffix: str | None, allow: str
) -> None:
    task = await create(client)
    url = tasks_url() if suffix is None else tasks_url("me", task["id"], suffix)
    response = await send(client, method, url, body={"title": "x"})
    assert_problem(response, 405)
    assert_api_headers(response)
    assert response.headers["allow"] == allow
    # Exactly the methods the route table serves at that path.
    template = "/api/{user_id}/tasks" + ("" if suffix is None else "/{task_id}" + suffix)
    served = {
        served_method
        for route in app.routes
        if isinstance(route, APIRoute) and route.path == template
        for served_method in route.methods or ()
    }
    assert set(allow.split(", ")) == served
    assert await list_all(client, "alice") == [task]


@pytest.mark.parametrize(
    "path", ["/api/me/nothing", "/api/me/tasks/x/y", "/api", "/nowhere", "/api/me/tasks/x/done"]
)
async def test_unknown_route_is_404_problem(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path, headers=auth("alice"))
    assert_problem(response, 404)
    assert response.headers["x-request-id"]
    assert response.headers["x-content-type-options"] == "nosniff"
    if path.startswith("/api/"):
        assert_api_headers(response)


# --- headers on every response --------------------------------------------------------


async def test_every_api_response_carries_the_common_headers(client: httpx.AsyncClient) -> None:
    task = await create(client)
    url = tasks_url("me", task["id"])
    responses = [
        await send(client, "GET", tasks_url()),
        await send(client, "POST", tasks_url(), body={"title": "x"}),
        await send(client, "GET", url),
        await send(client, "GET", url, headers={"If-None-Match": etag_of(task)}),
        await send(client, "PATCH", url, body={"priority": "low"}),
        await raw(client, "POST", tasks_url(), b"{"),
        await client.get(tasks_url()),
        await send(client, "GET", tasks_url("bob")),
        await send(client, "GET", tasks_url("me", missing_id())),
        await send(client, "GET", "/api/me/unknown"),
        await send(client, "PUT", tasks_url()),
        await send(client, "PATCH", url, body={}, headers={"If-Match": '"stale"'}),
        await raw(client, "POST", tasks_url(), json_body_of_size(MAX_BODY + 1)),
        await raw(client, "POST", tasks_url(), stream(json_body_of_size(MAX_BODY + 1))),
        await raw(client, "POST", tasks_url(), b"x", "text/plain"),
        await send(client, "POST", tasks_url(), body={"title": ""}),
        await send(client, "DELETE", url),
    ]
    statuses = [response.status_code for response in responses]
    expected = [200, 201, 200, 304, 200, 400, 401, 403, 404, 404, 405, 412, 413, 413, 415, 422]
    assert statuses == [*expected, 204]
    for response in responses:
        assert_api_headers(response)
        assert _REQUEST_ID.fullmatch(response.headers["x-request-id"])
        if response.status_code >= 400:
            assert_problem(response, response.status_code)


@pytest.mark.parametrize("request_id", ["abc-123_X.y", "a", "x" * 128, "0123.4567-89_AZ"])
async def test_valid_client_request_id_is_echoed(
    client: httpx.AsyncClient, request_id: str
) -> None:
    headers = {"X-Request-ID": request_id}
    for response in (
        await send(client, "GET", tasks_url(), headers=headers),
        await client.get(tasks_url(), headers=headers),
        await client.get("/healthz", headers=headers),
    ):
        assert response.headers["x-request-id"] == request_id


@pytest.mark.parametrize("request_id", ["x" * 129, "has space", "a/b", "a;b", "a\tb", "<script>"])
async def test_invalid_client_request_id_is_replaced(
    client: httpx.AsyncClient, request_id: str
) -> None:
    headers = {"X-Request-ID": request_id}
    seen = set()
    for response in (
        await send(client, "GET", tasks_url(), headers=headers),
        await client.get(tasks_url(), headers=headers),
        await client.get("/healthz", headers=headers),
    ):
        replaced = response.headers["x-request-id"]
        assert replaced != request_id
        assert _REQUEST_ID.fullmatch(replaced)
        seen.add(replaced)
    assert len(seen) == 3


async def test_request_ids_are_unique_when_not_sent(client: httpx.AsyncClient) -> None:
    ids = {(await client.get("/healthz")).headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_probes_need_no_token(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-request-id"]


# --- OpenAPI -----------------------------------------------------------------------

_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
    "object": (dict,),
    "array": (list,),
}


def _resolve(schema: Json, spec: Json) -> Json:
    while "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        schema = spec["components"]["schemas"][name]
    return schema


def validate(value: Any, schema: Json, spec: Json, where: str = "$") -> None:
    """A small JSON Schema check: the keywords FastAPI's OpenAPI uses for these bodies."""
    schema = _resolve(schema, spec)
    if "anyOf" in schema:
        failures: list[str] = []
        for option in schema["anyOf"]:
            try:
                validate(value, option, spec, where)
            except AssertionError as error:
                failures.append(str(error))
            else:
                break
        else:
            raise AssertionError(f"{where}: {value!r} matches no option: {failures}")
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        allowed = tuple(t for kind in kinds for t in _PYTHON_TYPES[kind])
        is_bool_as_number = isinstance(value, bool) and "boolean" not in kinds
        assert isinstance(value, allowed), f"{where}: {value!r} is not {kinds}"
        assert not is_bool_as_number, f"{where}: {value!r} is not {kinds}"
    if isinstance(value, dict):
        for name in schema.get("required", ()):
            assert name in value, f"{where}: missing {name}"
        properties = schema.get("properties", {})
        for name, item in value.items():
            if name in properties:
                validate(item, properties[name], spec, f"{where}.{name}")
            else:
                assert schema.get("additionalProperties", True) is not False, (
                    f"{where}: unexpected {name}"
                )
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            validate(item, schema["items"], spec, f"{where}[{index}]")
    if isinstance(value, str):
        if schema.get("format") == "uuid":
            uuid.UUID(value)
        if schema.get("format") == "date-time":
            parse_time(value)
    if isinstance(value, int | float) and "minimum" in schema:
        assert value >= schema["minimum"], f"{where}: {value} < {schema['minimum']}"


def assert_documented(app: FastAPI, template: str, method: str, response: httpx.Response) -> Json:
    """The response body validates against the schema its route documents."""
    spec = app.openapi()
    responses = spec["paths"][template][method.lower()]["responses"]
    documented = responses[str(response.status_code)]
    media = response.headers["content-type"].split(";")[0]
    schema: Json = documented["content"][media]["schema"]
    validate(response.json(), schema, spec)
    return schema


async def test_responses_validate_against_the_openapi_schema(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    spec = app.openapi()
    task_out = spec["components"]["schemas"]["TaskOut"]
    assert set(task_out["required"]) == TASK_KEYS
    assert set(task_out["properties"]) == TASK_KEYS

    collection = "/api/{user_id}/tasks"
    item = collection + "/{task_id}"
    complete = item + "/complete"
    created = await send(
        client, "POST", tasks_url(), body={"title": "Doc", "due_at": "2030-01-01T00:00:00Z"}
    )
    task = created.json()
    url = tasks_url("me", task["id"])
    checks: list[tuple[str, str, httpx.Response]] = [
        (collection, "POST", created),
        (collection, "GET", await send(client, "GET", tasks_url())),
        (item, "GET", await send(client, "GET", url)),
        (item, "PATCH", await send(client, "PATCH", url, body={"description": "x"})),
        (item, "PUT", await send(client, "PUT", url, body={"title": "Doc 2"})),
        (complete, "PATCH", await send(client, "PATCH", url + "/complete")),
    ]
    for template, method, response in checks:
        assert response.status_code in {200, 201}
        schema = assert_documented(app, template, method, response)
        task_schema = _resolve(schema.get("items", schema), spec)
        assert task_schema is task_out

    errors: list[tuple[str, str, httpx.Response]] = [
        (collection, "POST", await raw(client, "POST", tasks_url(), b"{")),
        (collection, "GET", await client.get(tasks_url())),
        (collection, "GET", await send(client, "GET", tasks_url("bob"))),
        (item, "GET", await send(client, "GET", tasks_url("me", missing_id()))),
        (
            item,
            "PUT",
            await send(client, "PUT", url, body={"title": "x"}, headers={"If-Match": '"no"'}),
        ),
        (collection, "POST", await send(client, "POST", tasks_url(), body={"title": ""})),
        (
            collection,
            "POST",
            await raw(client, "POST", tasks_url(), json_body_of_size(MAX_BODY + 1)),
        ),
        (collection, "POST", await raw(client, "POST", tasks_url(), b"x", "text/plain")),
    ]
    problem = spec["components"]["schemas"]["Problem"]
    for template, method, response in errors:
        assert response.headers["content-type"] == PROBLEM
        assert _resolve(assert_documented(app, template, method, response), spec) is problem
