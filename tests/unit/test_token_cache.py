"""The verified-token cache: never past exp, never for failures, bounded."""

from __future__ import annotations

import pytest

from adapters.auth import CachingTokenVerifier
from application.errors import InvalidToken, TokenFailure
from application.principal import Principal


class CountingVerifier:
    def __init__(self, expires_at: float = 1_000.0) -> None:
        self.calls: list[str] = []
        self.expires_at = expires_at

    async def verify(self, token: str) -> Principal:
        self.calls.append(token)
        if token.startswith("bad"):
            raise InvalidToken(TokenFailure.REJECTED)
        return Principal(user_id=token, expires_at=self.expires_at)


async def test_a_verified_token_is_verified_once_until_it_expires() -> None:
    now = [100.0]
    inner = CountingVerifier(expires_at=200.0)
    cache = CachingTokenVerifier(inner, clock=lambda: now[0])
    for _ in range(3):
        assert (await cache.verify("alice")).user_id == "alice"
    assert inner.calls == ["alice"]
    now[0] = 200.0
    await cache.verify("alice")
    assert inner.calls == ["alice", "alice"]


async def test_failures_are_never_cached() -> None:
    inner = CountingVerifier()
    cache = CachingTokenVerifier(inner, clock=lambda: 0.0)
    for _ in range(2):
        with pytest.raises(InvalidToken):
            await cache.verify("bad-token")
    assert inner.calls == ["bad-token", "bad-token"]


async def test_an_already_expired_principal_is_not_cached() -> None:
    inner = CountingVerifier(expires_at=50.0)
    cache = CachingTokenVerifier(inner, clock=lambda: 60.0)
    await cache.verify("late")
    await cache.verify("late")
    assert inner.calls == ["late", "late"]


async def test_the_cache_is_bounded_and_drops_the_oldest() -> None:
    inner = CountingVerifier()
    cache = CachingTokenVerifier(inner, max_entries=2, clock=lambda: 0.0)
    for token in ("a", "b", "c", "c", "b", "a"):
        await cache.verify(token)
    assert inner.calls == ["a", "b", "c", "a"]
