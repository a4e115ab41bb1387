"""HS256 tokens signed with a shared secret."""

from __future__ import annotations

from jose import jwt
from jose.exceptions import JOSEError

from adapters.auth.claims import MAX_TOKEN_LENGTH, decode_options, principal_from
from application.errors import InvalidToken
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
        self._issuer = issuer
        self._audience = audience
        self._options = decode_options(issuer=issuer, audience=audience, leeway_s=leeway_s)

    async def verify(self, token: str) -> Principal:
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken("token too long")
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") != ALGORITHM:
                raise InvalidToken("algorithm not allowed")
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                issuer=self._issuer,
                audience=self._audience,
                options=self._options,
            )
        except JOSEError as error:
            raise InvalidToken(type(error).__name__) from None
        except (ValueError, TypeError, KeyError) as error:
            # Malformed input can escape python-jose as a plain exception.
            raise InvalidToken(type(error).__name__) from None
        return principal_from(claims)

    def issue(self, sub: str, *, ttl_s: int, now: int) -> str:
        """A token for ``sub``, for trying the API by hand (``taskvault token``)."""
        claims: dict[str, object] = {"sub": sub, "iat": now, "exp": now + ttl_s}
        if self._issuer is not None:
            claims["iss"] = self._issuer
        if self._audience is not None:
            claims["aud"] = self._audience
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)
