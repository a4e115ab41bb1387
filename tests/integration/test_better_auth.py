"""A real identity provider: Better Auth's ``jwt`` plugin in front of taskvault.

``tests/idp/server.mjs`` runs Better Auth (email and password, the ``jwt``
plugin signing with ES256 or RS256, SQLite in a temporary folder) on a
loopback port. Users sign up through its HTTP API, take a JWT from
``GET /api/auth/token`` with their session cookie, and use it on taskvault,
configured exactly as the README says: ``TASKVAULT_JWKS_URL`` is Better
Auth's ``/api/auth/jwks``, issuer and audience its base URL.

Needs Node.js: without ``node`` the test skips and says so (fails under
``CI=true``). ``.ci/run`` installs ``tests/idp``'s packages (``npm ci``);
when they are missing the test installs them itself.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from jose import jwt

from adapters.sql.migrate import upgrade
from entrypoints.http.app import create_app
from entrypoints.settings import Settings
from tests.support import SECRET
from tests.support.prerequisites import missing_prerequisite, npm_ci
from tests.support.processes import LOOPBACK, ServerProcess, free_port

IDP = Path(__file__).resolve().parents[1] / "idp"
NODE_MISSING = (
    "node not found: the Better Auth test needs Node.js 20 or newer "
    "(then `npm ci --prefix tests/idp`)"
)
HTTP_TIMEOUT_S = 10.0
START_TIMEOUT_S = 30.0
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def node() -> str:
    """``node``, with ``tests/idp``'s packages installed (``npm ci`` when missing)."""
    node = shutil.which("node")
    if node is None:
        missing_prerequisite(NODE_MISSING)
    if not (IDP / "node_modules" / "better-auth").is_dir():
        npm_ci(IDP)
    return node


@dataclass(frozen=True)
class BetterAuth:
    base: str
    algorithm: str

    @property
    def jwks_url(self) -> str:
        return f"{self.base}/api/auth/jwks"


@pytest.fixture(params=["ES256", "RS256"])
def better_auth(request: pytest.FixtureRequest, node: str, tmp_path: Path) -> Iterator[BetterAuth]:
    """``tests/idp/server.mjs`` on a free loopback port, signing with the param's algorithm."""
    algorithm: str = request.param
    port = free_port()
    env = {
        **os.environ,
        "IDP_PORT": str(port),
        "IDP_JWT_ALG": algorithm,
        "BETTER_AUTH_SECRET": secrets.token_urlsafe(48),
        "NODE_ENV": "test",
    }
    with ServerProcess(
        [node, str(IDP / "server.mjs")],
        cwd=IDP,
        env=env,
        ready=f"http://{LOOPBACK}:{port}/api/auth/ok",
        log=tmp_path / "better-auth.log",
        port=port,
        timeout_s=START_TIMEOUT_S,
    ) as idp:
        yield BetterAuth(idp.base, algorithm)


@dataclass(frozen=True)
class SignedUp:
    user_id: str
    session_token: str
    jwt: str
    header: dict[str, Any]
    claims: dict[str, Any]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.jwt}"}


async def sign_up(idp: BetterAuth, name: str, transcript: list[str]) -> SignedUp:
    """Sign up through Better Auth's HTTP API, then take a JWT with the session cookie."""
    # One client per person: it keeps that person's session cookie.
    async with httpx.AsyncClient(base_url=idp.base, timeout=HTTP_TIMEOUT_S) as browser:
        signed_up = await browser.post(
            "/api/auth/sign-up/email",
            json={"email": f"{name}@example.test", "password": PASSWORD, "name": name},
            headers={"Origin": idp.base},
        )
        transcript.append(f"{name}: POST /api/auth/sign-up/email -> {signed_up.status_code}")
        assert signed_up.status_code == 200, signed_up.text
        assert browser.cookies.get("better-auth.session_token"), signed_up.headers
        issued = await browser.get("/api/auth/token", headers={"Origin": idp.base})
        transcript.append(f"{name}: GET /api/auth/token -> {issued.status_code}")
        assert issued.status_code == 200, issued.text
    token: str = issued.json()["token"]
    header = jwt.get_unverified_header(token)
    claims = jwt.get_unverified_claims(token)
    transcript.append(
        f"{name}: token header alg={header['alg']} kid={header['kid']}; "
        f"sub={claims['sub']} iss={claims['iss']} aud={claims['aud']}"
    )
    return SignedUp(
        user_id=signed_up.json()["user"]["id"],
        session_token=signed_up.json()["token"],
        jwt=token,
        header=header,
        claims=claims,
    )


@pytest.fixture
async def taskvault(
    better_auth: BetterAuth, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    """taskvault configured through its environment variables, as an operator would."""
    for name in list(os.environ):
        if name.startswith("TASKVAULT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TASKVAULT_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'tv.db'}")
    monkeypatch.setenv("TASKVAULT_JWT_SECRET", SECRET)  # signs list cursors only
    monkeypatch.setenv("TASKVAULT_JWKS_URL", better_auth.jwks_url)
    monkeypatch.setenv("TASKVAULT_JWT_ISSUER", better_auth.base)
    monkeypatch.setenv("TASKVAULT_JWT_AUDIENCE", better_auth.base)
    monkeypatch.setenv("TASKVAULT_JWKS_TIMEOUT_S", "5")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    await upgrade(settings.database_url)
    app: FastAPI = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://taskvault.test"
        ) as client,
    ):
        yield client


async def test_better_auth_users_use_taskvault_and_stay_apart(
    better_auth: BetterAuth, taskvault: httpx.AsyncClient
) -> None:
    transcript: list[str] = [f"Better Auth {better_auth.base}, jwt plugin {better_auth.algorithm}"]
    alice = await sign_up(better_auth, "alice", transcript)
    bob = await sign_up(better_auth, "bob", transcript)

    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S) as plain:
        jwks = (await plain.get(better_auth.jwks_url)).json()
    kids = {key["kid"]: key for key in jwks["keys"]}
    for user in (alice, bob):
        assert user.header["alg"] == better_auth.algorithm
        assert user.header["kid"] in kids
        assert user.claims["sub"] == user.user_id
        assert user.claims["iss"] == user.claims["aud"] == better_auth.base

    # Alice creates and lists her tasks with Better Auth's JWT.
    created = await taskvault.post(
        "/api/me/tasks", json={"title": "From Better Auth"}, headers=alice.auth
    )
    transcript.append(f"alice: POST /api/me/tasks -> {created.status_code}")
    assert created.status_code == 201, created.text
    task = created.json()
    assert task["user_id"] == alice.user_id
    by_id = await taskvault.post(
        f"/api/{alice.user_id}/tasks", json={"title": "Second"}, headers=alice.auth
    )
    assert by_id.status_code == 201, by_id.text
    listed = await taskvault.get("/api/me/tasks", headers=alice.auth)
    transcript.append(
        f"alice: GET /api/me/tasks -> {listed.status_code}, {len(listed.json())} task(s)"
    )
    assert listed.status_code == 200
    assert {item["title"] for item in listed.json()} == {"From Better Auth", "Second"}
    assert {item["user_id"] for item in listed.json()} == {alice.user_id}
    own = await taskvault.get(f"/api/{alice.user_id}/tasks/{task['id']}", headers=alice.auth)
    assert own.status_code == 200
    assert own.json() == task

    # Bob, another Better Auth user, sees nothing of Alice's.
    foreign = await taskvault.get(f"/api/me/tasks/{task['id']}", headers=bob.auth)
    transcript.append(f"bob: GET /api/me/tasks/<alice's id> -> {foreign.status_code}")
    assert foreign.status_code == 404
    changed = await taskvault.patch(
        f"/api/me/tasks/{task['id']}", json={"title": "Mine now"}, headers=bob.auth
    )
    assert changed.status_code == 404
    empty = await taskvault.get("/api/me/tasks", headers=bob.auth)
    transcript.append(f"bob: GET /api/me/tasks -> {empty.status_code} {empty.json()}")
    assert empty.status_code == 200
    assert empty.json() == []
    other_path = await taskvault.get(f"/api/{alice.user_id}/tasks", headers=bob.auth)
    transcript.append(f"bob: GET /api/<alice's id>/tasks -> {other_path.status_code}")
    assert other_path.status_code == 403

    # Better Auth's opaque session token is not a JWT: taskvault refuses it.
    session = await taskvault.get(
        "/api/me/tasks", headers={"Authorization": f"Bearer {alice.session_token}"}
    )
    transcript.append(f"alice: session token as bearer -> {session.status_code}")
    assert session.status_code == 401

    unchanged = await taskvault.get("/api/me/tasks", headers=alice.auth)
    assert unchanged.json() == listed.json()
    print("\n".join(["", *transcript]))
