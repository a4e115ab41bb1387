"""Claim checks shared by every verifier, past what python-jose checks itself."""

from __future__ import annotations

from typing import Any

from jose import jwt
from jose.exceptions import (
    ExpiredSignatureError,
    JOSEError,
    JWKError,
    JWSError,
    JWTClaimsError,
    JWTError,
)

from application.errors import InvalidToken, TokenFailure
from application.principal import Principal
from domain.errors import InvalidTask
from domain.task import check_owner

MAX_TOKEN_LENGTH = 16_384
"""Longer bearer tokens are refused before any parsing."""

# By exact class, as the reason was once the class's name: a subclass not
# listed (JWEError, JWSSignatureError...) is UNEXPECTED, not its parent's.
_FAILURE_OF_ERROR: dict[type[Exception], TokenFailure] = {
    ExpiredSignatureError: TokenFailure.EXPIRED,
    JWTClaimsError: TokenFailure.CLAIMS,
    JWTError: TokenFailure.REJECTED,
    JWSError: TokenFailure.REJECTED,
    JWKError: TokenFailure.REJECTED,
    ValueError: TokenFailure.MALFORMED_INPUT,
    TypeError: TokenFailure.MALFORMED_INPUT,
    KeyError: TokenFailure.MALFORMED_INPUT,
}


def failure_of(error: Exception) -> TokenFailure:
    """The reason to give for an exception out of ``jwt.decode``."""
    return _FAILURE_OF_ERROR.get(type(error), TokenFailure.UNEXPECTED)


class ClaimRules:
    """The claim checks of one deployment, applied after a key was chosen."""

    def __init__(self, *, issuer: str | None, audience: str | None, leeway_s: int) -> None:
        self.issuer = issuer
        self.audience = audience
        self._options = decode_options(issuer=issuer, audience=audience, leeway_s=leeway_s)

    def principal(self, token: str, key: Any, algorithm: str) -> Principal:
        """Verify ``token`` with ``key`` under exactly ``algorithm``; its caller."""
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                issuer=self.issuer,
                audience=self.audience,
                options=self._options,
            )
        except JOSEError as error:
            raise InvalidToken(failure_of(error)) from None
        except (ValueError, TypeError, KeyError) as error:
            # Malformed input can escape python-jose as a plain exception.
            raise InvalidToken(failure_of(error)) from None
        return principal_from(claims)


def unverified_header(token: str) -> dict[str, Any]:
    """The token's header, read only to choose a key; a bad token is a 401."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken(TokenFailure.TOO_LONG)
    try:
        header: dict[str, Any] = jwt.get_unverified_header(token)
    except (JOSEError, ValueError, TypeError, KeyError):
        raise InvalidToken(TokenFailure.MALFORMED_HEADER) from None
    return header


def decode_options(*, issuer: str | None, audience: str | None, leeway_s: int) -> dict[str, Any]:
    """python-jose options that require what the contract requires.

    python-jose accepts a token without ``exp`` or ``aud`` unless told to
    require them.
    """
    return {
        "require_exp": True,
        "require_sub": True,
        "require_iss": issuer is not None,
        "require_aud": audience is not None,
        "verify_aud": audience is not None,
        "verify_iss": issuer is not None,
        "leeway": leeway_s,
    }


def principal_from(claims: dict[str, Any]) -> Principal:
    sub = claims.get("sub")
    if not isinstance(sub, str):
        raise InvalidToken(TokenFailure.CLAIMS)
    try:
        user_id = check_owner(sub)
    except InvalidTask:
        raise InvalidToken(TokenFailure.CLAIMS) from None
    # decode_options requires exp, and python-jose has checked it is a number.
    return Principal(user_id=user_id, expires_at=float(claims["exp"]))
