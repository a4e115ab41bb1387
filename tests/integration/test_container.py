"""The composition root opens every app-wide resource once and closes them at the end."""

from __future__ import annotations

import inspect
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from adapters.asyncpg import PgStorage
from adapters.auth import CachingTokenVerifier
from adapters.ratelimit import LimitsRateLimiter
from application.errors import StorageUnavailable
from application.queries import TaskQuery
from entrypoints.container import Container
from entrypoints.http.app import create_app
from entrypoints.http.services import Services
from entrypoints.settings import Settings
from tests.support import SECRET, auth


async def _settled(value: Any) -> Any:
    """A provider's value: dependency-injector hands out futures once a resource is async."""
    return await value if inspect.isawaitable(value) else value


def _container(database_url: str, rate_limit: str = "1200/minute") -> Container:
    settings = Settings(
        database_url=database_url,
        jwt_secret=SecretStr(SECRET),
        rate_limit=rate_limit,
        _env_file=None,  # type: ignore[call-arg]
    )
    return Container(settings=settings)


async def test_services_are_built_once_from_the_containers_own_objects(database_url: str) -> None:
    container = _container(database_url)
    await _settled(container.init_resources())
    try:
        services = await _settled(container.services())
        assert isinstance(services, Services)
        assert services is await _settled(container.services())
        assert services.storage is await _settled(container.storage())
        assert services.rate_limiter is await _settled(container.rate_limiter())
        assert isinstance(services.rate_limiter, LimitsRateLimiter)
        assert isinstance(services.token_verifier, CachingTokenVerifier)
        assert services.token_verifier is container.token_verifier()
        assert services.cursors is container.cursor_codec()
    finally:
        await _settled(container.shutdown_resources())


@pytest.mark.postgres
async def test_shutting_down_closes_the_stores_pool(postgres_url: str) -> None:
    container = _container(postgres_url)
    await _settled(container.init_resources())
    storage = await _settled(container.storage())
    assert isinstance(storage, PgStorage)
    assert await storage.reader("alice").list(TaskQuery()) == []
    await _settled(container.shutdown_resources())
    with pytest.raises(StorageUnavailable):
        await storage.reader("alice").list(TaskQuery())


async def test_no_rate_limit_is_no_limiter_to_close() -> None:
    container = _container("memory://", rate_limit="off")
    await _settled(container.init_resources())
    try:
        assert (await _settled(container.services())).rate_limiter is None
    finally:
        await _settled(container.shutdown_resources())


def test_the_cli_token_and_the_server_share_one_hmac_verifier() -> None:
    container = _container("memory://")
    issuer = container.hmac_verifier()
    assert issuer is container.hmac_verifier()
    cached = container.token_verifier()
    assert isinstance(cached, CachingTokenVerifier)
    assert cached._inner is issuer


async def test_an_app_started_again_serves_on_new_resources(database_url: str) -> None:
    app = create_app(_container(database_url).settings())
    stores = []
    for round_ in range(2):
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://taskvault.test"
            ) as client,
        ):
            stores.append(app.state.services.storage)
            created = await client.post(
                "/api/me/tasks", json={"title": f"round {round_}"}, headers=auth("alice")
            )
            assert created.status_code == 201
            assert (await client.get("/api/me/tasks", headers=auth("alice"))).status_code == 200
    assert stores[0] is not stores[1]
