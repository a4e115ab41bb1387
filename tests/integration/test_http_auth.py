"""Bearer tokens with the HS256 shared secret: what is refused, and how."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from entrypoints.http.app import create_app
from entrypoints.settings import Settings
from tests.support import SECRET, make_token
from tests.support.http import assert_api_headers, assert_problem, tasks_url

INVALID = 'Bearer error="invalid_token"'
LEEWAY_S = 30
ISSUER = "https://issuer.test/"
AUDIENCE = "taskvault"


# --- helpers -----------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def encode_json(value: Any) -> str:
    return b64url(json.dumps(value).encode())


def claims(sub: Any = "alice", **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": sub, "iat": now, "exp": now + 600, **extra}


def unsigned(alg: str, payload: dict[str, Any] | None = None) -> str:
    """A token built by hand with an empty signature."""
    header = {"alg": alg, "typ": "JWT"}
    return f"{encode_json(header)}.{encode_json(payload or claims())}."


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def call(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    return await client.get(tasks_url("me"), headers=headers)


async def assert_refused(client: httpx.AsyncClient, token: str, challenge: str = INVALID) -> None:
    """401 problem+json with the challenge, on a read and on a write; nothing created."""
    for response in (
        await call(client, bearer(token)),
        await client.post(tasks_url("me"), json={"title": "x"}, headers=bearer(token)),
    ):
        assert_problem(response, 401)
        assert_api_headers(response)
        assert response.headers["www-authenticate"] == challenge
        if len(token) > 8:
            assert token not in response.text
    valid = await call(client, bearer(make_token("alice")))
    assert valid.json() == []


async def assert_accepted(client: httpx.AsyncClient, token: str, sub: str = "alice") -> None:
    response = await client.post(tasks_url("me"), json={"title": "x"}, headers=bearer(token))
    assert response.status_code == 201, response.text
    assert response.json()["user_id"] == sub


# --- accepted ------------------------------------------------------------------


async def test_valid_token_is_accepted(client: httpx.AsyncClient) -> None:
    await assert_accepted(client, make_token("alice"))


async def test_scheme_is_case_insensitive(client: httpx.AsyncClient) -> None:
    response = await call(client, {"Authorization": f"bearer {make_token('alice')}"})
    assert response.status_code == 200


async def test_exp_within_the_leeway_is_accepted(client: httpx.AsyncClient) -> None:
    await assert_accepted(client, make_token("alice", exp=int(time.time()) - 10))


async def test_nbf_within_the_leeway_is_accepted(client: httpx.AsyncClient) -> None:
    await assert_accepted(client, make_token("alice", nbf=int(time.time()) + 10))


async def test_sub_of_255_characters_is_accepted(client: httpx.AsyncClient) -> None:
    await assert_accepted(client, make_token("s" * 255), "s" * 255)


# --- refused: claims -------------------------------------------------------------


async def test_expired_beyond_the_leeway(client: httpx.AsyncClient) -> None:
    await assert_refused(client, make_token("alice", exp=int(time.time()) - LEEWAY_S - 30))


async def test_expired_long_ago(client: httpx.AsyncClient) -> None:
    await assert_refused(client, make_token("alice", exp=1_000_000_000))


async def test_missing_exp(client: httpx.AsyncClient) -> None:
    await assert_refused(client, make_token("alice", exp=None))


async def test_non_numeric_exp(client: httpx.AsyncClient) -> None:
    await assert_refused(client, make_token("alice", exp="tomorrow"))


async def test_future_nbf(client: httpx.AsyncClient) -> None:
    await assert_refused(client, make_token("alice", nbf=int(time.time()) + LEEWAY_S + 90))


async def test_missing_sub(client: httpx.AsyncClient) -> None:
    await assert_refused(client, make_token(None))


async def test_empty_sub(client: httpx.AsyncClient) -> None:
    await assert_refused(client, make_token(""))


async def test_sub_of_256_characters(client: httpx.AsyncClient) -> None:
    await assert_refused(client, make_token("s" * 256))


@pytest.mark.parametrize("sub", [123, 1.5, True, ["alice"], {"id": "alice"}])
async def test_non_string_sub(client: httpx.AsyncClient, sub: Any) -> None:
    await assert_refused(client, make_token(sub))


async def test_sub_with_control_characters(client: httpx.AsyncClient) -> None:
    await assert_refused(client, make_token("ali\x00ce"))


# --- refused: signature and algorithm ------------------------------------------------


async def test_wrong_secret(client: httpx.AsyncClient) -> None:
    await assert_refused(client, make_token("alice", secret="another-secret-" + "x" * 40))


async def test_tampered_payload(client: httpx.AsyncClient) -> None:
    header, _, signature = make_token("alice").split(".")
    forged = f"{header}.{encode_json(claims('bob'))}.{signature}"
    await assert_refused(client, forged)


async def test_tampered_signature(client: httpx.AsyncClient) -> None:
    header, payload, signature = make_token("alice").split(".")
    flipped = ("A" if signature[5] != "A" else "B").join((signature[:5], signature[6:]))
    await assert_refused(client, f"{header}.{payload}.{flipped}")


async def test_signature_stripped(client: httpx.AsyncClient) -> None:
    header, payload, _ = make_token("alice").split(".")
    await assert_refused(client, f"{header}.{payload}.")


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
async def test_alg_none(client: httpx.AsyncClient, alg: str) -> None:
    await assert_refused(client, unsigned(alg))


@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
async def test_other_hmac_algorithms_with_the_right_secret(
    client: httpx.AsyncClient, algorithm: str
) -> None:
    await assert_refused(client, make_token("alice", algorithm=algorithm))


async def test_header_claiming_hs256_over_an_hs512_signature(client: httpx.AsyncClient) -> None:
    _, payload, signature = make_token("alice", algorithm="HS512").split(".")
    header = encode_json({"alg": "HS256", "typ": "JWT"})
    await assert_refused(client, f"{header}.{payload}.{signature}")


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "a.b.c",
        "..",
        "eyJ",
        "eyJhbGciOiJIUzI1NiJ9",
        f"{encode_json({'alg': 'HS256'})}.not-base64!.sig",
        f"{b64url(b'not json')}.{encode_json(claims())}.sig",
        f"{encode_json(['HS256'])}.{encode_json(claims())}.sig",
        f"{encode_json({'alg': 'HS256'})}.{b64url(b'[1, 2]')}.sig",
    ],
)
async def test_garbage_token(client: httpx.AsyncClient, token: str) -> None:
    await assert_refused(client, token)


async def test_100_kb_token(client: httpx.AsyncClient) -> None:
    await assert_refused(client, "a" * 100_000)


async def test_100_kb_token_with_a_valid_signature(client: httpx.AsyncClient) -> None:
    await assert_refused(client, make_token("alice", padding="p" * 100_000))


# --- missing credentials ---------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic xyz"},
        {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
        {"Authorization": f"Token {make_token('alice')}"},
        {"Authorization": make_token("alice")},
    ],
    ids=["none", "basic", "basic-b64", "other-scheme", "no-scheme"],
)
async def test_missing_bearer_credentials(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    for response in (
        await call(client, headers),
        await client.post(tasks_url("me"), json={"title": "x"}, headers=headers),
        await client.delete(
            tasks_url("me", "0192f5d0-8b7e-7c3a-9f10-2b6d7e4c1a55"), headers=headers
        ),
    ):
        body = assert_problem(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"
        assert_api_headers(response)
        assert "errors" not in body


async def test_a_token_in_the_query_string_is_not_used(client: httpx.AsyncClient) -> None:
    response = await client.get(tasks_url("me"), params={"access_token": make_token("alice")})
    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"


# --- issuer and audience, when configured --------------------------------------------------


@pytest.fixture
async def strict_client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An app that requires ``iss`` and ``aud``."""
    settings = Settings(  # type: ignore[call-arg]
        database_url=database_url,
        jwt_secret=SecretStr(SECRET),
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        _env_file=None,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://taskvault.test") as c:
            yield c


@pytest.mark.parametrize("aud", [AUDIENCE, [AUDIENCE], ["other", AUDIENCE]])
async def test_matching_issuer_and_audience_are_accepted(
    strict_client: httpx.AsyncClient, aud: Any
) -> None:
    await assert_accepted(strict_client, make_token("alice", iss=ISSUER, aud=aud))


@pytest.mark.parametrize(
    "extra",
    [
        {"aud": AUDIENCE},
        {"iss": ISSUER},
        {"iss": "https://evil.test/", "aud": AUDIENCE},
        {"iss": ISSUER, "aud": "other"},
        {"iss": ISSUER, "aud": ["other"]},
        {"iss": ISSUER.rstrip("/"), "aud": AUDIENCE},
    ],
    ids=["no-iss", "no-aud", "wrong-iss", "wrong-aud", "wrong-aud-list", "iss-not-exact"],
)
async def test_missing_or_wrong_issuer_or_audience(
    strict_client: httpx.AsyncClient, extra: dict[str, Any]
) -> None:
    token = make_token("alice", **extra)
    response = await call(strict_client, bearer(token))
    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == INVALID
