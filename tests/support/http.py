"""HTTP helpers for every tier: task URLs and requests, and what a response must hold."""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx

from tests.support import TASK_KEYS, auth

PROBLEM = "application/problem+json"
PROBLEM_KEYS = frozenset({"type", "title", "status", "detail"})
_LINK_NEXT = re.compile(r'<([^>]*)>\s*;\s*rel="next"')

Json = dict[str, Any]


def tasks_url(user: str = "me", task_id: str | None = None, suffix: str = "") -> str:
    """``/api/{user}/tasks[/{task_id}][suffix]`` with both segments percent-encoded."""
    url = f"/api/{quote(user, safe='')}/tasks"
    if task_id is not None:
        url += f"/{quote(task_id, safe='')}"
    return url + suffix


async def create(client: httpx.AsyncClient, sub: str = "alice", **fields: Any) -> Json:
    """Create a task as ``sub`` and return its body; ``title`` defaults to a fixed text."""
    body = {"title": "A task", **fields}
    response = await client.post(tasks_url(sub), json=body, headers=auth(sub))
    assert response.status_code == 201, response.text
    task: Json = response.json()
    return task


async def fetch(client: httpx.AsyncClient, sub: str, task_id: str) -> httpx.Response:
    return await client.get(tasks_url(sub, task_id), headers=auth(sub))


async def list_all(client: httpx.AsyncClient, sub: str, query: str = "") -> list[Json]:
    """Every task of ``sub`` on one page (at most 200), in the default order."""
    response = await client.get(f"{tasks_url(sub)}?limit=200{query}", headers=auth(sub))
    assert response.status_code == 200, response.text
    assert next_link(response) is None
    tasks: list[Json] = response.json()
    return tasks


async def snapshot(client: httpx.AsyncClient, sub: str) -> dict[str, tuple[Json, str]]:
    """Every task of ``sub`` by id, with the ETag a GET returns for it."""
    state: dict[str, tuple[Json, str]] = {}
    for task in await list_all(client, sub):
        response = await fetch(client, sub, task["id"])
        assert response.status_code == 200, response.text
        assert response.json() == task
        state[task["id"]] = (task, response.headers["etag"])
    return state


def etag_of(task: Json) -> str:
    return f'"{task["id"]}.{task["version"]}"'


def missing_id() -> str:
    return str(uuid.uuid4())


def parse_time(value: str) -> datetime:
    """An RFC 3339 UTC time as the API writes it: always with a ``Z`` suffix."""
    assert isinstance(value, str)
    assert value.endswith("Z"), value
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() == timedelta(0)
    return parsed


def assert_api_headers(response: httpx.Response) -> None:
    """The headers every ``/api`` response carries, errors included."""
    assert response.headers.get("cache-control") == "private, no-cache", response.headers
    assert response.headers.get("x-content-type-options") == "nosniff"
    assert response.headers.get("x-request-id")


def assert_problem(response: httpx.Response, status: int) -> Json:
    """An RFC 9457 problem with ``status``; returns the body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0].strip() == PROBLEM
    body: Json = response.json()
    assert body.keys() >= PROBLEM_KEYS, body
    assert body["status"] == status
    assert isinstance(body["type"], str)
    assert body["type"]
    assert isinstance(body["title"], str)
    assert body["title"]
    assert isinstance(body["detail"], str)
    assert body["detail"]
    if "instance" in body:
        assert isinstance(body["instance"], str)
    return body


def assert_validation_error(response: httpx.Response, field: str | None = None) -> Json:
    """A 422 problem whose ``errors`` are ``{loc, msg, type}``; one names ``field``."""
    body = assert_problem(response, 422)
    errors = body.get("errors")
    assert isinstance(errors, list)
    assert errors, body
    for error in errors:
        assert set(error) == {"loc", "msg", "type"}, error
        assert isinstance(error["loc"], list)
        assert error["loc"]
        assert all(isinstance(part, str | int) for part in error["loc"])
        assert isinstance(error["msg"], str)
        assert error["msg"]
        assert isinstance(error["type"], str)
        assert error["type"]
    if field is not None:
        assert any(field in error["loc"] for error in errors), errors
    return body


def assert_task(body: Any, sub: str) -> Json:
    """A Task exactly as the contract's example: keys, types, UTC ``Z`` times."""
    assert isinstance(body, dict)
    assert set(body) == TASK_KEYS, body
    assert str(uuid.UUID(body["id"])) == body["id"]
    assert uuid.UUID(body["id"]).version == 7
    assert body["user_id"] == sub
    assert isinstance(body["title"], str)
    assert body["title"] == body["title"].strip()
    assert 1 <= len(body["title"]) <= 200
    assert body["description"] is None or isinstance(body["description"], str)
    assert isinstance(body["completed"], bool)
    assert body["priority"] in {"low", "medium", "high"}
    for name in ("due_at", "completed_at"):
        if body[name] is not None:
            parse_time(body[name])
    assert (body["completed_at"] is not None) == body["completed"]
    created = parse_time(body["created_at"])
    assert parse_time(body["updated_at"]) >= created
    assert type(body["version"]) is int
    assert body["version"] >= 1
    return body


def next_link(response: httpx.Response) -> str | None:
    """The URL of a ``Link: <...>; rel="next"`` header, if any."""
    header = response.headers.get("link")
    if header is None:
        return None
    match = _LINK_NEXT.search(header)
    assert match is not None, header
    return match.group(1)


def without_instance(response: httpx.Response) -> bytes:
    """The raw body with its ``"instance"`` member cut out, byte for byte."""
    raw = response.content
    instance = response.json()["instance"]
    encoded = json.dumps(instance, ensure_ascii=False, separators=(",", ":"))
    member = f',"instance":{encoded}'.encode()
    assert raw.count(member) == 1, raw
    return raw.replace(member, b"")


_COMPARED_VALUES = ("content-type", "cache-control", "x-content-type-options", "allow")


def fingerprint(response: httpx.Response) -> tuple[Any, ...]:
    """What two indistinguishable error responses share: all but request id and instance.

    Header names are compared, and the values of the headers that describe the
    body; ``content-length`` differs with the length of ``instance`` only.
    """
    names = tuple(sorted(name for name in response.headers if name != "x-request-id"))
    values = tuple(response.headers.get(name) for name in _COMPARED_VALUES)
    return response.status_code, names, values, without_instance(response)
