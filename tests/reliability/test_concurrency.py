"""Concurrent writes to one task on the real stack (SQLite file, throwaway PostgreSQL).

50 PATCHes racing with the same If-Match: exactly one wins, 49 get 412.
50 toggles without If-Match: every one is applied (200), none lost, none
told 409: the row lock (PostgreSQL ``SELECT ... FOR UPDATE``, SQLite
``BEGIN IMMEDIATE``) serializes them before the versioned write.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from adapters.sql.migrate import upgrade
from entrypoints.http.app import create_app
from entrypoints.settings import Settings
from tests.reliability.support import PROBLEM_JSON
from tests.support import SECRET, auth

CONCURRENT = 50


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'taskvault.db'}"
        asyncio.run(upgrade(url))
        return url
    database: str = request.getfixturevalue("pg_database")
    return database


@asynccontextmanager
async def api(url: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(  # type: ignore[call-arg]
        database_url=url, jwt_secret=SecretStr(SECRET), rate_limit="off", _env_file=None
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://taskvault.test", headers=auth("racer")
        ) as client:
            yield client


async def _if_match_race(url: str) -> tuple[Counter[int], dict[str, object], list[str]]:
    async with api(url) as client:
        created = await client.post("/api/me/tasks", json={"title": "contested"})
        assert created.status_code == 201
        path, etag = created.headers["location"], created.headers["etag"]
        responses = await asyncio.gather(
            *(
                client.patch(path, json={"title": f"writer {n}"}, headers={"If-Match": etag})
                for n in range(CONCURRENT)
            )
        )
        for r in responses:
            if r.status_code == 412:
                assert r.headers["content-type"] == PROBLEM_JSON
        winners = [r.json()["title"] for r in responses if r.status_code == 200]
        final = (await client.get(path)).json()
    return Counter(r.status_code for r in responses), final, winners


def test_same_if_match_has_exactly_one_winner(store_url: str, figures: list[str]) -> None:
    statuses, final, winners = asyncio.run(_if_match_race(store_url))
    assert statuses == {200: 1, 412: CONCURRENT - 1}
    assert final["version"] == 2
    assert [final["title"]] == winners
    figures.append(f"{CONCURRENT} PATCHes with one If-Match: {dict(statuses)}")


async def _toggle_storm(url: str) -> tuple[list[httpx.Response], dict[str, object]]:
    async with api(url) as client:
        created = await client.post("/api/me/tasks", json={"title": "flip"})
        path = created.headers["location"]
        responses = await asyncio.gather(
            *(client.patch(f"{path}/complete") for _ in range(CONCURRENT))
        )
        final = (await client.get(path)).json()
    return list(responses), final


def test_concurrent_toggles_lose_no_update(store_url: str, figures: list[str]) -> None:
    responses, final = asyncio.run(_toggle_storm(store_url))
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: CONCURRENT}, statuses
    versions = sorted(r.json()["version"] for r in responses)
    # Each toggle saw the one before it: versions 2..51, no two alike.
    assert versions == list(range(2, CONCURRENT + 2))
    for r in responses:
        task = r.json()
        assert task["completed"] == (task["version"] % 2 == 0), task
    assert final["version"] == 1 + statuses[200]
    assert final["completed"] is (CONCURRENT % 2 == 1)
    figures.append(
        f"{CONCURRENT} concurrent toggles: {dict(statuses)}, final version {final['version']}"
    )
