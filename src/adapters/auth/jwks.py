"""Asymmetric tokens (RS*, ES*) verified with keys from an identity provider's JWKS."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from jose import jwk
from jose.backends.base import Key
from jose.exceptions import JOSEError

from adapters.auth.claims import ClaimRules, unverified_header
from application.errors import InvalidToken, TokenFailure
from application.principal import Principal

log = logging.getLogger("taskvault.auth.jwks")

RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512"})
EC_ALGORITHMS = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
ALLOWED_ALGORITHMS = RSA_ALGORITHMS | frozenset(EC_ALGORITHMS.values())
MAX_JWKS_BYTES = 1024 * 1024
FAILED_FETCH_BACKOFF_S = 5.0

Fetch = Callable[[], Awaitable[Any]]


@dataclass
class _PublicKey:
    """One JWKS entry: its data and the algorithms its type allows."""

    data: dict[str, Any]
    algorithms: frozenset[str]
    constructed: dict[str, Key] = field(default_factory=dict)

    def for_algorithm(self, algorithm: str) -> Key:
        if algorithm not in self.constructed:
            self.constructed[algorithm] = jwk.construct(self.data, algorithm)
        return self.constructed[algorithm]


def _algorithms_of(data: dict[str, Any]) -> frozenset[str]:
    """What a key may verify, from its type alone (never from a token header).

    Symmetric (``oct``) and OKP (EdDSA) keys get nothing: a JWKS key is never
    used as an HMAC secret, and python-jose cannot verify EdDSA.
    """
    if data.get("use", "sig") != "sig":
        return frozenset()
    kty = data.get("kty")
    if kty == "RSA":
        allowed = RSA_ALGORITHMS
    elif kty == "EC" and data.get("crv") in EC_ALGORITHMS:
        allowed = frozenset({EC_ALGORITHMS[data["crv"]]})
    else:
        return frozenset()
    declared = data.get("alg")
    if declared is None:
        return allowed
    return allowed & {declared}


def parse_jwks(document: Any) -> dict[str | None, _PublicKey]:
    """Usable signing keys by ``kid``; anything malformed is left out."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWKS document")
    keys: dict[str | None, _PublicKey] = {}
    for data in document["keys"]:
        if not isinstance(data, dict):
            continue
        algorithms = _algorithms_of(data)
        kid = data.get("kid")
        if algorithms and (kid is None or isinstance(kid, str)):
            keys[kid] = _PublicKey(data=data, algorithms=algorithms)
    return keys


class JwksTokenVerifier:
    """Keys are cached by ``kid``; an unknown ``kid`` refetches, at most once a period."""

    def __init__(
        self,
        url: str,
        *,
        issuer: str | None = None,
        audience: str | None = None,
        leeway_s: int = 30,
        min_refresh_s: float = 60.0,
        timeout_s: float = 5.0,
        fetch: Fetch | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._rules = ClaimRules(issuer=issuer, audience=audience, leeway_s=leeway_s)
        self._min_refresh_s = min_refresh_s
        self._timeout_s = timeout_s
        self._fetch = fetch or self._http_fetch
        self._monotonic = monotonic
        self._keys: dict[str | None, _PublicKey] = {}
        self._last_attempt: float | None = None
        self._lock = asyncio.Lock()

    async def verify(self, token: str) -> Principal:
        header = unverified_header(token)
        algorithm = header.get("alg")
        kid = header.get("kid")
        if algorithm not in ALLOWED_ALGORITHMS:
            raise InvalidToken(TokenFailure.ALGORITHM_NOT_ALLOWED)
        if kid is not None and not isinstance(kid, str):
            raise InvalidToken(TokenFailure.MALFORMED_KID)
        key = await self._key(kid)
        if algorithm not in key.algorithms:
            raise InvalidToken(TokenFailure.ALGORITHM_KEY_MISMATCH)
        try:
            public_key = key.for_algorithm(algorithm)
        except (JOSEError, ValueError, TypeError, KeyError):
            raise InvalidToken(TokenFailure.UNUSABLE_KEY) from None
        return self._rules.principal(token, public_key, algorithm)

    async def _key(self, kid: str | None) -> _PublicKey:
        key = self._lookup(kid)
        if key is not None:
            return key
        async with self._lock:
            key = self._lookup(kid)
            if key is None and self._may_fetch():
                await self._refresh()
                key = self._lookup(kid)
        if key is None:
            raise InvalidToken(TokenFailure.UNKNOWN_KEY)
        return key

    def _lookup(self, kid: str | None) -> _PublicKey | None:
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return self._keys.get(kid)

    def _may_fetch(self) -> bool:
        if self._last_attempt is None:
            return True
        wait = (
            self._min_refresh_s if self._keys else min(self._min_refresh_s, FAILED_FETCH_BACKOFF_S)
        )
        return self._monotonic() - self._last_attempt >= wait

    async def _refresh(self) -> None:
        self._last_attempt = self._monotonic()
        try:
            self._keys = parse_jwks(await asyncio.wait_for(self._fetch(), self._timeout_s))
        except Exception as error:
            # Keep the keys we had: a provider outage must not log everyone out.
            log.warning(
                "JWKS fetch failed; tokens with unknown keys are refused",
                extra={"jwks_url": self._url, "error_type": type(error).__name__},
            )
            return
        log.info("JWKS loaded", extra={"jwks_url": self._url, "keys": len(self._keys)})

    async def _http_fetch(self) -> Any:
        async with (
            httpx.AsyncClient(timeout=self._timeout_s, follow_redirects=False) as client,
            client.stream("GET", self._url, headers={"Accept": "application/json"}) as response,
        ):
            response.raise_for_status()
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body.extend(chunk)
                if len(body) > MAX_JWKS_BYTES:
                    raise ValueError("JWKS document too large")
        return json.loads(bytes(body))
