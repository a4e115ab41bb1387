"""An attacker's token suite against JWKS mode: every forgery is a clean 401."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from pydantic import HttpUrl, SecretStr

from adapters.auth import JwksTokenVerifier
from application.errors import InvalidToken
from entrypoints.http.app import create_app
from entrypoints.settings import Settings
from tests.support import SECRET, make_token
from tests.support.jwks import (
    AUDIENCE,
    ISSUER,
    JwksServer,
    KeyPair,
    b64,
    claims,
    ec_pair,
    eddsa_token,
    ps256_token,
    rsa_pair,
    serve_jwks,
    unsigned,
)

INVALID = 'Bearer error="invalid_token"'


@pytest.fixture(scope="module")
def rsa_key() -> KeyPair:
    return rsa_pair("rsa-1")


@pytest.fixture(scope="module")
def keys(rsa_key: KeyPair) -> dict[str, KeyPair]:
    pairs = {
        "RS256": rsa_key,
        "RS384": rsa_pair("rsa-384", "RS384"),
        "RS512": rsa_pair("rsa-512", "RS512"),
    }
    for algorithm in ("ES256", "ES384", "ES512"):
        pairs[algorithm] = ec_pair(f"ec-{algorithm}", algorithm)
    return pairs


@pytest.fixture
def jwks(keys: dict[str, KeyPair]) -> Iterator[JwksServer]:
    for server in serve_jwks():
        server.document = {"keys": [pair.public_jwk for pair in keys.values()]}
        yield server


@pytest.fixture
async def client(jwks: JwksServer) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url="memory://",
        jwt_secret=SecretStr(SECRET),
        jwks_url=HttpUrl(jwks.url),
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        jwks_timeout_s=1.0,
    )
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        yield http


async def _call(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get("/api/me/tasks", headers={"Authorization": f"Bearer {token}"})


async def _refused(client: httpx.AsyncClient, token: str) -> None:
    response = await _call(client, token)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == INVALID
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 401


@pytest.mark.parametrize("algorithm", ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512"])
async def test_valid_asymmetric_tokens_are_accepted(
    client: httpx.AsyncClient, keys: dict[str, KeyPair], algorithm: str
) -> None:
    token = keys[algorithm].sign(claims("alice"))
    created = await client.post(
        "/api/alice/tasks", json={"title": algorithm}, headers={"Authorization": f"Bearer {token}"}
    )
    assert created.status_code == 201
    assert created.json()["user_id"] == "alice"


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
async def test_alg_none(client: httpx.AsyncClient, alg: str) -> None:
    await _refused(client, unsigned({"alg": alg, "typ": "JWT", "kid": "rsa-1"}, claims()))


async def test_tampered_payload(client: httpx.AsyncClient, rsa_key: KeyPair) -> None:
    header, _, signature = rsa_key.sign(claims("alice")).split(".")
    forged = b64(json.dumps(claims("bob")).encode())
    await _refused(client, f"{header}.{forged}.{signature}")


async def test_wrong_key_with_a_known_kid(client: httpx.AsyncClient) -> None:
    impostor = rsa_pair("rsa-1")
    await _refused(client, impostor.sign(claims()))


def _hs256(secret: bytes, header: dict[str, Any], body: dict[str, Any]) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(body).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


async def test_hs256_signed_with_the_rsa_public_key_pem(
    client: httpx.AsyncClient, rsa_key: KeyPair
) -> None:
    token = _hs256(rsa_key.public_pem, {"alg": "HS256", "kid": "rsa-1"}, claims())
    await _refused(client, token)


async def test_hs256_signed_with_the_rsa_public_key_der(
    client: httpx.AsyncClient, rsa_key: KeyPair
) -> None:
    public = serialization.load_pem_public_key(rsa_key.public_pem)
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    await _refused(client, _hs256(der, {"alg": "HS256", "kid": "rsa-1"}, claims()))


async def test_hs256_signed_with_the_jwk_json(client: httpx.AsyncClient, rsa_key: KeyPair) -> None:
    secret = json.dumps(rsa_key.public_jwk).encode()
    await _refused(client, _hs256(secret, {"alg": "HS256", "kid": "rsa-1"}, claims()))


async def test_hs256_with_the_servers_own_secret_is_refused_in_jwks_mode(
    client: httpx.AsyncClient,
) -> None:
    await _refused(client, make_token("alice", iss=ISSUER, aud=AUDIENCE))


async def test_unknown_kid_refetches_at_most_once_per_period(
    client: httpx.AsyncClient, jwks: JwksServer
) -> None:
    stranger = rsa_pair("never-published")
    for _ in range(5):
        await _refused(client, stranger.sign(claims()))
    # The first request loads the JWKS; the unknown kid may refetch once, not five times.
    assert jwks.fetches <= 2


async def test_rotated_key_is_picked_up_once_the_refresh_period_passed(
    jwks: JwksServer, rsa_key: KeyPair
) -> None:
    now = [1000.0]
    verifier = JwksTokenVerifier(
        jwks.url, issuer=ISSUER, audience=AUDIENCE, min_refresh_s=60, monotonic=lambda: now[0]
    )
    assert (await verifier.verify(rsa_key.sign(claims()))).user_id == "alice"
    rotated = rsa_pair("rsa-2")
    jwks.document = {"keys": [*jwks.document["keys"], rotated.public_jwk]}
    with pytest.raises(InvalidToken):
        await verifier.verify(rotated.sign(claims()))
    now[0] += 61
    assert (await verifier.verify(rotated.sign(claims("bob")))).user_id == "bob"
    assert jwks.fetches == 2


async def test_expired_beyond_leeway(client: httpx.AsyncClient, rsa_key: KeyPair) -> None:
    now = int(time.time())
    await _refused(client, rsa_key.sign(claims(exp=now - 60, iat=now - 660)))


async def test_expired_within_leeway_is_accepted(
    client: httpx.AsyncClient, rsa_key: KeyPair
) -> None:
    now = int(time.time())
    response = await _call(client, rsa_key.sign(claims(exp=now - 10, iat=now - 600)))
    assert response.status_code == 200


async def test_future_nbf(client: httpx.AsyncClient, rsa_key: KeyPair) -> None:
    await _refused(client, rsa_key.sign(claims(nbf=int(time.time()) + 300)))


@pytest.mark.parametrize(
    "sub", [None, "", "x" * 256, 42, ["alice"]], ids=["missing", "empty", "too-long", "int", "list"]
)
async def test_bad_sub(client: httpx.AsyncClient, rsa_key: KeyPair, sub: Any) -> None:
    body = claims(sub)
    if sub is None:
        body.pop("sub", None)
    await _refused(client, rsa_key.sign(body))


async def test_sub_of_255_characters_is_accepted(
    client: httpx.AsyncClient, rsa_key: KeyPair
) -> None:
    assert (await _call(client, rsa_key.sign(claims("x" * 255)))).status_code == 200


async def test_missing_exp(client: httpx.AsyncClient, rsa_key: KeyPair) -> None:
    body = claims()
    del body["exp"]
    await _refused(client, rsa_key.sign(body))


async def test_wrong_issuer(client: httpx.AsyncClient, rsa_key: KeyPair) -> None:
    await _refused(client, rsa_key.sign(claims(iss="https://evil.example")))


async def test_missing_issuer(client: httpx.AsyncClient, rsa_key: KeyPair) -> None:
    body = claims()
    del body["iss"]
    await _refused(client, rsa_key.sign(body))


async def test_wrong_audience(client: httpx.AsyncClient, rsa_key: KeyPair) -> None:
    await _refused(client, rsa_key.sign(claims(aud="another-api")))


async def test_missing_audience(client: httpx.AsyncClient, rsa_key: KeyPair) -> None:
    body = claims()
    del body["aud"]
    await _refused(client, rsa_key.sign(body))


async def test_eddsa_token_gets_a_clean_401(client: httpx.AsyncClient, jwks: JwksServer) -> None:
    token, public_jwk = eddsa_token(claims())
    jwks.document = {"keys": [*jwks.document["keys"], public_jwk]}
    await _refused(client, token)


async def test_ps256_token_gets_a_clean_401(client: httpx.AsyncClient, rsa_key: KeyPair) -> None:
    await _refused(client, ps256_token(rsa_key, claims()))


async def test_100_kb_token(client: httpx.AsyncClient, rsa_key: KeyPair) -> None:
    await _refused(client, rsa_key.sign(claims(padding="x" * 100_000)))


@pytest.mark.parametrize(
    "token",
    ["garbage", "a.b.c", "..", "eyJhbGciOiJSUzI1NiJ9..", base64.b64encode(b"\x00" * 64).decode()],
)
async def test_malformed_tokens(client: httpx.AsyncClient, token: str) -> None:
    await _refused(client, token)


async def test_jwks_error_status_gives_401_not_500(
    client: httpx.AsyncClient, jwks: JwksServer, rsa_key: KeyPair, caplog: pytest.LogCaptureFixture
) -> None:
    jwks.status = 500
    await _refused(client, rsa_key.sign(claims()))
    assert any("JWKS fetch failed" in record.getMessage() for record in caplog.records)


async def test_slow_jwks_times_out_with_401(
    client: httpx.AsyncClient, jwks: JwksServer, rsa_key: KeyPair
) -> None:
    jwks.delay_s = 3.0
    started = time.monotonic()
    await _refused(client, rsa_key.sign(claims()))
    assert time.monotonic() - started < 2.5
