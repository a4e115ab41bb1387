"""CORS for a browser front end (``TASKVAULT_CORS_ORIGINS``), e.g. Next.js on :3000."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from entrypoints.http.app import create_app
from entrypoints.settings import Settings
from tests.support import SECRET, make_token
from tests.support.http import missing_id

ORIGIN = "http://localhost:3000"
OTHER_ORIGIN = "http://localhost:4000"
EXPOSED = {
    "etag",
    "location",
    "link",
    "x-request-id",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
    "retry-after",
    "www-authenticate",
    "allow",
}


@asynccontextmanager
async def _client(**overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url="memory://",
        jwt_secret=SecretStr(SECRET),
        **{"cors_origins": f"{ORIGIN}, {OTHER_ORIGIN}", **overrides},
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            yield client


def _names(value: str | None) -> set[str]:
    return {part.strip().lower() for part in (value or "").split(",") if part.strip()}


def _from(origin: str = ORIGIN, token: str | None = None, **headers: str) -> dict[str, str]:
    sent = {"Origin": origin, **headers}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    return sent


def _preflight_headers(
    method: str, headers: str = "authorization,content-type,if-match", origin: str = ORIGIN
) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers,
    }


def assert_cors(response: httpx.Response, origin: str = ORIGIN) -> None:
    assert response.headers.get("access-control-allow-origin") == origin, response.headers
    assert _names(response.headers.get("access-control-expose-headers")) >= EXPOSED
    assert "origin" in _names(response.headers.get("vary"))


async def test_preflight_from_the_front_end_is_allowed() -> None:
    async with _client() as client:
        response = await client.options(
            f"/api/me/tasks/{missing_id()}", headers=_preflight_headers("PATCH")
        )
        create = await client.options(
            "/api/me/tasks",
            headers=_preflight_headers("POST", "Authorization, Content-Type, Idempotency-Key"),
        )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert {"get", "post", "put", "patch", "delete"} <= _names(
        response.headers["access-control-allow-methods"]
    )
    assert {"authorization", "content-type", "if-match", "if-none-match"} <= _names(
        response.headers["access-control-allow-headers"]
    )
    assert int(response.headers["access-control-max-age"]) > 0
    assert "origin" in _names(response.headers.get("vary"))
    # Answered before authentication and rate limiting; still traced.
    assert "www-authenticate" not in response.headers
    assert "ratelimit-limit" not in response.headers
    assert response.headers["x-request-id"]
    assert create.status_code == 200
    assert "idempotency-key" in _names(create.headers["access-control-allow-headers"])


async def test_preflights_spend_no_rate_limit_budget() -> None:
    async with _client(rate_limit="2/minute") as client:
        for _ in range(10):
            preflight = await client.options("/api/me/tasks", headers=_preflight_headers("GET"))
            assert preflight.status_code == 200
        # The client IP's budget is untouched: two requests still fit.
        first = await client.get("/api/me/tasks", headers=_from())
        assert (first.status_code, first.headers["ratelimit-remaining"]) == (401, "1")
        assert_cors(first)


async def test_another_origin_gets_no_cors_headers() -> None:
    token = make_token("alice")
    async with _client() as client:
        preflight = await client.options(
            "/api/me/tasks", headers=_preflight_headers("PATCH", origin="https://evil.example")
        )
        actual = await client.get("/api/me/tasks", headers=_from("https://evil.example", token))
        other = await client.get("/api/me/tasks", headers=_from(OTHER_ORIGIN, token))
        unlisted_header = await client.options(
            "/api/me/tasks", headers=_preflight_headers("POST", "authorization,x-evil")
        )
    assert preflight.status_code == 400
    assert "access-control-allow-origin" not in preflight.headers
    # The browser, not the server, withholds the response: it is served, without CORS.
    assert actual.status_code == 200
    assert "access-control-allow-origin" not in actual.headers
    # Every listed origin is allowed, each named exactly.
    assert_cors(other, OTHER_ORIGIN)
    assert unlisted_header.status_code == 400


async def test_responses_to_the_front_end_expose_the_api_headers() -> None:
    token = make_token("alice")
    async with _client() as client:
        created = await client.post(
            "/api/me/tasks", json={"title": "From the browser"}, headers=_from(token=token)
        )
        for title in ("two", "three"):
            await client.post("/api/me/tasks", json={"title": title}, headers=_from(token=token))
        page = await client.get("/api/me/tasks?limit=1", headers=_from(token=token))
    assert created.status_code == 201
    assert_cors(created)
    for name in ("etag", "location", "x-request-id", "ratelimit-remaining"):
        assert name in created.headers
    assert page.status_code == 200
    assert_cors(page)
    assert 'rel="next"' in page.headers["link"]


@pytest.mark.parametrize(
    ("status", "method", "path", "token", "body"),
    [
        (401, "GET", "/api/me/tasks", None, None),
        (401, "GET", "/api/me/tasks", "not-a-token", None),
        (403, "GET", "/api/bob/tasks", "alice", None),
        (404, "GET", f"/api/me/tasks/{missing_id()}", "alice", None),
        (404, "GET", "/nowhere", None, None),
        (405, "PUT", "/api/me/tasks", "alice", {"title": "x"}),
        (413, "POST", "/api/me/tasks", "alice", {"title": "x" * 70_000}),
        (422, "POST", "/api/me/tasks", "alice", {"title": ""}),
    ],
)
async def test_errors_carry_cors_headers_so_the_browser_can_read_them(
    status: int, method: str, path: str, token: str | None, body: dict[str, str] | None
) -> None:
    bearer = make_token(token) if token == "alice" else token
    async with _client() as client:
        response = await client.request(method, path, json=body, headers=_from(token=bearer))
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert_cors(response)


async def test_a_429_carries_cors_headers_and_retry_after() -> None:
    token = make_token("alice")
    async with _client(rate_limit="1/minute") as client:
        assert (await client.get("/api/me/tasks", headers=_from(token=token))).status_code == 200
        limited = await client.get("/api/me/tasks", headers=_from(token=token))
    assert limited.status_code == 429
    assert_cors(limited)
    assert int(limited.headers["retry-after"]) >= 1


async def test_without_origins_there_is_no_cors() -> None:
    async with _client(cors_origins="") as client:
        preflight = await client.options("/api/me/tasks", headers=_preflight_headers("GET"))
        actual = await client.get("/api/me/tasks", headers=_from(token=make_token("alice")))
    assert "access-control-allow-origin" not in preflight.headers
    assert "access-control-allow-origin" not in actual.headers


async def test_a_browser_client_can_read_a_401_challenge_and_a_405s_methods() -> None:
    async with _client() as client:
        unauthorized = await client.get("/api/me/tasks", headers={"Origin": ORIGIN})
        not_allowed = await client.post("/healthz", headers={"Origin": ORIGIN})
    assert unauthorized.status_code == 401
    assert not_allowed.status_code == 405
    for response, header in ((unauthorized, "www-authenticate"), (not_allowed, "allow")):
        assert header in response.headers
        assert header in _names(response.headers.get("access-control-expose-headers"))
