"""Errors raised by use cases and ports, mapped to HTTP at the edge."""

import enum

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


@enum.unique
class TokenFailure(enum.Enum):
    """Why a bearer token was refused: a closed set, whatever the verifier.

    Values are short human text, the exception's message; the metrics
    edge derives its coarse ``detail`` label from the member, never the text.
    """

    EXPIRED = "token expired"
    CLAIMS = "claims rejected"
    """A registered claim is wrong (iss, aud, nbf, iat...) or ``sub`` is not a usable owner."""
    ALGORITHM_NOT_ALLOWED = "algorithm not allowed"
    ALGORITHM_KEY_MISMATCH = "algorithm does not match the key"
    UNKNOWN_KEY = "unknown key id"
    UNUSABLE_KEY = "unusable key"
    TOO_LONG = "token too long"
    MALFORMED_HEADER = "malformed header"
    """The header could not be read, before any key was chosen."""
    MALFORMED_KID = "malformed kid"
    MALFORMED_INPUT = "malformed input"
    """A plain ValueError, TypeError or KeyError escaped the token library."""
    REJECTED = "token rejected"
    """The token library's generic refusal: bad signature, undecodable, a required claim missing."""
    UNEXPECTED = "unexpected token error"
    """The token library raised an error of a kind not listed above."""


class InvalidToken(ApplicationError):
    """A bearer token failed verification; ``reason`` is for logs and metrics."""

    def __init__(self, reason: TokenFailure) -> None:
        super().__init__(reason.value)
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


class SyncTokenExpired(ApplicationError):
    """A feed position older than the retention horizon: tombstones past it may be gone."""


class FailedDependency(ApplicationError):
    """An operation of an atomic batch that was undone because another one failed."""
