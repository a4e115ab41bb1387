"""Per-user rate limits (per client IP before authentication), in memory and in Redis."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from pydantic import SecretStr

from entrypoints.http.app import create_app
from entrypoints.settings import Settings
from tests.support import auth

HOW_TO_RUN_REDIS = "Redis tests need TEST_REDIS_URL (e.g. redis://127.0.0.1:6379/15)"


@asynccontextmanager
async def _client(
    rate_limit: str, redis_url: str | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url="memory://",
        jwt_secret=SecretStr("s" * 40),
        rate_limit=rate_limit,
        redis_url=redis_url,
    )
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        yield client


def _auth(user: str) -> dict[str, str]:
    return auth(user, secret="s" * 40)


async def _get(
    client: httpx.AsyncClient, user: str | None = None, token: str | None = None
) -> httpx.Response:
    headers = _auth(user) if user else {"Authorization": f"Bearer {token}"} if token else {}
    return await client.get("/api/me/tasks", headers=headers)


async def test_budget_headers_count_down_then_429() -> None:
    async with _client("3/minute") as client:
        remaining = []
        for _ in range(3):
            response = await _get(client, "alice")
            assert response.status_code == 200
            assert response.headers["ratelimit-limit"] == "3"
            assert 0 < int(response.headers["ratelimit-reset"]) <= 60
            remaining.append(int(response.headers["ratelimit-remaining"]))
        assert remaining == [2, 1, 0]
        refused = await _get(client, "alice")
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["ratelimit-remaining"] == "0"
    assert refused.json()["status"] == 429


async def test_each_user_has_a_budget_of_their_own() -> None:
    async with _client("2/minute") as client:
        for _ in range(2):
            assert (await _get(client, "alice")).status_code == 200
        assert (await _get(client, "alice")).status_code == 429
        assert (await _get(client, "bob")).status_code == 200


async def test_bad_tokens_spend_the_ip_budget_but_never_block_a_valid_user() -> None:
    async with _client("3/minute") as client:
        statuses = [(await _get(client, token="not-a-jwt")).status_code for _ in range(5)]
        assert statuses == [401, 401, 401, 429, 429]
        assert (await client.get("/api/me/tasks")).status_code == 429
        valid = await _get(client, "alice")
    assert valid.status_code == 200
    assert valid.headers["ratelimit-remaining"] == "2"


async def test_off_disables_rate_limiting() -> None:
    async with _client("off") as client:
        for _ in range(30):
            response = await _get(client, "alice")
            assert response.status_code == 200
            assert "ratelimit-limit" not in response.headers


async def test_operations_routes_are_not_limited() -> None:
    async with _client("1/minute") as client:
        for _ in range(5):
            assert (await client.get("/healthz")).status_code == 200


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("TEST_REDIS_URL")
    if not url:
        pytest.skip(HOW_TO_RUN_REDIS)
    return url


async def test_instances_share_counters_through_redis(redis_url: str) -> None:
    user = f"user-{uuid.uuid4().hex}"
    async with _client("5/minute", redis_url) as first, _client("5/minute", redis_url) as second:
        statuses = []
        for client in (first, second, first, second, first, second):
            statuses.append((await _get(client, user)).status_code)
    assert statuses == [200, 200, 200, 200, 200, 429]


async def test_redis_outage_lets_requests_through(caplog: pytest.LogCaptureFixture) -> None:
    async with _client("2/minute", "redis://127.0.0.1:1/0") as client:
        for _ in range(4):
            assert (await _get(client, "alice")).status_code == 200
    assert any("rate limit store failed" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("value", ["lots", "0/minute", "10/fortnight"])
def test_bad_rate_limit_setting_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="rate_limit"):
        Settings(_env_file=None, rate_limit=value)  # type: ignore[call-arg]
