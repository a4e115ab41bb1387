"""Request budgets with the ``limits`` library: in memory, or shared through Redis."""

from adapters.ratelimit.limiter import LimitsRateLimiter

__all__ = ["LimitsRateLimiter"]
