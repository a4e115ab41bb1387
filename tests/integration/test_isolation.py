"""Per-user isolation, checked on every route of the app's own route table.

The matrix is generated from ``app.routes``: every ``APIRoute`` whose path
names ``{user_id}``, with each of its methods. A route (or method) without a
request recipe below fails the tests, so a new route cannot go unchecked.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from tests.support import auth
from tests.support.http import (
    Json,
    assert_api_headers,
    assert_problem,
    create,
    fingerprint,
    missing_id,
    snapshot,
)

USER_PLACEHOLDERS = frozenset({"user_id", "task_id"})
_PLACEHOLDER = re.compile(r"{([^}:]+)(?::[^}]*)?}")

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
}

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
        return "{task_id}" in self.template

    def url(self, user: str, task_id: str) -> str:
        # Placeholders are filled with percent-encoded values, as a client would.
        return self.template.format(user_id=quote(user, safe=""), task_id=quote(task_id, safe=""))

    async def send(
        self, client: httpx.AsyncClient, user: str, task_id: str, headers: dict[str, str]
    ) -> httpx.Response:
        kwargs: dict[str, Any] = {"headers": headers}
        if self.body is not None:
            kwargs["json"] = self.body
        return await client.request(self.method, self.url(user, task_id), **kwargs)

    def __str__(self) -> str:
        suffix = "" if self.body is None else f" {self.body}"
        return f"{self.method} {self.template}{suffix}"


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
    stale = set(RECIPES) - seen
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
            assert_problem(response, 404)
            assert_api_headers(response)
            assert "www-authenticate" not in response.headers
            assert "etag" not in response.headers
            prints.add(fingerprint(response))
        assert len(prints) == 1, f"{call}: 404 responses differ: {prints}"


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
            assert response.status_code in {200, 201, 204}, f"{call}: {response.text}"
            assert_api_headers(response)
            if response.status_code != 204:
                body = response.json()
                tasks = body if isinstance(body, list) else [body]
                assert all(task["user_id"] == "bob" for task in tasks)


async def test_every_user_route_has_a_recipe(app: FastAPI) -> None:
    calls = matrix(app)
    routes = {(method, route.path) for method, route in user_routes(app)}
    assert routes == {(call.method, call.template) for call in calls}
    assert len(routes) >= 7


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
