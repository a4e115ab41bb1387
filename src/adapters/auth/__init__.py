"""Bearer-token verification with python-jose."""

from adapters.auth.cache import CachingTokenVerifier
from adapters.auth.hmac import HmacTokenVerifier
from adapters.auth.jwks import JwksTokenVerifier

__all__ = ["CachingTokenVerifier", "HmacTokenVerifier", "JwksTokenVerifier"]
