"""Bearer-token verification with python-jose."""

from adapters.auth.hmac import HmacTokenVerifier

__all__ = ["HmacTokenVerifier"]
