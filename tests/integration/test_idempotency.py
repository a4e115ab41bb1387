"""``Idempotency-Key`` on POST: replays, conflicts, scope, expiry and atomicity."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from application.ports import (
    IdempotentOutcome,
    Storage,
    TaskReader,
    TaskRepository,
    TaskWriter,
    UnitOfWork,
)
from application.principal import Principal
from application.queries import TaskQuery
from application.task_service import IDEMPOTENCY_TTL, TaskService
from domain.task import TaskFields
from entrypoints.container import open_storage
from entrypoints.http.app import create_app
from entrypoints.settings import Settings
from tests.support import SECRET, FixedClock, SequentialIds, auth

ALICE = Principal("alice")


def _post(client: httpx.AsyncClient, body: dict[str, Any], key: str, user: str = "alice") -> Any:
    return client.post("/api/me/tasks", json=body, headers={**auth(user), "Idempotency-Key": key})


async def _titles(client: httpx.AsyncClient, user: str = "alice") -> list[str]:
    response = await client.get("/api/me/tasks", headers=auth(user))
    return [task["title"] for task in response.json()]


async def test_a_repeat_returns_the_first_response_and_creates_nothing(
    client: httpx.AsyncClient,
) -> None:
    first = await _post(client, {"title": "Pay rent"}, "rent-2026-12")
    again = await _post(client, {"title": "Pay rent"}, "rent-2026-12")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["etag"] == first.headers["etag"]
    assert again.headers["location"] == first.headers["location"]
    assert await _titles(client) == ["Pay rent"]


async def test_the_replay_is_the_first_response_even_after_the_task_changed(
    client: httpx.AsyncClient,
) -> None:
    first = await _post(client, {"title": "Draft"}, "k")
    await client.patch(first.headers["location"], json={"title": "Final"}, headers=auth())
    again = await _post(client, {"title": "Draft"}, "k")
    assert again.json() == first.json()


async def test_the_same_key_with_another_body_is_a_422(client: httpx.AsyncClient) -> None:
    await _post(client, {"title": "One"}, "k")
    other = await _post(client, {"title": "Two"}, "k")
    assert other.status_code == 422
    assert other.json()["errors"][0]["loc"] == ["header", "Idempotency-Key"]
    assert await _titles(client) == ["One"]


async def test_keys_are_scoped_per_user(client: httpx.AsyncClient) -> None:
    alice = await _post(client, {"title": "Same"}, "shared-key", "alice")
    bob = await _post(client, {"title": "Same"}, "shared-key", "bob")
    assert alice.status_code == bob.status_code == 201
    assert alice.json()["id"] != bob.json()["id"]
    assert await _titles(client, "bob") == ["Same"]


@pytest.mark.parametrize("key", [b"", b"x" * 256, b"tab\tkey", "naïve".encode("latin-1")])
async def test_malformed_keys_are_a_422(client: httpx.AsyncClient, key: bytes) -> None:
    response = await client.post(
        "/api/me/tasks",
        json={"title": "x"},
        headers=[(b"Authorization", auth()["Authorization"].encode()), (b"Idempotency-Key", key)],
    )
    assert response.status_code == 422
    assert await _titles(client) == []


async def test_keys_of_255_printable_characters_are_accepted(client: httpx.AsyncClient) -> None:
    key = "".join(chr(32 + i % 95) for i in range(255))
    assert (await _post(client, {"title": "x"}, key)).status_code == 201


async def test_concurrent_repeats_create_exactly_one_task(client: httpx.AsyncClient) -> None:
    responses = await asyncio.gather(
        *(_post(client, {"title": "Once"}, "burst") for _ in range(10))
    )
    statuses = {response.status_code for response in responses}
    assert statuses <= {201, 409}
    bodies = {response.text for response in responses if response.status_code == 201}
    assert len(bodies) == 1
    assert await _titles(client) == ["Once"]


@pytest.mark.postgres
async def test_a_repeat_while_the_first_is_in_flight_is_a_409(postgres_url: str) -> None:
    """On PostgreSQL two transactions overlap: hold the key in one, POST in another."""
    settings = _settings(postgres_url)
    app = create_app(settings)
    storage = open_storage(settings)
    transport = httpx.ASGITransport(app=app)
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://t") as client,
        ):
            await _hold_key_and_post(storage, client)
    finally:
        await storage.close()


def _settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, jwt_secret=SecretStr(SECRET), _env_file=None)  # type: ignore[call-arg]


async def _hold_key_and_post(storage: Storage, client: httpx.AsyncClient) -> None:
    async with storage.unit_of_work("alice") as first:
        assert await first.idempotency.claim("slow")
        busy = await _post(client, {"title": "x"}, "slow")
    assert busy.status_code == 409
    assert "retry-after" in busy.headers
    assert (await _post(client, {"title": "x"}, "slow")).status_code == 201


@pytest.fixture
async def storage(database_url: str) -> AsyncIterator[Storage]:
    store = open_storage(_settings(database_url))
    try:
        yield store
    finally:
        await store.close()


async def test_a_key_is_remembered_for_24_hours_and_then_forgotten(storage: Storage) -> None:
    clock = FixedClock()
    service = TaskService(storage, clock, SequentialIds())
    first = await service.create(ALICE, "me", TaskFields("Daily"), "daily")
    clock.current += IDEMPOTENCY_TTL - timedelta(seconds=1)
    assert await service.create(ALICE, "me", TaskFields("Daily"), "daily") == first
    clock.current += timedelta(seconds=2)
    later = await service.create(ALICE, "me", TaskFields("Daily"), "daily")
    assert later.id != first.id
    assert await service.create(ALICE, "me", TaskFields("Daily"), "daily") == later


class _FailingSave:
    """Wraps a unit of work so that saving the key fails after the task was added."""

    def __init__(self, inner: UnitOfWork) -> None:
        self._inner = inner
        self.idempotency = self

    @property
    def tasks(self) -> TaskRepository:
        return self._inner.tasks

    async def __aenter__(self) -> _FailingSave:
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._inner.__aexit__(*exc)

    async def commit(self) -> None:
        await self._inner.commit()

    async def claim(self, key: str) -> bool:
        return await self._inner.idempotency.claim(key)

    async def find(self, key: str) -> IdempotentOutcome | None:
        return await self._inner.idempotency.find(key)

    async def save(self, key: str, outcome: IdempotentOutcome, *, expire_before: datetime) -> None:
        raise RuntimeError("crash between the task and its key")


class _FailingSaves:
    """A store whose units of work fail to save a key."""

    def __init__(self, inner: Storage) -> None:
        self._inner = inner

    def reader(self, owner: str) -> TaskReader:
        return self._inner.reader(owner)

    def writer(self, owner: str) -> TaskWriter:
        return self._inner.writer(owner)

    def unit_of_work(self, owner: str) -> UnitOfWork:
        return _FailingSave(self._inner.unit_of_work(owner))


async def test_a_crash_leaves_neither_the_task_nor_the_key(storage: Storage) -> None:
    broken = TaskService(_FailingSaves(storage), FixedClock(), SequentialIds())
    with pytest.raises(RuntimeError):
        await broken.create(ALICE, "me", TaskFields("Lost?"), "crash")
    healthy = TaskService(storage, FixedClock(), SequentialIds())
    page = await healthy.list(ALICE, "me", TaskQuery(limit=200))
    assert page.items == []
    async with storage.unit_of_work("alice") as uow:
        assert await uow.idempotency.find("crash") is None
