"""Which ``TokenFailure`` the HS256 verifier gives for each way a token can be wrong."""

from __future__ import annotations

import time
from typing import Any

import pytest
from jose import jwt
from jose.exceptions import (
    ExpiredSignatureError,
    JOSEError,
    JWEError,
    JWKError,
    JWSError,
    JWSSignatureError,
    JWTClaimsError,
    JWTError,
)

from adapters.auth import HmacTokenVerifier, JwksTokenVerifier
from adapters.auth.claims import MAX_TOKEN_LENGTH, failure_of
from application.errors import InvalidToken, TokenFailure
from tests.support import SECRET, make_token
from tests.support.jwks import AUDIENCE, ISSUER, KeyPair, claims, rsa_pair


def _expired() -> str:
    return make_token(exp=int(time.time()) - 3600)


@pytest.mark.parametrize(
    ("token", "failure"),
    [
        (_expired, TokenFailure.EXPIRED),
        (lambda: make_token(algorithm="HS512"), TokenFailure.ALGORITHM_NOT_ALLOWED),
        (lambda: "not-a-jwt", TokenFailure.MALFORMED_HEADER),
        (lambda: "x" * (MAX_TOKEN_LENGTH + 1), TokenFailure.TOO_LONG),
        (lambda: make_token(secret="x" * 40), TokenFailure.REJECTED),
        (lambda: make_token(exp=None), TokenFailure.REJECTED),
        (lambda: make_token(nbf=int(time.time()) + 3600), TokenFailure.CLAIMS),
        (lambda: make_token(""), TokenFailure.CLAIMS),
        (lambda: make_token("a\x01b"), TokenFailure.CLAIMS),
        (lambda: make_token(42), TokenFailure.CLAIMS),
        (lambda: make_token(exp=[1]), TokenFailure.MALFORMED_INPUT),
    ],
    ids=[
        "expired",
        "hs512",
        "garbage",
        "too long",
        "foreign key",
        "no exp",
        "not yet valid",
        "empty sub",
        "bad sub",
        "non-string sub",
        "exp a list",
    ],
)
async def test_each_refusal_names_its_reason(token: Any, failure: TokenFailure) -> None:
    with pytest.raises(InvalidToken) as caught:
        await HmacTokenVerifier(SECRET).verify(token())
    assert caught.value.reason is failure
    assert str(caught.value) == failure.value


@pytest.mark.parametrize(
    ("error", "failure"),
    [
        (ExpiredSignatureError("Signature has expired."), TokenFailure.EXPIRED),
        (JWTClaimsError("Invalid audience"), TokenFailure.CLAIMS),
        (JWTError("Signature verification failed."), TokenFailure.REJECTED),
        (JWSError("Invalid header padding"), TokenFailure.REJECTED),
        (JWKError("Unable to find an algorithm"), TokenFailure.REJECTED),
        (ValueError("bad"), TokenFailure.MALFORMED_INPUT),
        (TypeError("bad"), TokenFailure.MALFORMED_INPUT),
        (KeyError("exp"), TokenFailure.MALFORMED_INPUT),
        # Anything not listed by its exact class: the metrics count it as "other".
        (JOSEError("new"), TokenFailure.UNEXPECTED),
        (JWEError("new"), TokenFailure.UNEXPECTED),
        (JWSSignatureError(), TokenFailure.UNEXPECTED),
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"), TokenFailure.UNEXPECTED),
    ],
)
def test_a_library_error_is_classified_by_its_class(
    error: Exception, failure: TokenFailure
) -> None:
    assert failure_of(error) is failure


@pytest.fixture(scope="module")
def rsa_key() -> KeyPair:
    return rsa_pair("rsa-1")


def _jwks_verifier(rsa_key: KeyPair) -> JwksTokenVerifier:
    unusable = {"kty": "RSA", "kid": "unusable", "use": "sig", "n": "!!", "e": "AQAB"}
    document = {"keys": [rsa_key.public_jwk, unusable]}

    async def fetch() -> Any:
        return document

    return JwksTokenVerifier(
        "https://auth.example.test/jwks", issuer=ISSUER, audience=AUDIENCE, fetch=fetch
    )


@pytest.mark.parametrize(
    ("header", "failure"),
    [
        ({"alg": "HS256"}, TokenFailure.ALGORITHM_NOT_ALLOWED),
        ({"kid": 7}, TokenFailure.MALFORMED_KID),
        ({"kid": "never-published"}, TokenFailure.UNKNOWN_KEY),
        ({"alg": "RS384"}, TokenFailure.ALGORITHM_KEY_MISMATCH),
        ({"kid": "unusable"}, TokenFailure.UNUSABLE_KEY),
    ],
    ids=["hs256", "int kid", "unknown kid", "rs384 on an rs256 key", "unusable key"],
)
async def test_each_jwks_refusal_names_its_reason(
    rsa_key: KeyPair, header: dict[str, Any], failure: TokenFailure
) -> None:
    verifier = _jwks_verifier(rsa_key)
    assert (await verifier.verify(rsa_key.sign(claims()))).user_id == "alice"
    with pytest.raises(InvalidToken) as caught:
        await verifier.verify(_sign(rsa_key, header))
    assert caught.value.reason is failure


def _sign(pair: KeyPair, header: dict[str, Any]) -> str:
    """A token signed with ``pair``'s key whose header says what ``header`` says."""
    algorithm = header.get("alg", pair.algorithm)
    key = SECRET if algorithm == "HS256" else pair.private_pem.decode()
    headers = {"kid": pair.kid, **header}
    headers.pop("alg", None)
    return jwt.encode(claims(), key, algorithm=algorithm, headers=headers)
