"""X-Forwarded-* are honoured from the proxies in TASKVAULT_TRUSTED_PROXIES only: the
client's address, and the scheme and host of ``Link`` and ``Location``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from entrypoints.http.app import create_app
from entrypoints.settings import Settings
from tests.support import SECRET, auth
from tests.support.http import create, next_link, tasks_url

PROXY = "10.0.0.5"
PUBLIC = {"X-Forwarded-Host": "api.example.com", "X-Forwarded-Proto": "https"}


@asynccontextmanager
async def _client(peer: str, rate_limit: str = "off") -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        database_url="memory://",
        jwt_secret=SecretStr(SECRET),
        trusted_proxies=("10.0.0.0/24", "::1"),
        rate_limit=rate_limit,
        _env_file=None,  # type: ignore[call-arg]
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app, client=(peer, 4321))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://taskvault.internal:8000") as client,
    ):
        yield client


async def _next_page(client: httpx.AsyncClient, headers: dict[str, str]) -> str | None:
    for title in ("one", "two"):
        await create(client, "alice", title=title)
    response = await client.get(f"{tasks_url('alice')}?limit=1", headers={**auth(), **headers})
    assert response.status_code == 200
    return next_link(response)


async def _location(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    response = await client.post(
        tasks_url("alice"), json={"title": "located"}, headers={**auth(), **headers}
    )
    assert response.status_code == 201, response.text
    location: str = response.headers["location"]
    assert location.endswith(f"/api/alice/tasks/{response.json()['id']}")
    return location


async def test_links_carry_the_public_host_and_scheme_behind_a_trusted_proxy() -> None:
    async with _client(PROXY) as client:
        link = await _next_page(client, PUBLIC)
        location = await _location(client, PUBLIC)
    assert link is not None
    assert link.startswith("https://api.example.com/api/alice/tasks?")
    assert location.startswith("https://api.example.com/api/alice/tasks/")


async def test_the_same_headers_from_anyone_else_are_ignored() -> None:
    async with _client("192.0.2.7") as client:
        link = await _next_page(client, PUBLIC)
        location = await _location(client, PUBLIC)
    assert link is not None
    assert link.startswith("http://taskvault.internal:8000/api/alice/tasks?")
    assert location.startswith("http://taskvault.internal:8000/api/alice/tasks/")


@pytest.mark.parametrize(
    "host", ["evil.example/path", "a b", "user@evil.example", "x.example:99999x", "-x.example", ""]
)
async def test_a_malformed_forwarded_host_is_ignored(host: str) -> None:
    async with _client(PROXY) as client:
        link = await _next_page(client, {"X-Forwarded-Host": host})
    assert link is not None
    assert link.startswith("http://taskvault.internal:8000/")


async def test_a_forwarded_host_with_a_port_or_an_ipv6_address_is_kept() -> None:
    async with _client(PROXY) as client:
        with_port = await _next_page(client, {"X-Forwarded-Host": "api.example.com:8443"})
        ipv6 = await _next_page(client, {"X-Forwarded-Host": "[2001:db8::1]:8443"})
    assert with_port is not None
    assert with_port.startswith("http://api.example.com:8443/")
    assert ipv6 is not None
    assert ipv6.startswith("http://[2001:db8::1]:8443/")


async def _unauthenticated(client: httpx.AsyncClient, forwarded_for: str) -> int:
    response = await client.get(tasks_url("alice"), headers={"X-Forwarded-For": forwarded_for})
    return response.status_code


async def test_the_client_budget_is_the_forwarded_clients_behind_a_trusted_proxy() -> None:
    async with _client(PROXY, rate_limit="2/minute") as client:
        first = [await _unauthenticated(client, "198.51.100.1") for _ in range(3)]
        # A client may prepend anything; the proxy appends the address it saw.
        other = await _unauthenticated(client, "198.51.100.1, 203.0.113.9")
    assert first == [401, 401, 429]
    assert other == 401


async def test_a_forwarded_client_from_anyone_else_shares_the_peers_budget() -> None:
    async with _client("192.0.2.7", rate_limit="2/minute") as client:
        statuses = [await _unauthenticated(client, f"198.51.100.{n}") for n in range(3)]
    assert statuses == [401, 401, 429]


def test_trusted_proxies_must_be_addresses_or_networks() -> None:
    with pytest.raises(ValidationError, match="IP addresses or networks"):
        Settings(trusted_proxies="10.0.0.0/8, proxy.internal", _env_file=None)  # type: ignore[call-arg,arg-type]
