"""Bearer-token verification with python-jose."""

from adapters.auth.hmac import HmacTokenVerifier
from adapters.auth.jwks import JwksTokenVerifier

__all__ = ["HmacTokenVerifier", "JwksTokenVerifier"]
