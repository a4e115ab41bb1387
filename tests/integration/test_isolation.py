"""Per-user isolation, checked on every route of the app's own route table.

The matrix is generated from ``app.routes``: every ``APIRoute`` whose path
names ``{user_id}``, with each of its methods. A route (or method) without a
request recipe below fails the tests, so a new route cannot go unchecked.

A task is named by the path's ``{task_id}`` or, in a body, by the string
``TASK`` (a batch operation's ``id``, its ``if_match``): each is filled with
the id under test. A route in ``PER_OPERATION`` answers for its tasks one
result per operation, each exactly what the single route would answer; the
checks below then hold for every result.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from tests.support import TASK_KEYS, auth
from tests.support.http import (
    Json,
    assert_api_headers,
    assert_problem,
    create,
    fingerprint,
    missing_id,
    snapshot,
    tasks_url,
)

USER_PLACEHOLDERS = frozenset({"user_id", "task_id"})
_PLACEHOLDER = re.compile(r"{([^}:]+)(?::[^}]*)?}")

TASK = "{task_id}"
"""Where a body names the task under test; filled in every string of the body."""

# Every operation of a batch that names a task; on one's own task, in this
# order, they all succeed.
_TASK_OPERATIONS: list[Json] = [
    {"op": "patch", "id": TASK, "fields": {"title": "Patched by someone else"}},
    {"op": "replace", "id": TASK, "task": {"title": "Replaced by someone else"}},
    {"op": "complete", "id": TASK},
    {"op": "complete", "id": TASK, "completed": True},
    {"op": "delete", "id": TASK},
]

# (method, path template) -> the JSON bodies to send (None: no body at all).
# Every body is valid, so that only ownership can make a request fail.
RECIPES: dict[tuple[str, str], tuple[Json | None, ...]] = {
    ("GET", "/api/{user_id}/tasks"): (None,),
    ("POST", "/api/{user_id}/tasks"): ({"title": "Planted by someone else"},),
    ("GET", "/api/{user_id}/tasks/{task_id}"): (None,),
    ("PUT", "/api/{user_id}/tasks/{task_id}"): ({"title": "Replaced by someone else"},),
    ("PATCH", "/api/{user_id}/tasks/{task_id}"): ({"title": "Patched by someone else"},),
    ("DELETE", "/api/{user_id}/tasks/{task_id}"): (None,),
    ("PATCH", "/api/{user_id}/tasks/{task_id}/complete"): (None, {"completed": True}),
    ("GET", "/api/{user_id}/tasks/changes"): (None,),
    ("POST", "/api/{user_id}/tasks/batch"): (
        {"operations": [{"op": "create", "task": {"title": "Planted by someone else"}}]},
        {"operations": _TASK_OPERATIONS},
        {"atomic": True, "operations": [{"op": "delete", "id": TASK, "if_match": f'"{TASK}.1"'}]},
    ),
}

PER_OPERATION = frozenset({("POST", "/api/{user_id}/tasks/batch")})
"""Routes that answer ``{"results": [...]}``, one single route's answer per operation."""

NEVER_EXISTED = "dave"
# Invalid for every route that takes a body (unknown field, required field missing).
INVALID_BODY: Json = {"surprise": True}


@dataclass(frozen=True)
class Call:
    """One request of the matrix: a method, a path template and a body."""

    method: str
    template: str
    body: Json | None

    @property
    def names_task(self) -> bool:
        return "{task_id}" in self.template or TASK in json.dumps(self.body)

    @property
    def per_operation(self) -> bool:
        return (self.method, self.template) in PER_OPERATION

    def url(self, user: str, task_id: str) -> str:
        # Placeholders are filled with percent-encoded values, as a client would.
        return self.template.format(user_id=quote(user, safe=""), task_id=quote(task_id, safe=""))

    async def send(
        self, client: httpx.AsyncClient, user: str, task_id: str, headers: dict[str, str]
    ) -> httpx.Response:
        kwargs: dict[str, Any] = {"headers": headers}
        if self.body is not None:
            kwargs["json"] = naming(self.body, task_id)
        return await client.request(self.method, self.url(user, task_id), **kwargs)

    def __str__(self) -> str:
        suffix = "" if self.body is None else f" {self.body}"
        return f"{self.method} {self.template}{suffix}"


def naming(value: Any, task_id: str) -> Any:
    """``value`` with ``TASK`` replaced by ``task_id`` in every string."""
    if isinstance(value, str):
        return value.replace(TASK, task_id)
    if isinstance(value, dict):
        return {key: naming(item, task_id) for key, item in value.items()}
    if isinstance(value, list):
        return [naming(item, task_id) for item in value]
    return value


def results(call: Call, response: httpx.Response) -> list[Json]:
    """The answers of a ``PER_OPERATION`` route, one per operation, in order."""
    assert response.status_code == 200, f"{call}: {response.text}"
    body = response.json()
    assert set(body) == {"results"}, body
    answers: list[Json] = body["results"]
    assert call.body is not None
    assert len(answers) == len(call.body["operations"]), body
    return answers


def tasks_in(value: Any) -> list[Json]:
    """Every Task object anywhere in a response body."""
    if isinstance(value, list):
        return [task for item in value for task in tasks_in(item)]
    if not isinstance(value, dict):
        return []
    if set(value) == TASK_KEYS:
        return [value]
    return [task for item in value.values() for task in tasks_in(item)]


def without_instance_of(problem: Json) -> str:
    """A problem object without ``instance``, as text to compare."""
    return json.dumps({key: item for key, item in problem.items() if key != "instance"})


def user_routes(app: FastAPI) -> Iterator[tuple[str, APIRoute]]:
    for route in app.routes:
        if isinstance(route, APIRoute) and "{user_id}" in route.path:
            for method in sorted(route.methods or ()):
                yield method, route


def matrix(app: FastAPI) -> list[Call]:
    """Every (route, method, body) to try; fails on a route it cannot build."""
    calls: list[Call] = []
    seen: set[tuple[str, str]] = set()
    unknown: list[str] = []
    for method, route in user_routes(app):
        key = (method, route.path)
        seen.add(key)
        placeholders = set(_PLACEHOLDER.findall(route.path))
        if key not in RECIPES or not placeholders <= USER_PLACEHOLDERS:
            unknown.append(f"{method} {route.path}")
            continue
        calls.extend(Call(method, route.path, body) for body in RECIPES[key])
    assert not unknown, (
        f"no isolation recipe for {unknown}: add one to RECIPES in {__name__} "
        "(and a placeholder filler if the path has new parameters)"
    )
    stale = (set(RECIPES) | PER_OPERATION) - seen
    assert not stale, f"RECIPES names routes the app no longer has: {sorted(stale)}"
    return calls


@dataclass(frozen=True)
class World:
    """alice, bob and carol each own tasks; ``tasks[user]`` lists their ids."""

    tasks: dict[str, list[str]]

    def first(self, user: str) -> str:
        return self.tasks[user][0]


@pytest.fixture
async def world(client: httpx.AsyncClient) -> World:
    tasks: dict[str, list[str]] = {}
    for user in ("alice", "bob", "carol"):
        made = [
            await create(client, user, title=f"{user} one", description="private notes"),
            await create(client, user, title=f"{user} two", priority="high"),
            await create(
                client, user, title=f"{user} three", completed=True, due_at="2030-01-01T09:00:00Z"
            ),
        ]
        tasks[user] = [task["id"] for task in made]
    return World(tasks)


async def others_state(client: httpx.AsyncClient) -> dict[str, Any]:
    return {user: await snapshot(client, user) for user in ("alice", "carol")}


async def assert_forbidden_everywhere(
    app: FastAPI, client: httpx.AsyncClient, world: World
) -> None:
    """(a) bob on another user's path: one 403, whoever that user is."""
    targets = [
        ("alice", world.first("alice")),
        ("alice", missing_id()),
        ("carol", world.first("carol")),
        (NEVER_EXISTED, missing_id()),
        (NEVER_EXISTED, world.first("alice")),
        ("ME", world.first("bob")),
        ("Bob", world.first("bob")),
        ("bob ", world.first("bob")),
    ]
    for call in matrix(app):
        # The path user is checked before the body: an invalid body changes nothing.
        variants = [call] if call.body is None else [call, replace(call, body=INVALID_BODY)]
        prints = set()
        for variant in variants:
            for user, task_id in targets:
                response = await variant.send(client, user, task_id, auth("bob"))
                assert_problem(response, 403)
                assert_api_headers(response)
                assert "www-authenticate" not in response.headers
                prints.add(fingerprint(response))
        assert len(prints) == 1, f"{call}: 403 responses differ: {prints}"


def conditional_headers(call: Call, task_id: str) -> list[dict[str, str]]:
    """Preconditions naming a foreign task's current ETag, and ``*``."""
    name = "If-None-Match" if call.method == "GET" else "If-Match"
    return [{name: f'"{task_id}.1"'}, {name: "*"}, {name: '"stale.7"'}]


async def assert_not_found_everywhere(
    app: FastAPI, client: httpx.AsyncClient, world: World
) -> None:
    """(b) bob on his own path with an id that is not his: one 404, whatever the id."""
    missing = missing_id()
    task_ids = [
        world.first("alice"),
        world.first("alice").upper(),
        world.first("carol"),
        missing,
        missing.upper(),
        "not-a-uuid",
        "123",
        "{" + missing + "}",
        missing.replace("-", ""),
    ]
    problems: set[str] = set()
    for call in matrix(app):
        if not call.names_task:
            continue
        requests: list[tuple[str, str, dict[str, str]]] = [
            (user, task_id, {}) for user in ("bob", "me") for task_id in task_ids
        ]
        requests += [
            ("bob", task_id, headers)
            for task_id in (world.first("alice"), missing, "not-a-uuid")
            for headers in conditional_headers(call, world.first("alice"))
        ]
        prints = set()
        for user, task_id, headers in requests:
            response = await call.send(client, user, task_id, {**auth("bob"), **headers})
            assert_api_headers(response)
            assert "www-authenticate" not in response.headers
            assert "etag" not in response.headers
            if not call.per_operation:
                problems.add(without_instance_of(assert_problem(response, 404)))
                prints.add(fingerprint(response))
                continue
            answers = results(call, response)
            for answer in answers:
                assert answer["status"] == 404, f"{call}: {answer}"
                assert set(answer) == {"status", "problem"}, answer
                # The single route's path: the batch does not say whose task it was either.
                assert answer["problem"]["instance"] == tasks_url(user, task_id), answer
                problems.add(without_instance_of(answer["problem"]))
            names = tuple(sorted(name for name in response.headers if name != "x-request-id"))
            prints.add((names, *(without_instance_of(a["problem"]) for a in answers)))
        assert len(prints) == 1, f"{call}: 404 responses differ: {prints}"
    assert len(problems) == 1, f"404 problems differ between routes: {problems}"


async def assert_unauthenticated_everywhere(
    app: FastAPI, client: httpx.AsyncClient, world: World
) -> None:
    """(d) no token (or a bad one) on any route and any path user: 401."""
    bad_token = {"Authorization": "Bearer not.a.token"}
    for call in matrix(app):
        for user, task_id in (
            ("alice", world.first("alice")),
            ("me", world.first("bob")),
            (NEVER_EXISTED, missing_id()),
        ):
            response = await call.send(client, user, task_id, {})
            assert_problem(response, 401)
            assert_api_headers(response)
            assert response.headers["www-authenticate"] == "Bearer", call
            response = await call.send(client, user, task_id, bad_token)
            assert_problem(response, 401)
            assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"', call


async def assert_own_requests_succeed(app: FastAPI, client: httpx.AsyncClient) -> None:
    """The same recipes do work on bob's own tasks: failures above are isolation."""
    for call in matrix(app):
        for user in ("bob", "me"):
            own = await create(client, "bob", title="bob scratch")
            response = await call.send(client, user, own["id"], auth("bob"))
            assert_api_headers(response)
            answers = (
                results(call, response)
                if call.per_operation
                else [{"status": response.status_code}]
            )
            for answer in answers:
                assert answer["status"] in {200, 201, 204}, f"{call}: {response.text}"
            shown = [] if response.status_code == 204 else tasks_in(response.json())
            assert shown or all(answer["status"] == 204 for answer in answers), call
            assert all(task["user_id"] == "bob" for task in shown), call


async def test_every_user_route_has_a_recipe(app: FastAPI) -> None:
    calls = matrix(app)
    routes = {(method, route.path) for method, route in user_routes(app)}
    assert routes == {(call.method, call.template) for call in calls}
    assert len(routes) >= 9


async def test_matrix_refuses_a_route_it_cannot_build(app: FastAPI) -> None:
    async def endpoint(user_id: str) -> None:
        return None

    app.router.add_api_route("/api/{user_id}/tasks/{task_id}/share", endpoint, methods=["POST"])
    with pytest.raises(AssertionError, match=r"POST /api/\{user_id\}/tasks/\{task_id\}/share"):
        matrix(app)


async def test_foreign_path_user_is_one_403(
    app: FastAPI, client: httpx.AsyncClient, world: World
) -> None:
    before = await others_state(client)
    await assert_forbidden_everywhere(app, client, world)
    assert await others_state(client) == before


async def test_foreign_missing_or_malformed_task_is_one_404(
    app: FastAPI, client: httpx.AsyncClient, world: World
) -> None:
    before = await others_state(client)
    await assert_not_found_everywhere(app, client, world)
    assert await others_state(client) == before


async def test_no_token_is_401_on_every_route(
    app: FastAPI, client: httpx.AsyncClient, world: World
) -> None:
    before = {user: await snapshot(client, user) for user in ("alice", "bob", "carol")}
    await assert_unauthenticated_everywhere(app, client, world)
    assert {user: await snapshot(client, user) for user in ("alice", "bob", "carol")} == before


async def test_recipes_succeed_on_own_tasks(app: FastAPI, client: httpx.AsyncClient) -> None:
    await assert_own_requests_succeed(app, client)


async def test_whole_matrix_leaves_other_users_untouched(
    app: FastAPI, client: httpx.AsyncClient, world: World
) -> None:
    before = await others_state(client)
    await assert_forbidden_everywhere(app, client, world)
    await assert_not_found_everywhere(app, client, world)
    await assert_unauthenticated_everywhere(app, client, world)
    await assert_own_requests_succeed(app, client)
    after = await others_state(client)
    assert after == before
    for user in ("alice", "carol"):
        assert sorted(after[user]) == sorted(world.tasks[user])
        for body, etag in after[user].values():
            assert body["user_id"] == user
            assert etag == f'"{body["id"]}.{body["version"]}"'
    # Nothing bob did under another name created a task for anyone else.
    alice_list = (await client.get("/api/alice/tasks", headers=auth("alice"))).json()
    assert {task["title"] for task in alice_list} == {"alice one", "alice two", "alice three"}


def test_placeholder_pattern_reads_converters() -> None:
    assert _PLACEHOLDER.findall("/api/{user_id}/tasks/{task_id:uuid}") == ["user_id", "task_id"]
