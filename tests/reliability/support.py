"""Server settings, request records and load helpers for the fault tests."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from adapters.sql.migrate import upgrade
from tests.support import SECRET

PROBLEM_JSON = "application/problem+json"
SERVER_ENV = {
    "TASKVAULT_JWT_SECRET": SECRET,
    "TASKVAULT_RATE_LIMIT": "off",
    "TASKVAULT_LOG_LEVEL": "INFO",
}
"""What every ``TaskvaultServer`` of the fault tests runs with, besides its own settings."""

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Outcome:
    """One request as the client saw it; ``status`` None for a transport error."""

    op: str
    start: float
    end: float
    status: int | None
    retry_after: str | None = None
    content_type: str | None = None
    problem_status: int | None = None

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


async def timed(
    client: httpx.AsyncClient, op: str, method: str, url: str, **kw: Any
) -> tuple[Outcome, httpx.Response | None]:
    """Send one request; a transport error is an outcome too, never an exception."""
    start = time.monotonic()
    try:
        response = await client.request(method, url, **kw)
    except httpx.TransportError:
        return Outcome(op, start, time.monotonic(), None), None
    end = time.monotonic()
    problem_status = None
    content_type = response.headers.get("content-type")
    if response.status_code >= 400 and content_type == PROBLEM_JSON:
        body = response.json()
        problem_status = body.get("status") if isinstance(body, dict) else None
    outcome = Outcome(
        op,
        start,
        end,
        response.status_code,
        response.headers.get("retry-after"),
        content_type,
        problem_status,
    )
    return outcome, response


def by_status(outcomes: Iterable[Outcome]) -> dict[str, int]:
    counts = Counter("transport" if o.status is None else str(o.status) for o in outcomes)
    return dict(sorted(counts.items()))


def assert_proper_503s(outcomes: Iterable[Outcome]) -> None:
    """Every 503 has a positive integer Retry-After; an API one is problem+json.

    (/readyz answers its 503 in plain JSON, ``{"status": "unavailable"}``.)
    """
    for o in outcomes:
        if o.status == 503:
            if o.op != "readyz":
                assert o.content_type == PROBLEM_JSON, o
                assert o.problem_status == 503, o
            assert o.retry_after is not None, o
            assert o.retry_after.isdigit(), o
            assert int(o.retry_after) >= 1, o


async def create_database(cluster_url: str, name: str) -> str:
    """A new migrated database on the cluster at ``cluster_url``; its URL."""
    url = make_url(cluster_url)
    conn = await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, database=url.database, timeout=10
    )
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    database_url = url.set(database=name).render_as_string(hide_password=False)
    await upgrade(database_url)
    return database_url


async def all_tasks(client: httpx.AsyncClient, user: str = "me") -> list[dict[str, object]]:
    """Every task of the token's user, page by page (bounded)."""
    found: list[dict[str, object]] = []
    url: str | None = f"/api/{user}/tasks?limit=200&sort=created_at"
    for _ in range(500):
        if url is None:
            return found
        response = await client.get(url)
        assert response.status_code == 200, response.text
        found.extend(response.json())
        next_link = response.links.get("next")
        url = None if next_link is None else next_link["url"]
    raise AssertionError("more than 500 pages")


async def gather_bounded(limit: int, coros: Iterable[Awaitable[T]]) -> list[T]:
    """``asyncio.gather`` with at most ``limit`` running at once."""
    semaphore = asyncio.Semaphore(limit)

    async def run(coro: Awaitable[T]) -> T:
        async with semaphore:
            return await coro

    return list(await asyncio.gather(*(run(c) for c in coros)))
