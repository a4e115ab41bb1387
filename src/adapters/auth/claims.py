"""Claim checks shared by every verifier, past what python-jose checks itself."""

from __future__ import annotations

from typing import Any

from application.errors import InvalidToken
from application.principal import Principal
from domain.errors import InvalidTask
from domain.task import check_owner

MAX_TOKEN_LENGTH = 16_384
"""Longer bearer tokens are refused before any parsing."""


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
        raise InvalidToken("sub is not a string")
    try:
        user_id = check_owner(sub)
    except InvalidTask as error:
        raise InvalidToken(f"bad sub: {error.message}") from None
    # decode_options requires exp, and python-jose has checked it is a number.
    return Principal(user_id=user_id, expires_at=float(claims["exp"]))
