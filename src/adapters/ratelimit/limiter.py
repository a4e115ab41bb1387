"""``RateLimiter`` on ``limits``' fixed-window strategy."""

from __future__ import annotations

import logging
import math
import time

from limits import parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter
from limits.storage import storage_from_string

from application.ports import RateLimitStatus

log = logging.getLogger("taskvault.ratelimit")


class LimitsRateLimiter:
    """Counts requests per key in fixed windows (e.g. ``1200/minute``).

    With Redis, several instances share the counters. If the store fails,
    the request is let through and a warning logged: a rate-limiter outage
    must not become an API outage.
    """

    def __init__(self, rate: str, redis_url: str | None = None) -> None:
        self._item = parse(rate)
        self._redis_uri = None
        if redis_url is not None:
            self._redis_uri = redis_url if redis_url.startswith("async+") else f"async+{redis_url}"
        self._strategy: FixedWindowRateLimiter | None = None

    def _limiter(self) -> FixedWindowRateLimiter:
        # Built on first use: the in-memory store needs a running event loop.
        if self._strategy is None:
            storage = (
                MemoryStorage() if self._redis_uri is None else storage_from_string(self._redis_uri)
            )
            assert isinstance(storage, Storage)
            self._strategy = FixedWindowRateLimiter(storage)
        return self._strategy

    async def hit(self, key: str, cost: int = 1) -> RateLimitStatus:
        limit = self._item.amount
        try:
            strategy = self._limiter()
            allowed = await strategy.hit(self._item, key, cost=cost)
            reset_at, remaining = await strategy.get_window_stats(self._item, key)
        except Exception as error:
            log.warning(
                "rate limit store failed; request allowed",
                extra={"error_type": type(error).__name__},
            )
            return RateLimitStatus(True, limit, limit, self._item.get_expiry())
        reset_after = max(0, math.ceil(reset_at - time.time()))
        return RateLimitStatus(allowed, limit, remaining, reset_after)

    async def close(self) -> None:
        if self._strategy is not None and isinstance(self._strategy.storage, MemoryStorage):
            await self._strategy.storage.reset()
