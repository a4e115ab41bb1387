"""The change feed: where a client's copy stands, and what changed since.

Every write transaction of a user takes that user's next change number
first, and holds it until it commits (a store's "sync head"). A user's
commits are therefore in the order of their numbers: once a reader sees
number n, every change numbered below n is committed and visible too. A
reader that resumes after the last number it saw can miss nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from application.errors import InvalidQuery
from domain.task import Task

FEED_LIMIT_MIN = 1
FEED_LIMIT_DEFAULT = 500
FEED_LIMIT_MAX = 1000
WAIT_MAX_S = 30
RETENTION_DAYS_DEFAULT = 30

PURGE_BATCH = 100
"""Expired tombstones a delete purges at most: bounded work per write, and
deletes still purge a hundred times faster than they add."""

PURGE_MARGIN = timedelta(hours=1)
"""Tombstones outlive the tokens that could need them by this much: a delete's
time is taken before it commits, and instances' clocks differ a little."""

LAST_ID = uuid.UUID(int=(1 << 128) - 1)


@dataclass(frozen=True, slots=True, order=True)
class ChangeNumber:
    """A change's place in its user's feed: the transaction's number, then the task id."""

    seq: int
    task_id: uuid.UUID

    @classmethod
    def after_all_of(cls, seq: int) -> ChangeNumber:
        """Just past every change of transaction ``seq``."""
        return cls(seq, LAST_ID)


@dataclass(frozen=True, slots=True)
class SyncPoint:
    """Where a client's copy stands: changes up to ``after`` are in it.

    ``as_of``: when the copy was last complete (the start of the walk that
    produced it); a point older than the retention horizon has expired,
    since the tombstones past it may be gone.
    """

    after: ChangeNumber
    as_of: datetime


@dataclass(frozen=True, slots=True)
class Tombstone:
    """A deleted task, as the feed reports it."""

    id: uuid.UUID
    deleted_at: datetime


@dataclass(frozen=True, slots=True)
class Change:
    """A task in its latest state, or its tombstone, with its place in the feed."""

    number: ChangeNumber
    item: Task | Tombstone


@dataclass(frozen=True, slots=True)
class Changes:
    """What a store read: up to ``limit + 1`` changes after a point, in order,
    and the user's last committed change number when it read them."""

    changes: list[Change]
    head: int


@dataclass(frozen=True, slots=True)
class FeedPage:
    changes: list[Change]
    next: SyncPoint
    has_more: bool


@dataclass(frozen=True, slots=True)
class FeedQuery:
    since: SyncPoint | None = None
    limit: int = FEED_LIMIT_DEFAULT
    wait_s: float = 0

    def __post_init__(self) -> None:
        if not FEED_LIMIT_MIN <= self.limit <= FEED_LIMIT_MAX:
            raise InvalidQuery("limit", f"must be {FEED_LIMIT_MIN} to {FEED_LIMIT_MAX}")
        if not 0 <= self.wait_s <= WAIT_MAX_S:
            raise InvalidQuery("wait", f"must be 0 to {WAIT_MAX_S} seconds")


def page_of(read: Changes, query: FeedQuery, *, started: datetime, read_at: datetime) -> FeedPage:
    """The page a read makes.

    ``started``: when the walk this page continues began; ``read_at``: a time
    taken before this read. A partial page keeps the walk's start, a
    complete one is up to date as of the read.
    """
    changes = read.changes[: query.limit]
    if len(read.changes) > query.limit:
        return FeedPage(changes, SyncPoint(changes[-1].number, started), has_more=True)
    # The head covers every change the read saw, and those it saw none of.
    return FeedPage(
        changes, SyncPoint(ChangeNumber.after_all_of(read.head), read_at), has_more=False
    )
