"""Errors raised by use cases and ports, mapped to HTTP at the edge."""

from domain.errors import DomainError


class ApplicationError(DomainError):
    """Base of the errors raised outside the entity rules."""


class Forbidden(ApplicationError):
    """The caller named an owner other than itself."""


class PreconditionFailed(ApplicationError):
    """The caller's expected version of a task is not the current one."""


class ConcurrentUpdate(ApplicationError):
    """Another writer changed the task between our read and our write."""


class ForeignTask(ApplicationError):
    """A store was handed a task of another user than the one it serves.

    A programming error, never a client's: the service builds every task for
    the principal it acts for.
    """


class InvalidToken(ApplicationError):
    """A bearer token failed verification; ``reason`` is for logs and metrics."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StorageUnavailable(ApplicationError):
    """The store did not answer in time; the request may be retried later."""


class InvalidQuery(ApplicationError):
    """A list parameter is unusable; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class RequestInFlight(ApplicationError):
    """A request with the same ``Idempotency-Key`` is still being processed."""


class IdempotencyKeyReused(ApplicationError):
    """The ``Idempotency-Key`` was first used with a different request body."""


class RateLimited(ApplicationError):
    """The caller spent its request budget; ``retry_after_s`` until it refills."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s
