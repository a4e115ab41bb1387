"""HS256 tokens signed with a shared secret."""

from __future__ import annotations

from jose import jwt

from adapters.auth.claims import ClaimRules, unverified_header
from application.errors import InvalidToken, TokenFailure
from application.principal import Principal

ALGORITHM = "HS256"
MIN_SECRET_BYTES = 32


class HmacTokenVerifier:
    """Accepts HS256 only: the algorithm is fixed here, never read from the token."""

    def __init__(
        self,
        secret: str,
        *,
        issuer: str | None = None,
        audience: str | None = None,
        leeway_s: int = 30,
    ) -> None:
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"the HS256 secret must be at least {MIN_SECRET_BYTES} bytes")
        self._secret = secret
        self._rules = ClaimRules(issuer=issuer, audience=audience, leeway_s=leeway_s)

    async def verify(self, token: str) -> Principal:
        if unverified_header(token).get("alg") != ALGORITHM:
            raise InvalidToken(TokenFailure.ALGORITHM_NOT_ALLOWED)
        return self._rules.principal(token, self._secret, ALGORITHM)

    def issue(self, sub: str, *, ttl_s: int, now: int) -> str:
        """A token for ``sub``, for trying the API by hand (``taskvault token``)."""
        claims: dict[str, object] = {"sub": sub, "iat": now, "exp": now + ttl_s}
        if self._rules.issuer is not None:
            claims["iss"] = self._rules.issuer
        if self._rules.audience is not None:
            claims["aud"] = self._rules.audience
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)
