"""The change feed and the batch route over HTTP, on every store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from dependency_injector import providers
from fastapi import FastAPI
from pydantic import SecretStr

from entrypoints.container import Container
from entrypoints.http.app import create_app
from entrypoints.settings import Settings
from tests.support import SECRET, FixedClock, auth
from tests.support.http import Json, create, etag_of, list_all, missing_id, tasks_url

CHANGES = tasks_url(suffix="/changes")
BATCH = tasks_url(suffix="/batch")


async def poll(client: httpx.AsyncClient, sub: str = "alice", **params: Any) -> Json:
    response = await client.get(CHANGES, params=params, headers=auth(sub))
    assert response.status_code == 200, response.text
    body: Json = response.json()
    return body


async def follow(
    client: httpx.AsyncClient, replica: dict[str, Json], since: str | None, limit: int = 500
) -> str:
    """Apply the feed to ``replica`` until ``has_more`` is false; the last ``next``."""
    while True:
        params: dict[str, Any] = {"limit": limit}
        if since is not None:
            params["since"] = since
        page = await poll(client, **params)
        for change in page["changes"]:
            if change["type"] == "upsert":
                replica[change["task"]["id"]] = change["task"]
            else:
                replica.pop(change["id"], None)
        since = page["next"]
        if not page["has_more"]:
            assert since is not None
            return since


async def batch(
    client: httpx.AsyncClient, operations: list[Json], sub: str = "alice", **extra: Any
) -> httpx.Response:
    headers = {**auth(sub), **extra.pop("headers", {})}
    return await client.post(BATCH, json={"operations": operations, **extra}, headers=headers)


def by_id(tasks: list[Json]) -> dict[str, Json]:
    return {task["id"]: task for task in tasks}


async def test_a_first_sync_in_pages_then_polls_give_exactly_the_server_state(
    client: httpx.AsyncClient,
) -> None:
    made = [await create(client, title=f"task {n}") for n in range(7)]
    replica: dict[str, Json] = {}
    token = await follow(client, replica, None, limit=3)
    assert replica == by_id(await list_all(client, "alice"))

    await client.patch(tasks_url(task_id=made[0]["id"]), json={"title": "renamed"}, headers=auth())
    await client.patch(tasks_url(task_id=made[0]["id"]), json={"priority": "high"}, headers=auth())
    await client.delete(tasks_url(task_id=made[1]["id"]), headers=auth())
    await client.patch(tasks_url(task_id=made[2]["id"], suffix="/complete"), headers=auth())
    page = await poll(client, since=token)
    assert page["has_more"] is False
    ids = [c["task"]["id"] if c["type"] == "upsert" else c["id"] for c in page["changes"]]
    # Each task once, in the order of its last change.
    assert ids == [made[0]["id"], made[1]["id"], made[2]["id"]]
    assert page["changes"][1] == {
        "type": "delete",
        "id": made[1]["id"],
        "deleted_at": page["changes"][1]["deleted_at"],
    }
    token = await follow(client, replica, token)
    assert replica == by_id(await list_all(client, "alice"))
    assert (await poll(client, since=token))["changes"] == []


async def test_a_write_that_changes_nothing_is_not_a_change(client: httpx.AsyncClient) -> None:
    task = await create(client, title="same")
    token = (await poll(client))["next"]
    response = await client.patch(
        tasks_url(task_id=task["id"]), json={"title": "same"}, headers=auth()
    )
    assert response.status_code == 200
    assert (await poll(client, since=token))["changes"] == []


async def test_the_feed_is_the_callers_own(client: httpx.AsyncClient) -> None:
    await create(client, "alice", title="alice's")
    await create(client, "bob", title="bob's")
    bobs = await poll(client, "bob")
    assert [c["task"]["title"] for c in bobs["changes"]] == ["bob's"]
    response = await client.get(tasks_url("alice", suffix="/changes"), headers=auth("bob"))
    assert response.status_code == 403


async def test_any_token_but_the_callers_own_is_the_same_422(client: httpx.AsyncClient) -> None:
    alices = (await poll(client, "alice"))["next"]
    payload, mac = alices.split(".")
    tampered = f"{payload}.{'A' if mac[0] != 'A' else 'B'}{mac[1:]}"
    bodies = []
    for since in (tampered, "not-a-token", alices + "x", "a.b.c"):
        response = await client.get(CHANGES, params={"since": since}, headers=auth("alice"))
        assert response.status_code == 422
        bodies.append(response.content)
    response = await client.get(CHANGES, params={"since": alices}, headers=auth("bob"))
    assert response.status_code == 422
    bodies.append(response.content)
    assert len(set(bodies)) == 1


@pytest.mark.parametrize(
    ("params", "field"),
    [({"limit": "0"}, "limit"), ({"limit": "1001"}, "limit"), ({"wait": "31"}, "wait")],
)
async def test_feed_parameters_out_of_range_are_422(
    client: httpx.AsyncClient, params: dict[str, str], field: str
) -> None:
    response = await client.get(CHANGES, params=params, headers=auth())
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["query", field]


async def test_a_waiting_poll_wakes_on_a_commit_and_otherwise_times_out(
    client: httpx.AsyncClient,
) -> None:
    token = (await poll(client))["next"]
    started = time.monotonic()
    assert (await poll(client, since=token, wait="0.3"))["changes"] == []
    assert time.monotonic() - started >= 0.3

    async def write_soon() -> None:
        await asyncio.sleep(0.2)
        await create(client, title="wake up")

    started = time.monotonic()
    page, _ = await asyncio.gather(poll(client, since=token, wait="20"), write_soon())
    assert time.monotonic() - started < 5
    assert [c["task"]["title"] for c in page["changes"]] == ["wake up"]


# --- batch -------------------------------------------------------------------


def _comparable(body: Json) -> Json:
    """A result body with what differs between two users' tasks taken out."""
    if "task" in body:
        task = {k: v for k, v in body["task"].items() if k not in {"id", "user_id"}}
        task = {k: v for k, v in task.items() if not k.endswith("_at") or k == "due_at"}
        return {"status": body["status"], "task": task}
    return body


async def _single(client: httpx.AsyncClient, sub: str, op: Json) -> Json:
    """What the single route answers for ``op``, in a batch result's shape."""
    headers = auth(sub)
    if op.get("if_match") is not None:
        headers["If-Match"] = op["if_match"]
    match op["op"]:
        case "create":
            response = await client.post(tasks_url(), json=op["task"], headers=headers)
        case "replace":
            response = await client.put(
                tasks_url(task_id=op["id"]), json=op["task"], headers=headers
            )
        case "patch":
            response = await client.patch(
                tasks_url(task_id=op["id"]), json=op["fields"], headers=headers
            )
        case "complete":
            url = tasks_url(task_id=op["id"], suffix="/complete")
            if "completed" in op:
                response = await client.patch(
                    url, json={"completed": op["completed"]}, headers=headers
                )
            else:
                response = await client.patch(url, headers=headers)
        case "delete":
            response = await client.delete(tasks_url(task_id=op["id"]), headers=headers)
    if response.status_code >= 400:
        return {"status": response.status_code, "problem": response.json()}
    if response.status_code == 204:
        return {"status": 204}
    return {
        "status": response.status_code,
        "task": response.json(),
        "etag": response.headers["etag"],
    }


async def test_each_result_is_what_the_single_route_answers(client: httpx.AsyncClient) -> None:
    """Alice batches, Bob's twin does the same one request at a time."""
    twins = {}
    for sub in ("alice", "bob"):
        twins[sub] = await create(client, sub, title="twin", priority="low")
    carols = await create(client, "carol", title="carol's")

    def operations(sub: str) -> list[Json]:
        mine = twins[sub]["id"]
        stale = etag_of({**twins[sub], "version": 99})
        return [
            {"op": "create", "task": {"title": "made", "priority": "high"}},
            {"op": "create", "task": {"title": ""}},
            {"op": "create", "task": {"title": "x", "colour": "red"}},
            {"op": "patch", "id": mine, "fields": {"title": "patched"}},
            {"op": "patch", "id": mine, "fields": {"title": None}},
            {"op": "patch", "id": mine, "fields": {"priority": "high"}, "if_match": stale},
            {"op": "complete", "id": mine},
            {"op": "complete", "id": mine, "completed": True},
            {"op": "complete", "id": mine, "completed": "yes"},
            {"op": "replace", "id": mine, "task": {"title": "replaced"}},
            {"op": "patch", "id": carols["id"], "fields": {"title": "not yours"}},
            {"op": "delete", "id": missing_id()},
            {"op": "delete", "id": "not-a-uuid"},
            {"op": "complete", "id": "0192f5d0"},
            {"op": "delete", "id": mine, "if_match": stale},
            {"op": "delete", "id": mine},
            {"op": "patch", "id": mine, "fields": {"title": "gone"}},
        ]

    response = await batch(client, operations("alice"))
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    singles = [await _single(client, "bob", op) for op in operations("bob")]
    assert [r["status"] for r in results] == [s["status"] for s in singles]
    for ours, theirs in zip(results, singles, strict=True):
        if "problem" in ours:
            # The same body, bar the path that names each user's own task.
            assert {**ours["problem"], "instance": None} == {**theirs["problem"], "instance": None}
        else:
            assert _comparable(ours) == _comparable(theirs)
    foreign, missing, malformed = (results[i]["problem"] for i in (10, 11, 12))
    assert foreign["instance"] == f"/api/me/tasks/{carols['id']}"
    assert {**foreign, "instance": None} == {**missing, "instance": None}
    assert {**missing, "instance": None} == {**malformed, "instance": None}


async def test_an_atomic_batch_that_fails_changes_nothing_and_shows_nothing(
    client: httpx.AsyncClient,
) -> None:
    task = await create(client, title="keep")
    token = (await poll(client))["next"]
    response = await batch(
        client,
        [
            {"op": "create", "task": {"title": "never"}},
            {"op": "patch", "id": task["id"], "fields": {"title": "never"}},
            {"op": "delete", "id": missing_id()},
            {"op": "complete", "id": task["id"]},
        ],
        atomic=True,
    )
    assert response.status_code == 200
    assert [r["status"] for r in response.json()["results"]] == [424, 424, 404, 424]
    assert response.json()["results"][0]["problem"]["status"] == 424
    assert [t["title"] for t in await list_all(client, "alice")] == ["keep"]
    assert (await poll(client, since=token))["changes"] == []


async def test_an_atomic_batch_with_a_malformed_operation_runs_none(
    client: httpx.AsyncClient,
) -> None:
    response = await batch(
        client,
        [{"op": "create", "task": {"title": "never"}}, {"op": "create", "task": {}}],
        atomic=True,
    )
    assert [r["status"] for r in response.json()["results"]] == [424, 422]
    assert await list_all(client, "alice") == []


async def test_a_batch_commits_together_and_the_feed_shows_it(client: httpx.AsyncClient) -> None:
    token = (await poll(client))["next"]
    response = await batch(
        client, [{"op": "create", "task": {"title": f"n{n}"}} for n in range(100)], atomic=True
    )
    assert [r["status"] for r in response.json()["results"]] == [201] * 100
    replica: dict[str, Json] = {}
    await follow(client, replica, token, limit=30)
    assert replica == by_id(await list_all(client, "alice"))
    assert len(replica) == 100


async def test_an_idempotency_key_replays_the_first_results(client: httpx.AsyncClient) -> None:
    ops: list[Json] = [
        {"op": "create", "task": {"title": "once"}},
        {"op": "delete", "id": missing_id()},
    ]
    key = {"Idempotency-Key": "batch-1"}
    first = await batch(client, ops, headers=key)
    again = await batch(client, ops, headers=key)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert len(await list_all(client, "alice")) == 1
    other = await batch(client, ops[:1], headers=key)
    assert other.status_code == 422


@pytest.mark.parametrize(
    "body",
    [
        {"operations": []},
        {"operations": [{"op": "create", "task": {"title": "x"}}] * 101},
        {"operations": [{"op": "explode"}]},
        {"operations": [{"op": "create", "task": {"title": "x"}}], "extra": 1},
        {"operations": [{"op": "create", "task": "not an object"}]},
        {"atomic": "yes", "operations": [{"op": "create", "task": {"title": "x"}}]},
    ],
)
async def test_a_malformed_envelope_is_a_422_for_the_whole_request(
    client: httpx.AsyncClient, body: Json
) -> None:
    response = await client.post(BATCH, json=body, headers=auth())
    assert response.status_code == 422
    assert await list_all(client, "alice") == []


async def test_a_batch_body_that_is_not_json_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        BATCH, content=b"{", headers={**auth(), "Content-Type": "application/json"}
    )
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("method", "url", "allow"),
    [("POST", CHANGES, "GET"), ("OPTIONS", CHANGES, "GET"), ("OPTIONS", BATCH, "POST")],
)
async def test_a_wrong_method_on_a_sync_route_allows_only_its_own(
    client: httpx.AsyncClient, method: str, url: str, allow: str
) -> None:
    """``/tasks/{task_id}`` matches these paths too, but they are not tasks."""
    response = await client.request(method, url, headers=auth())
    assert response.status_code == 405
    assert response.headers["allow"] == allow


# --- with a clock of the test's --------------------------------------------------


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
async def timed_client(database_url: str, clock: FixedClock) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        database_url=database_url,
        jwt_secret=SecretStr(SECRET),
        sync_retention_days=30,
        _env_file=None,  # type: ignore[call-arg]
    )
    container = Container(settings=settings)
    container.clock.override(providers.Object(clock))
    app: FastAPI = create_app(container=container)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t.test") as http:
            yield http


async def test_a_token_past_the_retention_horizon_is_410(
    timed_client: httpx.AsyncClient, clock: FixedClock
) -> None:
    task = await create(timed_client, title="old")
    token = (await poll(timed_client))["next"]
    await timed_client.delete(tasks_url(task_id=task["id"]), headers=auth())
    clock.current += timedelta(days=29)
    fresh = (await poll(timed_client, since=token))["next"]
    clock.current += timedelta(days=1, seconds=1)
    response = await timed_client.get(CHANGES, params={"since": token}, headers=auth())
    assert response.status_code == 410
    assert response.headers["content-type"] == "application/problem+json"
    # A client that kept polling is still in time; one that starts over always is.
    assert (await poll(timed_client, since=fresh))["changes"] == []
    assert (await poll(timed_client))["changes"] == []
