"""A bounded cache of verified tokens, in front of any ``TokenVerifier``."""

from __future__ import annotations

import time
from collections.abc import Callable

from application.ports import TokenVerifier
from application.principal import Principal


class CachingTokenVerifier:
    """Remembers tokens that verified, keyed by the exact token text.

    Signature and claim checks cost more than the rest of a cheap request, and
    a client sends the same token many times. An entry is never used past the
    token's ``exp``; failures are not cached, so nothing a client sends can
    fill the cache but tokens that really verified.
    """

    def __init__(
        self,
        inner: TokenVerifier,
        *,
        max_entries: int = 4096,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._inner = inner
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, Principal] = {}

    async def verify(self, token: str) -> Principal:
        cached = self._entries.get(token)
        if cached is not None:
            if self._clock() < cached.expires_at:
                return cached
            del self._entries[token]
        principal = await self._inner.verify(token)
        if self._clock() < principal.expires_at:
            if len(self._entries) >= self._max_entries:
                # Oldest first: dicts keep insertion order.
                del self._entries[next(iter(self._entries))]
            self._entries[token] = principal
        return principal
